"""Sharp source images to cut training crops from: microscope fields and whole-slide regions.

Sources are opened with slideiqa's own slide readers, so a training crop is read exactly as a map
tile is (level 0, unscanned areas as white glass), and a gigapixel scan is read crop by crop.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slideiqa.errors import SlideIQAError
from slideiqa.io.formats import FIELD_SUFFIXES, SLIDE_SUFFIXES
from slideiqa.io.slide import Slide, SlideError, open_slide
from slideiqa.measure.tissue import NOMINAL_GLASS, tissue_pixels

#: Images a labelled folder may hold: fields, and fields saved as TIFF.
IMAGE_SUFFIXES = FIELD_SUFFIXES | {".tif", ".tiff"}


class SourceError(SlideIQAError):
    """A source image cannot be used; the message names the file and the cause."""


@dataclass
class Source:
    """One sharp image (or slide level 0) from which crops are cut."""

    path: Path
    slide: Slide

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def width(self) -> int:
        return self.slide.dimensions[0]

    @property
    def height(self) -> int:
        return self.slide.dimensions[1]

    def crop(self, x: int, y: int, size: int) -> np.ndarray:
        return self.slide.read_region((x, y), 0, (size, size))


def open_source(path: str | Path) -> Source:
    path = Path(path)
    try:
        return Source(path, open_slide(path))
    except SlideError as error:
        raise SourceError(str(error)) from None


def find_sources(paths: Iterable[str | Path]) -> list[Path]:
    """Image and slide files among ``paths`` (folders are searched one level deep), sorted."""
    paths = list(paths)
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
