"""Which reader opens a file: every backend in one table, in the order they are tried.

A backend's ``open`` gives a :class:`~slideiqa.io.slide.Slide`, None where the file is not its kind
(the next backend is tried), or a :class:`~slideiqa.io.slide.SlideError` where it is its kind but
broken (the next is still tried, and the first error is the one reported if none opens it). A
backend whose ``first_for`` says so for a file goes before the others: OME-TIFF keeps its pyramid
in SubIFDs, which OpenSlide does not see, so tifffile reads it whole. A field image (by its name)
and whatever no backend opens go to Pillow. Adding a reader is one module here and one line below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from slideiqa.io.backends.image_reader import open_with_pillow
from slideiqa.io.backends.openslide_reader import open_with_openslide
from slideiqa.io.backends.tiff_reader import inspect_tiff, open_with_tifffile
from slideiqa.io.slide import Slide


def _never(path: Path) -> bool:
    return False


@dataclass(frozen=True)
class Backend:
    name: str
    open: Callable[[Path], Slide | None]
    first_for: Callable[[Path], bool] = _never


#: Tried in this order, unless one's ``first_for`` puts it first for a file.
BACKENDS: tuple[Backend, ...] = (
    Backend("openslide", open_with_openslide),
    # inspect_tiff also refuses a TIFF cut short, before any reader opens it (SlideError).
    Backend("tifffile", open_with_tifffile, first_for=inspect_tiff),
)
#: Plain images, and the last resort: one level decoded whole (a SlideError where it is not an image).
FALLBACK: Callable[[Path], Slide] = open_with_pillow


def backends_for(path: Path) -> list[Backend]:
    """The backends to try for ``path``, in order (a stable sort: the table's order otherwise)."""
    return sorted(BACKENDS, key=lambda backend: not backend.first_for(path))
