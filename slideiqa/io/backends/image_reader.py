"""Plain field images (PNG, JPEG, small TIFF) with Pillow: a cytology or smear field is a one-level slide."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from slideiqa.io.slide import (
    READ_BUDGET_BYTES,
    Slide,
    SlideError,
    SlideInfo,
    beyond_budget,
    gigabytes,
    on_glass,
    plausible_mpp,
)


class _ArrayReader:
    def __init__(self, pixels: np.ndarray) -> None:
        self.pixels = pixels

    def read_region(self, location, level, size):
        height, width = self.pixels.shape[:2]
        return on_glass(location, size, (width, height), lambda ys, xs: self.pixels[ys, xs])

    def close(self) -> None:
        pass


def open_with_pillow(path: Path) -> Slide:
    """A plain image, decoded whole (after its header says it fits the read budget)."""
    try:
        with warnings.catch_warnings():  # the budget below is the guard; Pillow's warning would be noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            decoded = image.width * image.height * 3
            if decoded > READ_BUDGET_BYTES:
                raise beyond_budget(
                    path, f"a plain {image.width:,} × {image.height:,} px image decodes to {gigabytes(decoded)}"
                )
            dpi = image.info.get("dpi")
            image_format = image.format
            pixels = np.asarray(image.convert("RGB"))
    except Image.DecompressionBombError:
        raise beyond_budget(path, "a plain image this large decodes") from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise SlideError(f"{path}: not a slide or image that slideiqa can read ({error})") from None
    mpp = plausible_mpp((25_400.0 / float(dpi[0]), 25_400.0 / float(dpi[1] or dpi[0]))) if dpi and dpi[0] else None
    info = SlideInfo(
        str(path), "pillow", "image", [(pixels.shape[1], pixels.shape[0])], [1.0], mpp, None, compression=image_format
    )
    return Slide(path, _ArrayReader(pixels), info)
