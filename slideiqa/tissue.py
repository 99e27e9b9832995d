"""Where on the glass is there something to assess? A tissue (or cell) mask from a low-resolution image.

Glass is bright and colourless; stained tissue and cells are darker or coloured. A pixel is tissue when
it is darker than the glass by a margin or visibly saturated. The glass brightness is estimated from
the image itself (a high percentile), so a slide scanned a little dark or a little bright still works.
Small specks (dust, debris) are removed and small holes filled, so a tile's tissue fraction reflects
real tissue. The same rule, at full resolution, keeps empty crops out of training datasets.
"""

from __future__ import annotations

import numpy as np
from skimage import morphology

DARKER_THAN_GLASS = 30.0
#: Brightness of clean glass on a well-set-up scanner; the upper bound of the estimated glass level.
NOMINAL_GLASS = 245.0
MIN_SATURATION = 25.0


def tissue_pixels(rgb: np.ndarray, glass_level: float | None = None) -> np.ndarray:
    """Boolean mask of stained pixels of a uint8 RGB image."""
    rgb = np.asarray(rgb, dtype=np.float32)
    brightness = rgb.mean(axis=-1)
    saturation = rgb.max(axis=-1) - rgb.min(axis=-1)
    if glass_level is None:
        glass_level = min(float(np.percentile(brightness, 95)), NOMINAL_GLASS)
    return (brightness < glass_level - DARKER_THAN_GLASS) | (saturation > MIN_SATURATION)


def tissue_mask(thumbnail: np.ndarray, min_object_px: int = 16) -> np.ndarray:
    """Cleaned tissue mask of a slide thumbnail: specks below ``min_object_px`` removed, holes filled."""
    mask = tissue_pixels(thumbnail)
    mask = morphology.remove_small_objects(mask, max_size=min_object_px)
    return morphology.remove_small_holes(mask, max_size=min_object_px)
