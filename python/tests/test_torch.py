"""lossc.torch.LossFunction: totals with a grad_fn whose backward gives Lightning Pose's
autograd gradients (the conformance vectors), on both back ends."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the PyTorch tests need torch (scripts/test.sh installs it)")

import conformance  # noqa: E402
import lossc  # noqa: E402
from lossc.torch import LossFunction  # noqa: E402


def cases_with_grads():
    return [
        c
        for c in conformance.cases()
        if c["loss"] != "generate_heatmaps" and "error" not in c and c.get("grads")
    ]


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_backward_gives_the_conformance_gradients(lp_program, backend):
    checked = 0
    failures = []
    for case in cases_with_grads():
        losses, annealed, data, options = conformance.invocation(case, lp_program)
        module = LossFunction(lp_program.losses(losses, annealed=annealed), backend=backend)
        wrt = [n for n in case["grads"] if n in data]
        values = {}
        for name, v in data.items():
            if name in wrt:
                values[name] = torch.tensor(v, requires_grad=True)
            elif isinstance(v, np.ndarray) and "." not in name:
                values[name] = torch.tensor(v)  # an input not differentiated
            else:
                values[name] = v
        total = module(**values, **options)
        assert total.shape == () and total.dtype == torch.float32
        assert total.grad_fn is not None
        total.backward()
        expected = case["expected"]
        want_total = expected["total"] if case["loss"] == "LossFactory" else expected["weighted"]
        if not conformance.close(total.item(), want_total, 1e-5):
            failures.append(f"{case['id']}: total {total.item()} vs {want_total}")
        logs = dict(module.last_logs)
        for name, want in expected["logs"]:
            if not conformance.close(logs[name], want, 1e-5):
                failures.append(f"{case['id']}: log {name}")
        scale = 1.0 if case["loss"] == "LossFactory" else expected["weight"]
        for name in wrt:
            want = case["grads"][name]
            grad = values[name].grad
            assert grad is not None and grad.dtype == torch.float32
            if want["data"] is None:
                if torch.any(grad != 0):
                    failures.append(f"{case['id']}: {name} nonzero without a gradient path")
                continue
            w = np.array([np.nan if x is None else x * scale for x in want["data"]]).reshape(want["shape"])
            g = grad.numpy().astype(np.float64)
            largest = np.nanmax(np.abs(w)) if np.any(~np.isnan(w)) else 0.0
            at_minimum = expected.get("loss") == 0.0
            ok = np.where(
                np.isnan(w),
                np.isnan(g),
                np.where(
                    w == 0,
                    g == 0,
                    (np.abs(g - w) <= 1e-4 * np.maximum(largest, np.abs(w))) | (at_minimum & (g == 0)),
                ),
            )
            if not ok.all():
                failures.append(f"{case['id']}: {name} differs at {np.argwhere(~ok)[:3].tolist()}")
        checked += 1
    assert not failures, "\n".join(failures)
    assert checked >= 70, checked


def test_the_upstream_gradient_scales_and_inputs_without_grad_get_none(tmp_path):
    path = tmp_path / "l2.loss"
    path.write_text("loss l2 {\n    input x : [N]\n    input y : [N]\n    compute (x[i] - y[i])^2\n    reduce sum\n}\n")
    module = LossFunction(lossc.load(path).losses("l2"))
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = torch.tensor([0.0, 1.0])
    total = module(x=x, y=y)
    (3 * total).backward()
    # d/dx of 3·Σ (x - y)² = 6 (x - y)
    assert x.grad.tolist() == [6.0, 6.0]
    assert y.grad is None
    assert module.last_logs == [("train_l2_loss", 2.0), ("l2_weight", 1.0), ("train_l2_loss_weighted", 2.0)]
    # float64 inputs get float64 gradients
    x64 = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    module(x=x64, y=y.double()).backward()
    assert x64.grad.dtype == torch.float64 and x64.grad.tolist() == [2.0, 2.0]
    # no tensor requires a gradient: the total still comes back, without a grad_fn
    with torch.no_grad():
        assert module(x=x, y=y).item() == 2.0


def test_second_derivatives_are_refused_not_wrong(tmp_path):
    path = tmp_path / "l2.loss"
    path.write_text("loss l2 {\n    input x : [N]\n    compute x[i]^2\n    reduce sum\n}\n")
    module = LossFunction(lossc.load(path).losses("l2"))
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    (g,) = torch.autograd.grad(module(x=x), x, create_graph=True)
    with pytest.raises(RuntimeError):
        g.sum().backward()


def test_errors_reach_python_as_loss_errors(lp_program):
    module = LossFunction(lp_program.losses("temporal"))
    with pytest.raises(lossc.LossError, match="keypoints_pred"):
        module(keypoints_pred=torch.zeros(4, 5, requires_grad=True))  # 5 is not 2·K
    with pytest.raises(TypeError):
        LossFunction("temporal")


def test_a_training_step_lowers_the_loss(tmp_path):
    path = tmp_path / "fit.loss"
    path.write_text("loss fit {\n    input pred : [N]\n    input targ : [N]\n    compute (pred[i] - targ[i])^2\n    reduce mean\n}\n")
    module = LossFunction(lossc.load(path).losses("fit"), backend="gpu")
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randn(32, 3, generator=gen)
    targ = inputs @ torch.tensor([1.0, -2.0, 0.5]) + 0.3
    first = None
    for _ in range(60):
        opt.zero_grad()
        loss = module(pred=model(inputs).squeeze(1), targ=targ)
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.01 * first
    assert module.factory.plans_built == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_tensors_round_trip_through_the_host(tmp_path):
    path = tmp_path / "l2.loss"
    path.write_text("loss l2 {\n    input x : [N]\n    compute x[i]^2\n    reduce sum\n}\n")
    module = LossFunction(lossc.load(path).losses("l2"))
    x = torch.tensor([1.0, 2.0], device="cuda", requires_grad=True)
    total = module(x=x)
    assert total.device.type == "cuda"
    total.backward()
    assert x.grad.device.type == "cuda" and x.grad.tolist() == [2.0, 4.0]
