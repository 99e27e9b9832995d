"""The tile grid: where each model-sized field lies on the slide, and how to read it.

The grid is laid at the model card's pixel size: a tile is ``tile_size`` model pixels of
``model_mpp`` µm, i.e. ``tile_size × model_mpp`` µm on the glass, whatever the scanner's resolution.
Tiles are aligned to level-0 pixel (0, 0); tile (row, col) starts at level-0 pixel
``(round(col × step), round(row × step))`` with ``step = tile_size × model_mpp / slide_mpp``.

Edge tiles: the grid covers the whole slide (``ceil`` of width/step columns), so the last row and
column may extend past the image. For the tissue fraction the part beyond counts as glass, so such a
tile is assessed only if what is really there passes the threshold. For judging, though, the tile
is the image it holds mirrored about the slide's edge out to a full tile: judged on white padding,
a clean edge tile of dense tissue was called under-exposed (its "glass" at 255, its tissue against
white) and the straight tissue/white step read as a motion streak. Mirroring adds no edge or tone
the image does not have, so a defect inside the image is judged as it is. A tile read from a finer
level has the part inside shrunk first and is mirrored at the tile's scale, so that the mirror line
lies exactly on its pixels for the measurements that read only an edge tile's own part (JPEG blocks,
a streak's direction: ``edge_tiles``).

Each tile is read from the coarsest pyramid level that is still at least as fine as the model
(never upsampled), then shrunk to ``tile_size`` with an antialiasing filter. A slide up to
:data:`COARSEST_RATIO` coarser than the model (a 20× scanner writing 0.55 µm/px for a 0.5 µm/px
model) is judged at its own pixels, its tiles ``tile_size`` of them (:func:`judging_scale`):
enlarged to the model's scale, its tiles lost the scanner's own JPEG blocks and noise to the
filter (JPEG quality 15 flagged on 0 of 51 held-out tiles enlarged, 41 of 49 as they are), while
10 % in scale leaves clean tiles passing and blur flagged alike (``benchmarks/README.md``). A
coarser slide is refused. Where that level's tiles are JPEG in a
TIFF, they are decoded here directly (:mod:`slideiqa.io.scaled_decode`), each file tile once: at full size
the pixels are OpenSlide's to the bit, five times faster than a region at a time through it; where the
level is at least twice as fine as the model the decoder itself shrinks by 2, 4 or 8 and only the
remainder, if any, is resized. A tile the JPEG decoder rejects is read by the general path instead
and counted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from slideiqa.io.scaled_decode import scale_factor
from slideiqa.io.slide import Slide

#: A slide or field may be this much coarser than the model; it is then judged at its own pixels.
COARSEST_RATIO = 1.10


def judging_scale(slide_mpp: float, model_mpp: float) -> float:
    """The µm/px a slide's tiles are judged at: the model's, or a slide's own where it is coarser by
    at most :data:`COARSEST_RATIO` (never enlarged: see the module docstring)."""
    return slide_mpp if model_mpp < slide_mpp <= model_mpp * COARSEST_RATIO else model_mpp


@dataclass(frozen=True)
class TileGrid:
    width: int  # level-0 pixels
    height: int
    slide_mpp: float
    model_mpp: float
    tile_size: int

    @property
    def step(self) -> float:
        """Tile side in level-0 pixels."""
        return self.tile_size * self.model_mpp / self.slide_mpp

    @property
    def tile_um(self) -> float:
        """Tile side on the glass in micrometres."""
        return self.tile_size * self.model_mpp

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns)."""
        return math.ceil(self.height / self.step - 1e-9), math.ceil(self.width / self.step - 1e-9)

    def origin(self, row: int, col: int) -> tuple[int, int]:
        """Level-0 (x, y) of a tile's top-left corner."""
        return int(round(col * self.step)), int(round(row * self.step))

    def to_dict(self) -> dict:
        return asdict(self) | {"step": self.step, "tile_um": self.tile_um, "shape": list(self.shape)}


@dataclass(frozen=True)
class ReadPlan:
    """Which pyramid level to read a tile from, how many of its pixels make one tile, whether the
    level's JPEG tiles are decoded directly (else the general reader decodes it) and by how much
    that decoder shrinks them (1: in full)."""

    level: int
    level_downsample: float
    read_size: int
    decode_factor: int = 1
    jpeg_tiles: bool = False
    #: The tiles are the file's own level-0 pixels (read at their size, decoded in full): what the
    #: scanner's compression left is there as it left it (``jpeg_quantisation.judge_jpeg``). Only level
    #: 0: some readers build a lower level by decoding level 0's JPEG at reduced size, not from stored pixels.
    native: bool = False

    @property
    def decoder(self) -> str | None:
        """How a map's tiles are decoded, for its summary; None: by the slide's general reader."""
        if not self.jpeg_tiles:
            return None
        return "scaled JPEG" if self.decode_factor > 1 else "direct JPEG"


