"""PyTorch and Dask's dashboard are extras: what needs one says so in one line instead of a traceback.

On a CPU, mapping, batch, predict, explain (cell maps) and napari run the shipped ONNX graphs in ONNX
Runtime, so ``pip install slideiqa`` leaves out PyTorch and the several GB of CUDA wheels it brings.
Training, ``--device cuda``, Grad-CAM and exporting a user's checkpoint that has no graph need it:
``pip install 'slideiqa[torch]'`` (the ``training`` and ``dev`` extras include it). Dask's dashboard
needs bokeh, the ``dashboard`` extra; without it clusters run without one.
"""

from __future__ import annotations

from importlib.util import find_spec
from types import ModuleType

from slideiqa.errors import SlideIQAError

#: The commands that install what this module guards.
TORCH_INSTALL, DASHBOARD_INSTALL = "pip install 'slideiqa[torch]'", "pip install 'slideiqa[dashboard]'"

#: Top-level modules of the ``torch`` extra (import names).
TORCH_MODULES = frozenset({"torch", "torchvision", "safetensors", "onnx"})


class MissingExtraError(SlideIQAError):
    """Something asked for needs an optional dependency that is not installed."""


def is_missing_extra(error: ModuleNotFoundError) -> bool:
    """Whether ``error`` is a module of the ``torch`` extra missing (not a broken install of
    something else, whose own error should surface as it is)."""
    return (error.name or "").split(".")[0] in TORCH_MODULES


def missing_torch(purpose: str) -> MissingExtraError:
    """The one-line error for ``purpose`` (what was asked for, naming the file where there is one)."""
    return MissingExtraError(f"{purpose} needs PyTorch, which is not installed here: {TORCH_INSTALL}")


def require_torch(purpose: str) -> ModuleType:
    """``torch``, with torchvision importable too (every model is built from its backbones), or a
    :class:`MissingExtraError` that names ``purpose`` and the extra to install."""
    try:
        import torch
        import torchvision  # noqa: F401  (the architectures' backbones)
    except ModuleNotFoundError as error:
        if not is_missing_extra(error):
            raise
        raise missing_torch(purpose) from None
    return torch


def torch_installed() -> bool:
    """Whether PyTorch can be imported here (asked only where its absence changes a default)."""
    try:
        require_torch("")
    except MissingExtraError:
        return False
    return True


def dashboard_installed() -> bool:
    """Whether Dask's dashboard can be served from here (its web dependency, bokeh, is installed)."""
    try:
        return find_spec("bokeh") is not None
    except ValueError:  # imported and then removed from sys.modules: not usable
        return False
