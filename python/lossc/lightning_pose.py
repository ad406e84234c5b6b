"""Lightning Pose's ``LossFactory`` built from ``.loss`` files.

``loss_factory(paths, losses_params_dict)`` returns an object called as Lightning Pose's
``LossFactory`` is in a model's training step, ``factory(stage=..., anneal_weight=...,
**kwargs)``, returning the same ``(total, log_list)``: the total is
``Σ anneal · weight · loss`` over the dict's losses in order, where every loss but
``heatmap_mse``, ``heatmap_kl`` and ``heatmap_js`` is annealed (``anneal_weight=None``
anneals none), and ``log_list`` holds ``{"name", "value"}`` dicts with Lightning Pose's
names: ``{stage}_{loss}_loss``, ``{loss}_weight``, ``{stage}_{loss}_loss_weighted``.

The dict's keys name lossc losses (``examples/lightning_pose/`` names them as Lightning
Pose's loss keys do). Each loss takes the constructor params of the dict that its
``.loss`` file declares (``log_weight``, ``epsilon``, ``prob_threshold``, ...); the others
(``device``, ``components_to_keep``, ...) are Lightning Pose's own and are ignored. The
PCA losses need the fitted PCA, which Lightning Pose computes from its data module: pass
it as ``pca={"pca_singleview": {"mean": ..., "kept_eigenvectors": ..., "epsilon": ...}}``
(``epsilon_used`` is read as ``epsilon``).

With PyTorch tensors in ``kwargs`` the total is a 0-d tensor with a ``grad_fn`` (through
:class:`lossc.torch.LossFunction`); with NumPy arrays it is a float.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Mapping, Optional, Sequence, Union

from ._lossc import Factory, Program, load

if importlib.util.find_spec("torch") is not None:
    # Lightning Pose trains in PyTorch: load the PyTorch layer now, before lossc opens
    # its GPU device (see lossc.torch._load_triton_first).
    from . import torch as _torch_layer  # noqa: F401

__all__ = ["LightningPoseLossFactory", "loss_factory", "NOT_ANNEALED"]

#: The losses Lightning Pose's ``LossFactory`` never anneals.
NOT_ANNEALED = ("heatmap_mse", "heatmap_kl", "heatmap_js")

# Lightning Pose's names for the fitted PCA's arrays, by the param each sets.
_PCA_KEYS = {
    "mean": ("mean",),
    "kept_eigenvectors": ("kept_eigenvectors",),
    "epsilon": ("epsilon_used", "epsilon"),
}


class LightningPoseLossFactory:
    """The losses of a Lightning Pose ``losses_params_dict``, as one lossc factory."""

    def __init__(self, program: Program, factory: Factory, params: dict, backend: str):
        self.program = program
        self.factory = factory
        self.params = params
        self.backend = backend
        self._torch_function = None
        #: The :class:`lossc.Result` of the last call.
        self.last_result = None

    def __call__(
        self,
        stage: Optional[str] = None,
        anneal_weight: Union[float, Any, None] = 1.0,
        **kwargs: Any,
    ):
        anneal = 1.0 if anneal_weight is None else float(anneal_weight)
        # Lightning Pose formats the stage with %s: None logs as "None_...".
        stage_name = str(stage)
        # Every loss receives every array and takes those it declares.
        inputs = set(self.factory.inputs)
        values = {k: v for k, v in kwargs.items() if k in inputs}
        if _has_tensor(values):
            if self._torch_function is None:
                from .torch import LossFunction

                self._torch_function = LossFunction(self.factory, backend=self.backend)
            total = self._torch_function(
                anneal=anneal, stage=stage_name, **self.params, **values
            )
            self.last_result = self._torch_function.last_result
        else:
            result = self.factory(
                {**self.params, **values},
                anneal=anneal,
                stage=stage_name,
                backend=self.backend,
            )
            self.last_result = result
            total = result.total
        # lossc logs each loss's loss, weight and weighted loss in factory order, the
        # order in which Lightning Pose's loop appends them.
        return total, [{"name": n, "value": v} for n, v in self.last_result.logs]


def _has_tensor(values: Mapping[str, Any]) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return any(isinstance(v, torch.Tensor) for v in values.values())


def loss_factory(
    paths: Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]],
    losses_params_dict: Mapping[str, Mapping[str, Any]],
    *,
    pca: Optional[Mapping[str, Mapping[str, Any]]] = None,
    backend: str = "auto",
) -> LightningPoseLossFactory:
    """Lightning Pose's ``LossFactory(losses_params_dict, data_module)`` from ``.loss`` files.

    ``paths`` are the ``.loss`` files (``examples/lightning_pose/*.loss``);
    ``losses_params_dict`` is Lightning Pose's config dict, its keys the losses in order;
    ``pca`` gives the fitted PCA of each PCA loss.
    """
    program = load(paths)
    names = list(losses_params_dict)
    annealed = [n for n in names if n not in NOT_ANNEALED]
    factory = program.losses(names, annealed=annealed)
    params: dict[str, Any] = {}
    for name in names:
        given = losses_params_dict[name] or {}
        fitted = (pca or {}).get(name) or {}
        for param in program.params(name):
            value = None
            for key in _PCA_KEYS.get(param, ()):
                if fitted.get(key) is not None:
                    value = fitted[key]
                    break
            if value is None:
                value = given.get(param)
            if value is not None:
                params[f"{name}.{param}"] = value
    return LightningPoseLossFactory(program, factory, params, backend)
