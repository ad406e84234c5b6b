"""The cost of a call through the Python module, measured (docs/python.md quotes it).

For each case and back end: the first call (which compiles the kernel on the GPU and
builds its plan), then the median of repeated calls on new data of the same shapes (which
build nothing), values only and with the gradients of the predictions; and for a one-element loss, the
fixed cost of a call. With PyTorch: a LossFunction forward + backward beside the plain
call, and, where CUDA is available, the same on CUDA tensors (copied through the host).

Run: python python/benchmarks/overhead.py [--repeats N]
"""

import argparse
import json
import pathlib
import statistics
import time

import numpy as np

import lossc

try:
    # Before lossc opens a device (docs/python.md: lavapipe and triton).
    import torch

    from lossc.torch import LossFunction
except ImportError:
    torch = None

ROOT = pathlib.Path(__file__).resolve().parents[2]


def demo_data(rng):
    data = json.loads((ROOT / "examples" / "demo.json").read_text())
    out = {}
    for k, v in data.items():
        if isinstance(v, dict) and "shape" in v:
            a = np.asarray([np.nan if x is None else x for x in v["data"]], np.float32).reshape(v["shape"])
            if k in ("heatmaps_pred", "keypoints_pred"):
                a = a + rng.standard_normal(a.shape).astype(np.float32) * 1e-3
            out[k] = a
        else:
            out[k] = v
    return out


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def median_ms(f, repeats):
    f(0)  # not the first call
    return 1e3 * statistics.median(timed(lambda: f(i + 1)) for i in range(repeats))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    paths = sorted(str(p) for p in (ROOT / "examples" / "lightning_pose").glob("*.loss"))
    program = lossc.load(paths + [str(ROOT / "examples" / "factories.loss")])
    tiny_path = pathlib.Path("/tmp/lossc_overhead_tiny.loss")
    tiny_path.write_text("loss tiny {\n    input x : [N]\n    compute x[i]\n    reduce sum\n}\n")
    tiny = lossc.load(tiny_path).losses("tiny")

    print("| case | back end | first call | next calls, values | next calls, with gradients |")
    print("|---|---|---|---|---|")
    # New arrays of the same shapes for every call, made before timing.
    batches = [demo_data(rng) for _ in range(8)]
    wrt = ["heatmaps_pred", "keypoints_pred"]
    for backend in ("cpu", "gpu"):
        factory = program.factory("heatmap_semisupervised")
        first = 1e3 * timed(lambda: factory(batches[0], backend=backend, wrt=wrt))
        values = median_ms(lambda i: factory(batches[i % 8], backend=backend), args.repeats)
        grads = median_ms(lambda i: factory(batches[i % 8], backend=backend, wrt=wrt), args.repeats)
        print(f"| README demo factory (3 losses) | {backend} | {first:.1f} ms | {values:.2f} ms | {grads:.2f} ms |")
        x = {"x": np.ones(1, np.float32)}
        first = 1e3 * timed(lambda: tiny(x, backend=backend, wrt=True))
        values = median_ms(lambda i: tiny(x, backend=backend), args.repeats)
        grads = median_ms(lambda i: tiny(x, backend=backend, wrt=True), args.repeats)
        print(f"| one element (fixed cost) | {backend} | {first:.1f} ms | {values:.3f} ms | {grads:.3f} ms |")

    if torch is None:
        print("no torch: the PyTorch rows are left out")
        return
    print()
    print("| PyTorch | back end | plain call with gradients | LossFunction forward + backward |")
    print("|---|---|---|---|")
    for backend in ("cpu", "gpu"):
        factory = program.factory("heatmap_semisupervised")
        module = LossFunction(factory, backend=backend)
        tensors = {
            device: [
                {
                    k: torch.tensor(v, device=device, requires_grad=k in wrt)
                    if isinstance(v, np.ndarray) and "." not in k
                    else v
                    for k, v in b.items()
                }
                for b in batches
            ]
            for device in (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
        }

        def step(i, device="cpu"):
            module(**tensors[device][i % 8]).backward()

        plain = median_ms(lambda i: factory(batches[i % 8], backend=backend, wrt=wrt), args.repeats)
        wrapped = median_ms(step, args.repeats)
        print(f"| README demo factory | {backend} | {plain:.2f} ms | {wrapped:.2f} ms |")
        if torch.cuda.is_available():
            on_cuda = median_ms(lambda i: step(i, "cuda"), args.repeats)
            print(f"| README demo factory, CUDA tensors | {backend} | | {on_cuda:.2f} ms |")
    if not torch.cuda.is_available():
        print("no CUDA device: the CUDA row is left out")


if __name__ == "__main__":
    main()