def read_plan(slide: Slide, grid: TileGrid) -> ReadPlan:
    level = slide.best_level_for_downsample(grid.step / grid.tile_size)
    downsample = slide.info.level_downsamples[level]
    read_size = max(1, int(round(grid.step / downsample)))
    direct = slide.scaled is not None and level in slide.scaled.levels
    factor = scale_factor(read_size, grid.tile_size) if direct else 1
    native = level == 0 and read_size == grid.tile_size and factor == 1
    return ReadPlan(level, downsample, read_size, factor, direct, native)


def read_tile(slide: Slide, grid: TileGrid, plan: ReadPlan, row: int, col: int) -> tuple[np.ndarray, bool]:
    """One (tile_size, tile_size, 3) uint8 tile, and whether the JPEG decoder had to hand it to the
    general path (a tile it rejected)."""
    origin, size = grid.origin(row, col), (plan.read_size, plan.read_size)
    if plan.jpeg_tiles:
        pixels, fell_back = slide.read_region_direct(origin, plan.level, size, plan.decode_factor)
    else:
        pixels, fell_back = slide.read_region(origin, plan.level, size), False
    tile = (grid.tile_size, grid.tile_size)
    if pixels.shape[:2] == tile:
        return mirrored_past_edge(pixels, grid, origin), fell_back
    # The part inside the slide is shrunk alone and mirrored at the tile's scale, so the mirror line
    # lies exactly on the tile's pixels, where the measurements that read an edge tile's own part
    # find it (``edge_tiles.own_extent``); shrunk after mirroring, the line was blurred away.
    rows, columns = _inside_size(grid, origin, tile)
    own = np.asarray(
        Image.fromarray(_inside_part(pixels, grid, origin)).resize((columns, rows), Image.Resampling.LANCZOS)
    )
    return _mirrored_out(own, tile), fell_back


def _inside_size(grid: TileGrid, origin: tuple[int, int], shape: tuple[int, ...]) -> tuple[int, int]:
    """(rows, columns) of a tile at level-0 ``origin``, held as ``shape`` pixels, that lie inside the
    slide: at least one each way."""
    height, width = shape[:2]
    inside_x = (grid.width - origin[0]) / grid.step  # share of the tile's side inside the slide
    inside_y = (grid.height - origin[1]) / grid.step
    return min(height, max(1, int(round(inside_y * height)))), min(width, max(1, int(round(inside_x * width))))


def _inside_part(pixels: np.ndarray, grid: TileGrid, origin: tuple[int, int]) -> np.ndarray:
    """The part of a tile read at level-0 ``origin`` (``pixels`` at any scale of its footprint) that
    lies inside the slide."""
    rows, columns = _inside_size(grid, origin, pixels.shape)
    return pixels[:rows, :columns]


def _mirrored_out(part: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``part`` mirrored about its right and bottom edges out to ``shape`` (repeatedly, where less
    than half of it is there); ``part`` itself where it fills the shape."""
    if part.shape[:2] == shape:
        return part
    return np.pad(part, ((0, shape[0] - part.shape[0]), (0, shape[1] - part.shape[1]), (0, 0)), mode="symmetric")


def mirrored_past_edge(pixels: np.ndarray, grid: TileGrid, origin: tuple[int, int]) -> np.ndarray:
    """A tile read at level-0 ``origin`` with the part beyond the slide's right or bottom edge
    replaced by the image mirrored about that edge (repeatedly, where less than half is inside);
    unchanged for a tile wholly inside. ``pixels`` may be at any scale of the tile's footprint."""
    part = _inside_part(pixels, grid, origin)
    return pixels if part.shape == pixels.shape else _mirrored_out(part, pixels.shape[:2])


def tile_fractions(mask: np.ndarray, grid: TileGrid) -> np.ndarray:
    """Per-tile mean of a low-resolution boolean mask covering the whole slide.

    Uses an integral image, so each tile's fraction is exact for the mask pixels its footprint
    covers, with any mask resolution and any (fractional) tile step.
    """
    rows, cols = grid.shape
    scale_y, scale_x = mask.shape[0] / grid.height, mask.shape[1] / grid.width
    integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1))
    integral[1:, 1:] = np.cumsum(np.cumsum(mask.astype(np.float64), axis=0), axis=1)
    edges_y = np.rint(np.arange(rows + 1) * grid.step * scale_y).astype(int)
    edges_x = np.rint(np.arange(cols + 1) * grid.step * scale_x).astype(int)
    clipped_y, clipped_x = np.clip(edges_y, 0, mask.shape[0]), np.clip(edges_x, 0, mask.shape[1])
    y0, y1 = clipped_y[:-1, None], clipped_y[1:, None]
    x0, x1 = clipped_x[None, :-1], clipped_x[None, 1:]
    sums = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    # The denominator is the tile's whole footprint in mask pixels, including any part beyond the
    # slide edge (which is glass), with the same rounding as the sums.
    footprint = np.diff(edges_y)[:, None] * np.diff(edges_x)[None, :]
    return np.clip(sums / np.maximum(footprint, 1), 0.0, 1.0).astype(np.float32)
