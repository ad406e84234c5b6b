"""The Lightning Pose conformance vectors (tests/conformance/*.json.gz) as lossc calls.

The mapping from a case to losses, data and options is the one of tests/conformance.rs
(`invocation`), written again here against the Python API; docs/conformance.md explains it.
"""

import gzip
import json
import math
import pathlib

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "conformance"

CLASSES = {
    "HeatmapMSELoss": "heatmap_mse",
    "HeatmapKLLoss": "heatmap_kl",
    "HeatmapJSLoss": "heatmap_js",
    "RegressionMSELoss": "regression",
    "RegressionRMSELoss": "rmse",
    "TemporalLoss": "temporal",
    "PairwiseProjectionsLoss": "supervised_pairwise_projections",
    "ReprojectionHeatmapLoss": "supervised_reprojection_heatmap_mse",
}


def cases():
    """Every case of every file, in file order."""
    out = []
    for path in sorted(VECTORS.glob("*.json.gz")):
        with gzip.open(path, "rt") as f:
            out.extend(json.load(f)["cases"])
    return out


def tensor(t):
    """A vectors TENSOR as a float32 NumPy array (null is NaN)."""
    data = [math.nan if x is None else x for x in t["data"]]
    return np.asarray(data, dtype=np.float32).reshape(t["shape"])


def value(v):
    """A param value: a TENSOR as an array; numbers, lists and strings as they are (the
    module reads lists as arrays)."""
    if isinstance(v, dict) and "shape" in v:
        return tensor(v)
    return v


def invocation(case, program):
    """(losses, annealed, data, options) for a case, or None for one that is no loss."""
    cls = case["loss"]
    params = case["params"]
    if cls == "LossFactory":
        terms = [
            (name, p, (params.get("pca") or {}).get(name))
            for name, p in params["losses_params_dict"].items()
        ]
    elif cls in ("TemporalHeatmapLoss", "PCALoss"):
        terms = [(params["loss_name"], params, params.get("pca"))]
    elif cls in CLASSES:
        terms = [(CLASSES[cls], params, params.get("pca"))]
    else:
        return None
    data = {k: tensor(v) for k, v in case["inputs"].items() if v is not None}
    for name, p, pca in terms:
        if name not in program.loss_names:
            continue
        for param in program.params(name):
            if pca is not None and param in ("mean", "kept_eigenvectors", "epsilon"):
                v = pca["epsilon_used" if param == "epsilon" else param]
            else:
                v = p.get(param)
            if v is not None:
                data[f"{name}.{param}"] = value(v)
    losses = [t[0] for t in terms]
    options = {"stage": case["stage"] if case["stage"] is not None else "None"}
    annealed = []
    if cls == "LossFactory":
        # Lightning Pose anneals every loss but the heatmap ones; no anneal weight means 1.
        annealed = [n for n in losses if not n.startswith("heatmap_")]
        aw = params.get("anneal_weight")
        options["anneal"] = 1.0 if aw is None else aw
    return losses, annealed, data, options


def close(have, want, rel):
    """Relative agreement as tests/conformance.rs checks it: exact 0 and NaN where the
    reference has them."""
    if want is None or (isinstance(want, float) and math.isnan(want)):
        return math.isnan(have)
    if want == 0.0:
        return have == 0.0
    return abs(have - want) <= rel * abs(want)
