"""Type stubs of the extension module ``lossc._lossc`` (src/integrations/python.rs)."""

import os
from typing import Any, Literal, Mapping, Sequence, TypedDict, Union

import numpy as np
import numpy.typing as npt

__version__: str

PathLike = Union[str, os.PathLike[str]]

class Diagnostic(TypedDict):
    file: str
    line: int
    column: int
    message: str
    severity: Literal["error", "warning"]
    label: str
    notes: list[str]

class LossError(Exception):
    """An error lossc reports, with lossc's message.

    ``diagnostics`` lists the located diagnostics of ``.loss`` files (empty for an
    error of a run: a missing input, a wrong shape, an index out of range).
    """

    diagnostics: list[Diagnostic]

class LossValues(TypedDict):
    loss: float
    weight: float
    weighted: float

DataValue = Union[npt.ArrayLike, str, None]

def load(paths: Union[PathLike, Sequence[PathLike]]) -> Program:
    """Reads, parses and checks ``.loss`` files.

    Raises ``LossError`` (message: the rendered diagnostics, ``file:line:col`` with a
    caret; ``.diagnostics``: one dict each) when they have errors, ``OSError`` when a
    file cannot be read. Warnings go to Python's ``warnings``.
    """

class Program:
    """The losses and factories of checked ``.loss`` files."""

    @property
    def loss_names(self) -> list[str]: ...
    @property
    def factory_names(self) -> list[str]: ...
    def params(self, loss: str) -> list[str]:
        """The params loss ``loss`` declares, in order."""
    def inputs(self, loss: str) -> list[str]:
        """The inputs loss ``loss`` declares, in order."""
    def factory(self, name: str) -> Factory:
        """The factory called ``name``."""
    def losses(
        self, names: Union[str, Sequence[str]], annealed: Union[str, Sequence[str], None] = ...
    ) -> Factory:
        """The losses ``names`` in order, those in ``annealed`` times the anneal factor."""

class Factory:
    """Losses run together: one fused kernel (one dispatch; two with gradients).

    The kernel is compiled on the first GPU call, and each call on data of new shapes or
    param values builds a plan (kept, up to 8); a call on the shapes and param values of
    an earlier one writes the new arrays into that plan and dispatches.
    """

    @property
    def name(self) -> str: ...
    @property
    def losses(self) -> list[str]: ...
    @property
    def annealed(self) -> list[str]: ...
    @property
    def inputs(self) -> list[str]: ...
    @property
    def plans(self) -> int: ...
    @property
    def plans_built(self) -> int: ...
    def __call__(
        self,
        data: Mapping[str, DataValue],
        *,
        anneal: float = 1.0,
        stage: str = "train",
        backend: Literal["auto", "gpu", "cpu"] = "auto",
        wrt: Union[None, bool, str, Sequence[str]] = None,
    ) -> Result:
        """Runs the losses on ``data``.

        ``data`` maps input names and param names (``"<loss>.<param>"``, or the plain
        param name when one loss has it) to NumPy arrays (float, int or bool, any memory
        order), numbers, nested lists and strings (enum params); ``None`` means absent.
        ``wrt`` names the inputs to differentiate the total with respect to (``True``:
        every input given).
        """

class Result:
    """What a factory call returns."""

    total: float
    losses: dict[str, LossValues]
    logs: list[tuple[str, float]]
    grads: dict[str, np.ndarray[Any, np.dtype[np.float32]]]
    dispatches: int
    backend: str
    warnings: list[str]
    notes: list[str]
