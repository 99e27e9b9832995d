"""Where on the glass is there something to assess? A tissue (or cell) mask from a low-resolution image.

Glass is bright and colourless; stained tissue and cells are darker or coloured. A pixel is tissue when
it is darker than the glass by a margin or visibly saturated. The glass brightness is estimated from
the image itself (a high percentile), so a slide scanned a little dark or a little bright still works.
A pixel clipped to white on a slide whose glass is not is kept too: a scanner that does not clip its
glass clips nothing else unless the light was too strong there, and tissue over-exposed to white must
be judged (as an exposure error), not taken for glass and left out of the verdict.
Small specks (dust, debris) are removed and small holes filled, so a tile's tissue fraction reflects
real tissue. Where the image is fine enough to see cells (a field, or a slide's thumbnail finer than
:data:`BRIDGE_UM`), stained pixels closer than :data:`BRIDGE_UM` are joined: pale tissue — a Ki67
field's unstained stroma between its nuclei — is tissue, not glass, although only its nuclei are
darker than its brightest pixels (a pale IHC field was "no tissue found"). The same rule, at full
resolution, keeps empty crops out of training datasets.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage import morphology

DARKER_THAN_GLASS = 30.0
#: Brightness of clean glass on a well-set-up scanner; the upper bound of the estimated glass level.
NOMINAL_GLASS = 245.0
MIN_SATURATION = 25.0
#: A pixel whose every channel is at least CLIPPED_WHITE is over-exposed where the slide's own glass
#: (its 95th percentile of brightness) is at most GLASS_NOT_CLIPPED; a slide that writes its glass as
#: white is left as it was.
CLIPPED_WHITE, GLASS_NOT_CLIPPED = 253.0, 250.0
#: Stained pixels closer than this (µm) lie in one piece of tissue: about a cell's spacing in stroma.
BRIDGE_UM = 20.0


def tissue_pixels(rgb: np.ndarray, glass_level: float | None = None) -> np.ndarray:
    """Boolean mask of stained (or over-exposed) pixels of a uint8 RGB image (H, W, 3), or of each
    of a stack of them (..., H, W, 3), each with its own glass level where none is given."""
    rgb = np.asarray(rgb, dtype=np.float32)
    brightness = rgb.mean(axis=-1)
    # Channel by channel: NumPy's max and min over a last axis of three cost several times as much.
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    darkest = np.minimum(np.minimum(red, green), blue)
    kept = np.maximum(np.maximum(red, green), blue) - darkest > MIN_SATURATION
    if glass_level is not None:
        return kept | (brightness < glass_level - DARKER_THAN_GLASS)
    bright = np.percentile(brightness, 95, axis=(-2, -1), keepdims=True)
    kept |= (darkest >= CLIPPED_WHITE) & (bright <= GLASS_NOT_CLIPPED)
    return kept | (brightness < np.minimum(bright, NOMINAL_GLASS) - DARKER_THAN_GLASS)


def tissue_mask(thumbnail: np.ndarray, min_object_px: int = 16, um_per_px: float | None = None) -> np.ndarray:
    """Cleaned tissue mask of a slide thumbnail: specks below ``min_object_px`` removed, holes filled;
    with the thumbnail's ``um_per_px``, gaps narrower than :data:`BRIDGE_UM` between stained pixels
    closed (a morphological closing: it joins pieces and fills notches narrower than that, and moves
    no straight or convex edge of the tissue)."""
    mask = tissue_pixels(thumbnail)
    mask = morphology.remove_small_objects(mask, max_size=min_object_px)
    radius = int(BRIDGE_UM / 2 / um_per_px) if um_per_px else 0
    if radius >= 1:
        mask = ndimage.binary_closing(np.pad(mask, radius, mode="reflect"), morphology.disk(radius))[
            radius:-radius, radius:-radius
        ]
    return morphology.remove_small_holes(mask, max_size=min_object_px)
