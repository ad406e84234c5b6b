"""The module's API on small programs whose values are computed by hand, its errors, and
its plan cache."""


import numpy as np
import pytest

import lossc

SQUARES = """
/// The mean of squared differences.
loss sq {
    input x : [N]
    input y : [N]
    param scale = 1.0
    compute scale * (x[i] - y[i])^2
    reduce mean
}
"""

PICK = """
loss pick {
    input x : [N, C]
    param columns : index[S]
    compute x[n, columns[s]]
    reduce sum
}
"""


def program(tmp_path, text, name="t.loss"):
    path = tmp_path / name
    path.write_text(text)
    return lossc.load([path])


@pytest.fixture(params=["cpu", "gpu"])
def backend(request):
    return request.param


def test_values_logs_and_gradients_by_hand(tmp_path, backend):
    f = program(tmp_path, SQUARES).losses(["sq"])
    x = np.array([1.0, 2.0, 4.0], dtype=np.float32)
    y = np.array([0.0, 0.0, 1.0], dtype=np.float32)
    r = f({"x": x, "y": y, "scale": 2.0}, wrt=["x"], backend=backend, stage="val")
    # mean of 2·(1, 4, 9) = 28/3; weight 1; d/dx = 2·2·(x - y)/3
    assert r.total == pytest.approx(28 / 3, rel=1e-6)
    assert r.losses == {"sq": {"loss": pytest.approx(28 / 3, rel=1e-6), "weight": 1.0, "weighted": pytest.approx(28 / 3, rel=1e-6)}}
    assert [n for n, _ in r.logs] == ["val_sq_loss", "sq_weight", "val_sq_loss_weighted"]
    assert list(r.grads) == ["x"]
    assert r.grads["x"].dtype == np.float32
    np.testing.assert_allclose(r.grads["x"], [4 / 3, 8 / 3, 4.0], rtol=1e-6)
    assert r.backend.startswith(backend)
    assert r.dispatches == (0 if backend == "cpu" else 2)


def test_every_accepted_kind_of_value(tmp_path, backend):
    f = program(tmp_path, SQUARES).losses("sq")
    want = (1 + 4 + 9) / 3
    for x in (
        [1, 2, 4],  # a list of ints
        np.array([1, 2, 4], dtype=np.int64),
        np.array([1, 2, 4], dtype=np.uint8),
        np.array([1.0, 2.0, 4.0], dtype=np.float64),
        np.array([1.0, 2.0, 4.0], dtype=np.float16),
        np.array([4.0, 9.0, 2.0, 9.0, 1.0, 9.0], dtype=np.float32)[-2::-2],  # strided, reversed
        {"shape": [3], "data": [1, 2, 4]},  # a data file's tensor object
    ):
        r = f({"x": x, "y": np.array([0, 0, 1], dtype=bool)}, backend=backend)
        assert r.total == pytest.approx(want, rel=1e-6), x
    # a NumPy scalar and a Python bool as the param
    r = f({"x": [1, 2, 4], "y": [0, 0, 1], "scale": np.float32(2.0)}, backend=backend)
    assert r.total == pytest.approx(2 * want, rel=1e-6)


def test_a_transposed_array_is_read_in_its_logical_order(tmp_path, backend):
    f = program(tmp_path, PICK).losses("pick")
    xt = np.arange(12, dtype=np.float32).reshape(3, 4).T  # Fortran order, not contiguous in C
    assert not xt.flags["C_CONTIGUOUS"]
    r1 = f({"x": np.ascontiguousarray(xt), "columns": [2]}, backend=backend)
    r2 = f({"x": xt, "columns": [2]}, backend=backend)
    # column 2 of xt = row 2 of the 3×4 arange: 8 + 9 + 10 + 11
    assert r1.total == r2.total == 38.0


def test_the_second_call_on_the_same_shapes_builds_no_plan(tmp_path):
    f = program(tmp_path, SQUARES).losses("sq")
    rng = np.random.default_rng(1)
    totals = []
    for _ in range(3):
        x = rng.standard_normal(64).astype(np.float32)
        y = rng.standard_normal(64).astype(np.float32)
        r = f({"x": x, "y": y}, backend="gpu", wrt=["x"])
        cpu = f({"x": x, "y": y}, backend="cpu", wrt=["x"])
        assert r.total == pytest.approx(cpu.total, rel=1e-5)
        np.testing.assert_allclose(r.grads["x"], cpu.grads["x"], rtol=1e-5)
        totals.append(r.total)
    assert len(set(totals)) == 3  # new data each time, read each time
    assert (f.plans, f.plans_built) == (1, 1)
    f({"x": np.ones(8, np.float32), "y": np.zeros(8, np.float32)}, backend="gpu", wrt=["x"])
    assert (f.plans, f.plans_built) == (2, 2)
    # values only: another plan; a new param value: another
    f({"x": np.ones(8, np.float32), "y": np.zeros(8, np.float32)}, backend="gpu")
    f({"x": np.ones(8, np.float32), "y": np.zeros(8, np.float32), "scale": 3.0}, backend="gpu")
    assert f.plans_built == 4
    # the anneal factor changes no plan
    g = program(tmp_path, SQUARES, "g.loss").losses("sq", annealed="sq")
    a = g({"x": [1.0], "y": [0.0]}, backend="gpu", anneal=0.5, wrt=True)
    b = g({"x": [1.0], "y": [0.0]}, backend="gpu", anneal=0.25, wrt=True)
    assert (a.total, b.total) == (0.5, 0.25)
    assert (a.grads["x"][0], b.grads["x"][0]) == (1.0, 0.5)
    assert g.plans_built == 1


