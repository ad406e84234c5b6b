"""lossc factories inside PyTorch training loops.

``LossFunction(factory)`` is a ``torch.nn.Module`` whose ``forward(**tensors)`` returns the
factory's total as a 0-d tensor with a ``grad_fn``: ``total.backward()`` fills ``.grad``
of every input tensor that requires it. The forward run computes the gradients too, in
the same call (on the GPU, the forward and backward kernels in one command buffer), so
the backward step only scales them by the incoming gradient.

Tensors go through host memory: a CUDA tensor is copied to the host before the run and
its gradient copied back (``docs/python.md`` has the measured cost). lossc runs on its
own wgpu device, not on the tensors' CUDA device.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any, Optional

import torch
from torch.autograd.function import once_differentiable

from ._lossc import Factory, Result

__all__ = ["LossFunction"]


def _load_triton_first() -> None:
    """Imports triton, which PyTorch imports later anyway (``torch.optim``,
    ``torch.compile``), before lossc opens its GPU device.

    On Mesa's software Vulkan driver (lavapipe) the device loads Mesa's LLVM; triton
    bundles its own LLVM, and when it loads after Mesa's, its LLVM binds to Mesa's
    symbols and the process crashes (a segmentation fault in LLVM's option registry).
    Loaded first, each keeps its own.
    """
    if "triton" in sys.modules or importlib.util.find_spec("triton") is None:
        return
    try:
        import triton  # noqa: F401
    except Exception:  # a broken triton install is PyTorch's business, not lossc's
        pass


_load_triton_first()

# The host dtypes NumPy has; other floating dtypes (bfloat16) go as float32.
_NUMPY_FLOATS = (torch.float16, torch.float32, torch.float64)


def _to_numpy(t: torch.Tensor):
    t = t.detach()
    if t.is_floating_point() and t.dtype not in _NUMPY_FLOATS:
        t = t.float()
    return t.cpu().numpy()


class _FactoryFunction(torch.autograd.Function):
    """The factory's total as an autograd function of its floating-point inputs."""

    @staticmethod
    def forward(ctx, module: "LossFunction", names, extra, anneal, stage, *tensors):
        needs = ctx.needs_input_grad[5:]
        wrt = [n for n, need in zip(names, needs) if need]
        data = dict(extra)
        for name, t in zip(names, tensors):
            data[name] = _to_numpy(t)
        result = module.factory(
            data, anneal=anneal, stage=stage, backend=module.backend, wrt=wrt or None
        )
        module.last_result = result
        module.last_logs = result.logs
        ctx.grads = [
            torch.from_numpy(result.grads[n]).to(device=t.device, dtype=t.dtype)
            if need
            else None
            for n, t, need in zip(names, tensors, needs)
        ]
        device = tensors[0].device if tensors else torch.device("cpu")
        return torch.tensor(result.total, dtype=torch.float32, device=device)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_total):
        grads = tuple(
            None if g is None else g * grad_total.to(device=g.device, dtype=g.dtype)
            for g in ctx.grads
        )
        return (None, None, None, None, None) + grads


class LossFunction(torch.nn.Module):
    """A lossc factory as a PyTorch module.

    ``forward(**values, anneal=1.0, stage="train")`` takes the factory's inputs and params
    by name: floating-point tensors are the inputs the total is differentiated with respect
    to (those with ``requires_grad``); integer and boolean tensors, NumPy arrays, numbers,
    lists and strings are passed as data. It returns the total as a 0-d float32 tensor on
    the first tensor's device. ``last_logs`` holds the logs of the last call and
    ``last_result`` its :class:`lossc.Result`.

    Second derivatives are not supported: differentiating the backward step raises.
    """

    def __init__(self, factory: Factory, *, backend: str = "auto") -> None:
        super().__init__()
        if not isinstance(factory, Factory):
            raise TypeError(
                f"LossFunction takes a lossc.Factory, not {type(factory).__name__}"
            )
        self.factory = factory
        self.backend = backend
        self.last_logs: list[tuple[str, float]] = []
        self.last_result: Optional[Result] = None

    def forward(
        self, *, anneal: float = 1.0, stage: str = "train", **values: Any
    ) -> torch.Tensor:
        names, tensors, extra = [], [], {}
        for name, v in values.items():
            if isinstance(v, torch.Tensor) and v.is_floating_point():
                names.append(name)
                tensors.append(v)
            elif isinstance(v, torch.Tensor):
                extra[name] = _to_numpy(v)
            else:
                extra[name] = v
        return _FactoryFunction.apply(
            self, tuple(names), extra, float(anneal), str(stage), *tensors
        )

    def extra_repr(self) -> str:
        return f"factory={self.factory.name!r}, losses={self.factory.losses}, backend={self.backend!r}"
