"""lossc: training losses written once in ``.loss`` files, run as fused GPU kernels.

``lossc.load(paths)`` checks ``.loss`` files and returns a :class:`Program`; its
``factory(name)`` or ``losses(names, annealed=())`` give a :class:`Factory`, compiled
once and run on a dict of NumPy arrays, numbers, lists and strings::

    import lossc, numpy as np
    program = lossc.load(["examples/lightning_pose/heatmap_mse.loss"])
    mse = program.losses(["heatmap_mse"])
    r = mse({"heatmaps_targ": targ, "heatmaps_pred": pred}, wrt=["heatmaps_pred"])
    r.total, r.losses, r.logs, r.grads["heatmaps_pred"]

``lossc.torch.LossFunction`` makes a factory a ``torch.nn.Module`` whose total
back-propagates; ``lossc.lightning_pose.loss_factory`` builds Lightning Pose's
``LossFactory`` from ``.loss`` files. Every error lossc reports is a
:class:`LossError`. See ``docs/python.md``.
"""

from ._lossc import Factory, LossError, Program, Result, __version__, load

__all__ = ["Factory", "LossError", "Program", "Result", "__version__", "load"]