def test_load_errors_are_located(tmp_path):
    bad = tmp_path / "bad.loss"
    bad.write_text("loss broken {\n    input x : [N]\n    compute x[i] +\n    reduce mean\n}\n")
    with pytest.raises(lossc.LossError) as e:
        lossc.load([bad])
    message = str(e.value)
    assert f"{bad}:4:" in message or f"{bad}:3:" in message, message
    assert "^" in message
    (d, *_) = e.value.diagnostics
    assert d["file"] == str(bad)
    assert d["line"] in (3, 4) and d["column"] >= 1
    assert d["severity"] == "error" and d["message"]


def test_an_unknown_name_is_an_error_with_its_location(tmp_path):
    bad = tmp_path / "bad.loss"
    bad.write_text("loss l {\n    input x : [N]\n    compute x[i] * y\n    reduce sum\n}\n")
    with pytest.raises(lossc.LossError) as e:
        lossc.load(bad)
    (d,) = [d for d in e.value.diagnostics if d["severity"] == "error"]
    assert (d["line"], d["column"]) == (3, 20)
    assert "y" in d["message"]


def test_files_that_cannot_be_read(tmp_path):
    with pytest.raises(OSError, match="cannot read"):
        lossc.load([tmp_path / "missing.loss"])
    latin = tmp_path / "latin.loss"
    latin.write_bytes(b"loss caf\xe9 {}\n")
    with pytest.raises(lossc.LossError, match="not valid UTF-8") as e:
        lossc.load([latin])
    assert e.value.diagnostics[0]["line"] == 1
    with pytest.raises(TypeError):
        lossc.load(3)


def test_bad_data_raises_with_lossc_s_message(tmp_path, backend):
    f = program(tmp_path, SQUARES).losses("sq")
    x = np.ones(3, np.float32)

    def call(data, **kw):
        return f(data, backend=backend, **kw)

    with pytest.raises(lossc.LossError, match="`y`"):
        call({"x": x})  # missing input
    with pytest.raises(lossc.LossError, match="N"):
        call({"x": x, "y": np.ones(4, np.float32)})  # N is 3 and 4
    with pytest.raises(lossc.LossError, match="`x`.*dtype complex"):
        call({"x": x.astype(np.complex64), "y": x})
    with pytest.raises(lossc.LossError, match="`x`.*dtype"):
        call({"x": np.array(["a", "b", "c"]), "y": x})
    with pytest.raises(lossc.LossError, match="`x`"):
        call({"x": [[1.0, 2.0], [3.0]], "y": x})  # ragged
    with pytest.raises(lossc.LossError, match="`x`"):
        call({"x": "abc", "y": x})  # a string for an input
    with pytest.raises(lossc.LossError, match="`x`: shape \\[2\\] holds 2 values"):
        call({"x": {"shape": [2], "data": [1, 2, 4]}, "y": x})
    with pytest.raises(lossc.LossError, match="`x`: a dict value must be a tensor object"):
        call({"x": {"values": [1, 2, 4]}, "y": x})
    with pytest.raises(lossc.LossError, match="did you mean `scale`"):
        call({"x": x, "y": x, "scal": 2.0})
    with pytest.raises(lossc.LossError, match="--wrt: `z`"):
        call({"x": x, "y": x}, wrt=["z"])
    with pytest.raises(TypeError):
        call([("x", x)])
    with pytest.raises(TypeError):
        call({1: x})
    with pytest.raises(ValueError, match="backend"):
        f({"x": x, "y": x}, backend="tpu")
    with pytest.raises(TypeError):
        call({"x": x, "y": x}, wrt=3)


def test_a_nan_gives_torch_s_answer_or_a_located_error(tmp_path, backend):
    f = program(tmp_path, SQUARES).losses("sq")
    for x in (np.array([1.0, np.nan, 3.0], np.float32), [1.0, None, 3.0]):  # None is NaN in a list
        r = f({"x": x, "y": np.zeros(3, np.float32)}, backend=backend, wrt=["x"])
        assert np.isnan(r.total)  # a NaN input with no remove_nans: NaN, as torch.mean
        assert np.isnan(r.grads["x"][1]) and r.grads["x"][0] == pytest.approx(2 / 3)
    g = program(tmp_path, PICK, "p.loss").losses("pick")
    with pytest.raises(lossc.LossError, match="columns"):
        g({"x": np.ones((2, 3), np.float32), "columns": [np.nan]}, backend=backend)
    with pytest.raises(lossc.LossError, match="columns"):
        g({"x": np.ones((2, 3), np.float32), "columns": [3]}, backend=backend)


def test_program_and_factory_describe_themselves(lp_program):
    assert lossc.__version__ == "0.1.0"
    assert "temporal" in lp_program.loss_names
    assert lp_program.params("temporal") == ["epsilon", "prob_threshold", "log_weight"]
    assert lp_program.inputs("temporal") == ["keypoints_pred", "confidences"]
    f = lp_program.losses(["heatmap_mse", "temporal"], annealed=["temporal"])
    assert f.name == "heatmap_mse+temporal"
    assert (f.losses, f.annealed) == (["heatmap_mse", "temporal"], ["temporal"])
    assert f.inputs == ["heatmaps_targ", "heatmaps_pred", "keypoints_pred", "confidences"]
    with pytest.raises(lossc.LossError, match="did you mean `temporal`"):
        lp_program.losses(["temporl"])
    with pytest.raises(lossc.LossError, match="no factory named"):
        lp_program.factory("nothing")
    with pytest.raises(lossc.LossError, match="not in --losses"):
        lp_program.losses(["temporal"], annealed=["heatmap_mse"])
