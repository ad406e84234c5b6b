"""lossc.lightning_pose.loss_factory against Lightning Pose's LossFactory: the factory
cases of the conformance vectors, called as a model's training step calls LossFactory."""

import numpy as np
import pytest

import conformance
from lossc.lightning_pose import loss_factory


def fitted_pca(params):
    """The fitted PCA of each PCA loss, arrays as NumPy arrays (as Lightning Pose holds them)."""
    return {
        name: {k: conformance.value(v) for k, v in fitted.items()}
        for name, fitted in (params.get("pca") or {}).items()
    }


def factory_cases():
    cases = [c for c in conformance.cases() if c["loss"] == "LossFactory" and "error" not in c]
    assert len(cases) == 8
    return cases


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_total_and_logs_as_lightning_pose_gives_them(lp_paths, backend):
    for case in factory_cases():
        params = case["params"]
        factory = loss_factory(lp_paths, params["losses_params_dict"], pca=fitted_pca(params), backend=backend)
        kwargs = {k: conformance.tensor(v) for k, v in case["inputs"].items() if v is not None}
        # Lightning Pose passes every array to every loss, and arrays no loss reads.
        kwargs["images"] = np.zeros((2, 3), np.float32)
        total, log_list = factory(stage=case["stage"], anneal_weight=params["anneal_weight"], **kwargs)
        expected = case["expected"]
        assert conformance.close(total, expected["total"], 1e-5), (case["id"], total)
        assert [d["name"] for d in log_list] == [n for n, _ in expected["logs"]], case["id"]
        for d, (_, want) in zip(log_list, expected["logs"]):
            assert conformance.close(d["value"], want, 1e-5), (case["id"], d)


def test_torch_tensors_give_a_total_that_backpropagates(lp_paths):
    torch = pytest.importorskip("torch", reason="the PyTorch tests need torch (scripts/test.sh installs it)")
    for case in factory_cases():
        params = case["params"]
        factory = loss_factory(lp_paths, params["losses_params_dict"], pca=fitted_pca(params))
        tensors = {
            k: torch.tensor(conformance.tensor(v), requires_grad=k in case["grads"])
            for k, v in case["inputs"].items()
            if v is not None
        }
        total, log_list = factory(stage="train", anneal_weight=params["anneal_weight"], **tensors)
        assert isinstance(total, torch.Tensor) and total.grad_fn is not None
        assert conformance.close(total.item(), case["expected"]["total"], 1e-5)
        total.backward()
        for name, want in case["grads"].items():
            if name not in tensors:
                continue
            w = np.array([np.nan if x is None else x for x in want["data"]]).reshape(want["shape"])
            g = tensors[name].grad.numpy()
            largest = np.nanmax(np.abs(w))
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-4 * largest, err_msg=f"{case['id']} {name}")


def test_params_lightning_pose_keeps_for_itself_are_ignored(lp_paths):
    factory = loss_factory(
        lp_paths,
        {"temporal": {"log_weight": 0.5, "epsilon": 2.0, "prob_threshold": 0.2, "device": "cpu"}},
    )
    assert factory.params == {"temporal.log_weight": 0.5, "temporal.epsilon": 2.0, "temporal.prob_threshold": 0.2}
    assert factory.factory.annealed == ["temporal"]
    kp = np.zeros((3, 4), np.float32)
    total, logs = factory(stage=None, keypoints_pred=kp)
    assert total == 0.0
    assert logs[0]["name"] == "None_temporal_loss"
