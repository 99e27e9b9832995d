"""Which tiles the slide's thumbnail shows under a preparation artefact, and which it labels so.

Pen ink, tissue folds, air bubbles and coverslip edges are hundreds of µm to millimetres large:
each has a detector that works on the thumbnail the map reads for its tissue mask (``artefacts``,
``folds``, ``bubbles``, ``coverslip``), and its mask is sampled onto the tile grid here. A tile so
labelled gets no CNN verdict: the model was never taught what ink or a fold looks like, and its
judgement there would be noise. Such tiles count against the verdict (they are not usable tissue)
and the summary gives the share lost to each cause.

Two kinds of artefact are told apart. Ink and edges **hide** the tissue under them: tissue is
counted beside them, so a mark on bare glass adds no tissue tile, and a tile is labelled when the
mark covers :data:`ARTEFACT_TILE_SHARE` (an edge, a line, :data:`EDGE_TILE_SHARE`) and tissue is
visible beside it. Folds and bubbles **alter** tissue that is still there: a tile is labelled when
it is tissue as any other tile and the artefact covers :data:`ARTEFACT_TILE_SHARE` of it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from slideiqa.artefacts.bubbles import bubble_mask
from slideiqa.artefacts.coverslip import edge_mask
from slideiqa.artefacts.folds import fold_mask
from slideiqa.artefacts.pen import pen_mask
from slideiqa.io.grid import TileGrid, tile_fractions
from slideiqa.outputs.store import BUBBLE, BUBBLE_CLASS, EDGE, EDGE_CLASS, FOLD, FOLD_CLASS, PEN, PEN_CLASS

#: A tile whose footprint is at least this much under an artefact is labelled with it.
ARTEFACT_TILE_SHARE = 0.25
#: A coverslip edge is a line, not an area: one 30 µm wide crossing a 112 µm tile covers about a
#: quarter of it, a thin grey one a tenth; at this share the line is across the tile, and the CNN
#: would judge a tile by a dark stripe it was never taught.
EDGE_TILE_SHARE = 0.1


@dataclass(frozen=True)
class ThumbnailArtefact:
    name: str
    label: int
    find: Callable[[np.ndarray, float], np.ndarray]
    tile_share: float
    hides_tissue: bool


#: Strongest claim first: where two detectors answer for the same pixels, the first keeps them.
#: The black band of a bevelled edge passes the black-ink rule and inked tissue is dark enough to
#: pass for a fold, so edges come before ink and ink before folds.
DETECTORS = (
    ThumbnailArtefact(EDGE_CLASS, EDGE, edge_mask, EDGE_TILE_SHARE, hides_tissue=True),
    ThumbnailArtefact(PEN_CLASS, PEN, pen_mask, ARTEFACT_TILE_SHARE, hides_tissue=True),
    ThumbnailArtefact(BUBBLE_CLASS, BUBBLE, bubble_mask, ARTEFACT_TILE_SHARE, hides_tissue=False),
    ThumbnailArtefact(FOLD_CLASS, FOLD, fold_mask, ARTEFACT_TILE_SHARE, hides_tissue=False),
)
#: The artefacts the thumbnail is searched for, unless the map is asked not to.
THUMBNAIL_ARTEFACTS = [detector.name for detector in DETECTORS]


def _run_detectors(thumbnail: np.ndarray, um_per_px: float) -> list[np.ndarray]:
    """Each detector's mask of ``thumbnail``, the detectors side by side on a thread per core: they
    are independent, and SciPy's and scikit-image's filters and Hough transform release the GIL for
    much of their work (a 40 960 px slide's plan: 9.9 s one after another, 5.8 s on two threads)."""
    threads = min(len(DETECTORS), os.cpu_count() or 1)
    if threads == 1:
        return [detector.find(thumbnail, um_per_px) for detector in DETECTORS]
    with ThreadPoolExecutor(threads, thread_name_prefix="slideiqa-artefacts") as pool:
        return list(pool.map(lambda detector: detector.find(thumbnail, um_per_px), DETECTORS))


def artefact_labels(
    thumbnail: np.ndarray, stained: np.ndarray, grid: TileGrid, um_per_px: float, min_tissue: float
) -> tuple[np.ndarray, np.ndarray]:
    """(tissue fraction, fixed label) of every tile, from ``thumbnail`` (``um_per_px`` µm per pixel)
    and its tissue mask ``stained``: tissue counted outside what hides it, labels as the module
    docstring says (0 where no artefact is found)."""
    masks, taken = {}, np.zeros(thumbnail.shape[:2], bool)
    for detector, found in zip(DETECTORS, _run_detectors(thumbnail, um_per_px)):
        masks[detector.name] = found & ~taken
        taken |= masks[detector.name]
    hidden = np.logical_or.reduce([masks[d.name] for d in DETECTORS if d.hides_tissue])
    fractions = tile_fractions(stained & ~hidden, grid)
    fixed = np.zeros(grid.shape, np.uint8)
    for detector in reversed(DETECTORS):  # the strongest claim written last, so it wins a shared tile
        under = tile_fractions(masks[detector.name], grid)
        if detector.hides_tissue:
            claimed = (under >= detector.tile_share) & (under + fractions >= min_tissue) & (fractions > 0)
        else:
            claimed = (under >= detector.tile_share) & (fractions >= min_tissue)
        fixed[claimed] = detector.label
    return fractions, fixed
