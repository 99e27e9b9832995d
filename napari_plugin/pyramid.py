"""A slide as a lazy multiscale Dask pyramid for napari.

napari asks a multiscale layer only for the part of the level that is on screen, so each level is a
Dask array whose chunks are read from the slide on demand with :meth:`Slide.read_region`: a
gigapixel level is never decoded, nor held in memory, as a whole.

Slides whose own pyramid stops at a level still too large to show at once (plain TIFFs, single-level
crops such as the sample) get coarser levels made lazily by 2×2 averaging of the level above, so
zooming out does not upload a huge texture.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from slideiqa.io.slide import Slide

#: Side of one chunk in level pixels: a few scanner tiles per read keeps per-read overhead low while
#: letting napari fetch little more than what is on screen.
CHUNK = 1024
#: Levels are added until the coarsest one fits in this many pixels per side.
MAX_COARSEST_SIDE = 2048


def _read_chunk(slide: Slide, level: int, downsample: float, block_info: dict | None = None) -> np.ndarray:
    """The chunk Dask asks for, read from the slide at ``level`` (location in level-0 pixels)."""
    assert block_info is not None  # Dask passes it to a function that takes it
    (y0, y1), (x0, x1), _ = block_info[None]["array-location"]
    return slide.read_region((round(x0 * downsample), round(y0 * downsample)), level, (x1 - x0, y1 - y0))


def level_array(slide: Slide, level: int, chunk: int = CHUNK) -> da.Array:
    """One pyramid level of ``slide`` as a lazy (height, width, 3) uint8 Dask array."""
    width, height = slide.info.level_dimensions[level]
    chunks = da.core.normalize_chunks((chunk, chunk, 3), (height, width, 3))
    return da.map_blocks(
        _read_chunk,
        slide,
        level,
        slide.info.level_downsamples[level],
        chunks=chunks,
        dtype=np.uint8,
        meta=np.empty((0, 0, 0), np.uint8),
        name=f"slideiqa-{slide.path.name}-level{level}-{id(slide):x}",
    )


def _halve(level: da.Array) -> da.Array:
    """The next coarser level, by 2×2 averaging: computed chunk by chunk, only when napari shows it."""
    halved = da.coarsen(np.mean, level[: level.shape[0] // 2 * 2, : level.shape[1] // 2 * 2], {0: 2, 1: 2})
    return halved.round().astype(np.uint8)


def slide_pyramid(slide: Slide, chunk: int = CHUNK, max_coarsest_side: int = MAX_COARSEST_SIDE) -> list[da.Array]:
    """Every level of ``slide``, finest first, plus averaged levels until the coarsest one is small."""
    levels = [level_array(slide, level, chunk) for level in range(slide.level_count)]
    while max(levels[-1].shape[:2]) > max_coarsest_side:
        levels.append(_halve(levels[-1]))
    return levels


def level_downsamples(levels: list[da.Array]) -> list[float]:
    """Each level's downsample from level 0, as napari derives it from the shapes."""
    return [levels[0].shape[1] / level.shape[1] for level in levels]
