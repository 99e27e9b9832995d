"""Sharp source images to cut training crops from: microscope fields and whole-slide regions.

A field (PNG/JPEG/TIFF) is small and is decoded once; a slide is read crop by crop through
OpenSlide so that a gigapixel scan never has to fit in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, UnidentifiedImageError

from slideiqa.tissue import NOMINAL_GLASS, tissue_pixels

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
SLIDE_SUFFIXES = {".svs", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".bif", ".svslide", ".dcm"}


class SourceError(Exception):
    """A source image cannot be used; the message names the file and the cause."""


@dataclass
class Source:
    """One sharp image (or slide level 0) from which crops are cut."""

    path: Path
    width: int
    height: int
    _pixels: np.ndarray | None = None
    _slide: object | None = None

    @property
    def name(self) -> str:
        return self.path.stem

    def crop(self, x: int, y: int, size: int) -> np.ndarray:
        if self._pixels is not None:
            return np.ascontiguousarray(self._pixels[y : y + size, x : x + size])
        region = self._slide.read_region((x, y), 0, (size, size))  # type: ignore[union-attr]
        return np.asarray(region.convert("RGB"))


def open_source(path: str | Path) -> Source:
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    if path.suffix.lower() in SLIDE_SUFFIXES:
        import openslide

        try:
            slide = openslide.OpenSlide(str(path))
        except (openslide.OpenSlideError, OSError) as error:
            raise SourceError(f"{path}: OpenSlide cannot read it ({error})") from None
        width, height = slide.dimensions
        return Source(path, width, height, _slide=slide)
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise SourceError(f"{path}: not a readable image ({error})") from None
    return Source(path, pixels.shape[1], pixels.shape[0], _pixels=pixels)


def find_sources(paths: Iterable[str | Path]) -> list[Path]:
    """Image and slide files among ``paths`` (folders are searched one level deep), sorted."""
    found: list[Path] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            found += [p for p in sorted(entry.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES | SLIDE_SUFFIXES]
        elif entry.exists():
            found.append(entry)
        else:
            raise SourceError(f"{entry}: no such file or folder")
    if not found:
        raise SourceError(f"no images found in {', '.join(map(str, paths))}")
    return found


def tissue_fraction(crop: np.ndarray) -> float:
    """Share of stained pixels in a crop, by the slide mapper's tissue rule with glass at full white.

    Crops of empty background have no defined quality and are kept out of datasets.
    """
    return float(tissue_pixels(crop, glass_level=NOMINAL_GLASS).mean())
