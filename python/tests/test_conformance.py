"""The Lightning Pose conformance vectors through the Python API, on both back ends:
each case's values and, where it has them, its autograd gradients, in one call
``lossc.load(...).losses([...])(data, wrt=[...])`` (at most 2 dispatches on the GPU)."""

import math

import numpy as np
import pytest

import conformance

REL = 1e-5
GRAD_REL = 1e-4


def runnable():
    return [c for c in conformance.cases() if c["loss"] != "generate_heatmaps" and "error" not in c]


def check_grads(case, result, wrt):
    bad = []
    # A single loss's vectors hold d loss / d input; lossc gives d total / d input.
    scale = 1.0 if case["loss"] == "LossFactory" else case["expected"]["weight"]
    at_minimum = case["expected"].get("loss") == 0.0
    for name in wrt:
        want_t = case["grads"][name]
        have = result.grads[name]
        if list(have.shape) != want_t["shape"]:
            bad.append(f"{name}: shape {list(have.shape)} vs {want_t['shape']}")
            continue
        assert have.dtype == np.float32
        flat = have.reshape(-1)
        if want_t["data"] is None:
            # No autograd path (a mean over nothing): lossc's gradient is all zeros.
            if np.any(flat != 0):
                bad.append(f"{name}: nonzero where there is no gradient path")
            continue
        want = [None if w is None else w * scale for w in want_t["data"]]
        largest = max((abs(w) for w in want if w is not None), default=0.0)
        for k, (h, w) in enumerate(zip(flat.tolist(), want)):
            if w is None:
                ok = math.isnan(h)
            elif w == 0.0:
                ok = h == 0.0
            elif h == 0.0 and at_minimum:
                ok = True
            else:
                ok = abs(h - w) <= GRAD_REL * max(largest, abs(w))
            if not ok:
                bad.append(f"{name}[{k}]: {h} vs {w}")
                break
    return bad


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_every_conformance_case_matches_lightning_pose(lp_program, backend):
    matched, failures, with_grads = 0, [], 0
    for case in runnable():
        losses, annealed, data, options = conformance.invocation(case, lp_program)
        factory = lp_program.losses(losses, annealed=annealed)
        wrt = [n for n in (case.get("grads") or {}) if n in data]
        result = factory(data, backend=backend, wrt=wrt or None, **options)
        bad = []
        if not result.backend.startswith(backend):
            bad.append(f"ran on {result.backend}")
        most = 0 if backend == "cpu" else (2 if wrt else 1)
        if result.dispatches > most:
            bad.append(f"{result.dispatches} dispatches")
        expected = case["expected"]
        if case["loss"] == "LossFactory":
            if not conformance.close(result.total, expected["total"], REL):
                bad.append(f"total {result.total} vs {expected['total']}")
        else:
            (name,) = losses
            got = result.losses[name]
            for field in ("loss", "weight", "weighted"):
                if not conformance.close(got[field], expected[field], REL):
                    bad.append(f"{field} {got[field]} vs {expected[field]}")
        logs = dict(result.logs)
        for log_name, want in expected["logs"]:
            if log_name not in logs:
                bad.append(f"no log {log_name}")
            elif not conformance.close(logs[log_name], want, REL):
                bad.append(f"log {log_name}: {logs[log_name]} vs {want}")
        if wrt:
            with_grads += 1
            bad += check_grads(case, result, wrt)
        if bad:
            failures.append(f"{case['id']}: " + "; ".join(bad[:6]))
        else:
            matched += 1
    print(f"conformance through Python ({backend}): {matched} cases matched, {with_grads} with gradients")
    assert not failures, "\n".join(failures)
    assert matched == 78, matched
    assert with_grads >= 70, with_grads
