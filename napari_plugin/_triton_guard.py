"""Keep Triton and Mesa's LLVM from meeting in one process.

napari draws with OpenGL; on machines without a GPU driver that is Mesa's llvmpipe, which maps
``libLLVM`` into the process. Triton carries its own LLVM, and loading it *after* Mesa's crashes the
process (a segmentation fault, no Python error); loading it *before* is harmless. slideiqa's model
code imports torchvision, which imports ``torch._dynamo``, which imports Triton when it is installed.

So, on import of this plugin: if no OpenGL has started yet (``python -m slideiqa_napari.screenshot``,
a script), slideiqa — and with it Triton — is imported now, before napari's first canvas; if Mesa's
LLVM is already there (the plugin loaded by a running napari), Triton is marked absent
(``sys.modules["triton"] = None``, the documented way to make an import fail) and PyTorch carries on
without it. Triton only compiles GPU kernels, which mapping never uses.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _llvm_mapped() -> bool:
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:  # not Linux: no Mesa llvmpipe in the way
        return False
    return "libLLVM" in maps


def load_torch_before_opengl() -> str:
    """Make the later import of slideiqa's model code safe; says what was done (for tests and logs)."""
    if "triton" in sys.modules:
        return "triton already loaded"
    if _llvm_mapped():
        sys.modules["triton"] = None  # type: ignore[assignment]
        return "triton blocked: Mesa's LLVM is loaded"
    import slideiqa.mapping  # noqa: F401  (torch, torchvision and Triton, ahead of any OpenGL)

    return "slideiqa loaded before OpenGL"
