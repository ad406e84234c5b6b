"""Losses of examples/zoo and the language's newer built-ins (logsumexp, the special
functions, optional inputs with a default) through lossc.torch.LossFunction, against
PyTorch computing the same losses live, values and autograd gradients, on both back ends."""

import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the PyTorch tests need torch (scripts/test.sh installs it)")
F = torch.nn.functional

import lossc  # noqa: E402
from lossc.torch import LossFunction  # noqa: E402

ZOO = pathlib.Path(__file__).resolve().parents[2] / "examples" / "zoo"


def close(a, b, rel):
    return abs(a - b) <= rel * max(abs(b), 1e-30)


def check_grads(got, want, rel=1e-4):
    got, want = got.detach().numpy(), want.detach().numpy()
    scale = max(np.abs(want).max(), 1e-30)
    assert np.all(np.abs(got - want) <= rel * scale), (got, want)


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_cross_entropy_with_class_ids_matches_torch(backend):
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(8, 5)).astype(np.float32) * 3
    target = [4, -100, 3, 0, 1, 4, 2, -100]
    class_weight = rng.uniform(0.5, 2.0, size=5).astype(np.float32)
    module = LossFunction(lossc.load(ZOO / "cross_entropy.loss").losses(["cross_entropy"]), backend=backend)
    x = torch.tensor(logits, requires_grad=True)
    total = module(logits=x, target=target, class_weight=class_weight, label_smoothing=0.2)
    total.backward()
    y = torch.tensor(logits, requires_grad=True)
    want = F.cross_entropy(y, torch.tensor(target), weight=torch.tensor(class_weight), label_smoothing=0.2)
    want.backward()
    assert close(total.item(), want.item(), 1e-5)
    check_grads(x.grad, y.grad)


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_nll_with_a_long_target_tensor_and_a_weighted_mean_matches_torch(backend):
    # `target` is an `int` input: a torch.long tensor goes as data; `reduce mean by`
    # weighs each sample by its class's weight.
    rng = np.random.default_rng(11)
    logp = torch.log_softmax(torch.tensor(rng.normal(size=(9, 4)).astype(np.float32) * 2), 1)
    target = torch.tensor([3, 0, -100, 2, 2, -100, 1, 0, 3])
    class_weight = rng.uniform(0.5, 2.0, size=4).astype(np.float32)
    module = LossFunction(lossc.load(ZOO / "nll.loss").losses(["nll"]), backend=backend)
    x = logp.clone().requires_grad_()
    total = module(logp=x, target=target, class_weight=class_weight)
    total.backward()
    y = logp.clone().requires_grad_()
    want = F.nll_loss(y, target, weight=torch.tensor(class_weight))
    want.backward()
    assert close(total.item(), want.item(), 1e-5)
    check_grads(x.grad, y.grad)
    # A float tensor of class ids is refused, naming the input.
    with pytest.raises(lossc.LossError, match="input `target` is declared `int`"):
        module(logp=x.detach(), target=target.float(), class_weight=class_weight)


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_special_functions_and_an_optional_default_match_torch(backend):
    text = """
loss special {
    input x : [N, C]
    input w : [N] optional = 1
    compute w[n] * (logsumexp(c: x[n, c]) + sum(c: softplus(x[n, c]) * tanh(x[n, c])
        + lgamma(2 + abs(x[n, c])) + erf(x[n, c]) * sin(x[n, c]) + xlogy(sigmoid(x[n, c]), 1 + x[n, c] ^ 2)))
    reduce mean
}
"""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = pathlib.Path(d) / "special.loss"
        path.write_text(text)
        module = LossFunction(lossc.load(path).losses(["special"]), backend=backend)
    rng = np.random.default_rng(11)
    data = rng.normal(size=(6, 7)).astype(np.float32) * 2
    for weights in (None, rng.uniform(0.0, 2.0, size=6).astype(np.float32)):
        x = torch.tensor(data, requires_grad=True)
        total = module(x=x) if weights is None else module(x=x, w=torch.tensor(weights))
        total.backward()
        y = torch.tensor(data, requires_grad=True)
        w = torch.ones(6) if weights is None else torch.tensor(weights)
        per_row = torch.logsumexp(y, 1) + (
            F.softplus(y) * torch.tanh(y)
            + torch.lgamma(2 + y.abs())
            + torch.erf(y) * torch.sin(y)
            + torch.special.xlogy(torch.sigmoid(y), 1 + y**2)
        ).sum(1)
        want = (w * per_row).mean()
        want.backward()
        assert close(total.item(), want.item(), 1e-5), (total.item(), want.item())
        check_grads(x.grad, y.grad)
