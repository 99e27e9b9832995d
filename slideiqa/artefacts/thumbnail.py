"""Which tiles the slide's thumbnail shows under a preparation artefact, and which it labels so.

Pen ink, tissue folds, air bubbles and coverslip edges are hundreds of µm to millimetres large:
each has a detector that works on the thumbnail the map reads for its tissue mask (``pen``,
``folds``, ``bubbles``, ``coverslip``), and its mask is sampled onto the tile grid here. A tile so
labelled gets no CNN verdict: the model was never taught what ink or a fold looks like, and its
judgement there would be noise. Such tiles count against the verdict (they are not usable tissue)
and the summary gives the share lost to each cause.

Two kinds of artefact are told apart. Ink and edges **hide** the tissue under them: tissue is
counted beside them, so a mark on bare glass adds no tissue tile, and a tile is labelled when the
mark covers its record's ``tile_share`` (a quarter; an edge, a line, a tenth) and tissue is
visible beside it. Folds and bubbles **alter** tissue that is still there: a tile is labelled when
it is tissue as any other tile and the artefact covers its ``tile_share`` of it. What each artefact
is, and in which order two claims on the same pixels are settled, is in ``artefacts.registry``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from slideiqa.artefacts.registry import ARTEFACT_NAMES, Artefact, thumbnail_artefacts
from slideiqa.io.grid import TileGrid, tile_fractions


def _run_detectors(detectors: list[Artefact], thumbnail: np.ndarray, um_per_px: float) -> list[np.ndarray]:
    """Each detector's mask of ``thumbnail``, the detectors side by side on a thread per core: they
    are independent, and SciPy's and scikit-image's filters and Hough transform release the GIL for
    much of their work (a 40 960 px slide's plan: 9.9 s one after another, 5.8 s on two threads)."""
    threads = min(len(detectors), os.cpu_count() or 1)
    if threads <= 1:
        return [detector.find(thumbnail, um_per_px) for detector in detectors]
    with ThreadPoolExecutor(threads, thread_name_prefix="slideiqa-artefacts") as pool:
        return list(pool.map(lambda detector: detector.find(thumbnail, um_per_px), detectors))


def artefact_labels(
    thumbnail: np.ndarray,
    stained: np.ndarray,
    grid: TileGrid,
    um_per_px: float,
    min_tissue: float,
    names: tuple[str, ...] | list[str] = ARTEFACT_NAMES,
) -> tuple[np.ndarray, np.ndarray]:
    """(tissue fraction, fixed label) of every tile, from ``thumbnail`` (``um_per_px`` µm per pixel)
    and its tissue mask ``stained``: tissue counted outside what hides it, labels as the module
    docstring says (0 where no artefact is found). Only the thumbnail artefacts among ``names`` are
    looked for."""
    detectors = thumbnail_artefacts(names)
    masks, taken = {}, np.zeros(thumbnail.shape[:2], bool)
    for detector, found in zip(detectors, _run_detectors(detectors, thumbnail, um_per_px)):
        masks[detector.name] = found & ~taken
        taken |= masks[detector.name]
    hidden = np.logical_or.reduce([masks[d.name] for d in detectors if d.hides_tissue] or [np.zeros_like(taken)])
    fractions = tile_fractions(stained & ~hidden, grid)
    fixed = np.zeros(grid.shape, np.uint8)
    for detector in reversed(detectors):  # the strongest claim written last, so it wins a shared tile
        under = tile_fractions(masks[detector.name], grid)
        if detector.hides_tissue:
            claimed = (under >= detector.tile_share) & (under + fractions >= min_tissue) & (fractions > 0)
        else:
            claimed = (under >= detector.tile_share) & (fractions >= min_tissue)
        fixed[claimed] = detector.label
    return fractions, fixed
