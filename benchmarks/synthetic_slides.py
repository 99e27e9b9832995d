"""Synthetic whole-slide images of real pixels, for benchmarks: any size, cached on disk.

A slide is made of 512 px pieces of every real field in ``examples/data`` and of the CMU slide's
tissue (flipped and turned at random), inside an elliptical tissue area on glass; reduced levels are
averaged down and written as separate pages with ``subfiletype=1`` (as scanners do, and as OpenSlide
reads them), JPEG tiles at 0.5 µm/px by default. A 40× slide is the same pixels declared at 0.25 µm/px
with Aperio's levels (1×, 4×, 16×): its pixels are real, its scale is the one the decoder must handle.
"""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "examples" / "data"
CACHE = HERE / "cache"
TILE, MPP = 512, 0.5


@lru_cache(maxsize=1)
def source_pieces() -> tuple[np.ndarray, ...]:
    """512 px pieces of every real field and of the CMU slide's tissue."""
    from slideiqa.io.slide import open_slide
    from slideiqa.measure.tissue import tissue_pixels

    pieces = []
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((DATA / "fields").iterdir())]
    with open_slide(DATA / "cmu_small_region.svs") as cmu:
        images.append(cmu.read_region((0, 0), 0, cmu.dimensions))  # a 2220 × 2967 crop, small enough
    for image in images:
        for y in range(0, image.shape[0] - TILE + 1, TILE // 2):
            for x in range(0, image.shape[1] - TILE + 1, TILE // 2):
                piece = image[y : y + TILE, x : x + TILE]
                if tissue_pixels(piece, glass_level=245).mean() > 0.6:
                    pieces.append(np.ascontiguousarray(piece))
    return tuple(pieces)


def level0_tile(width: int, height: int, seed: int, ty: int, tx: int, tile: int = TILE) -> np.ndarray:
    """Tile (ty, tx) of level 0: a real piece inside the ellipse, glass outside."""
    cy, cx = (ty + 0.5) * tile / height - 0.5, (tx + 0.5) * tile / width - 0.5
    if (cx / 0.45) ** 2 + (cy / 0.42) ** 2 > 1:
        return np.full((tile, tile, 3), (242, 241, 244), np.uint8)
    pieces = source_pieces()
    rng = np.random.default_rng((seed, ty, tx))
    piece = pieces[int(rng.integers(len(pieces)))]
    if tile != TILE:  # a random part of the piece
        y, x = (int(v) for v in rng.integers(0, TILE - tile + 1, 2))
        piece = piece[y : y + tile, x : x + tile]
    return np.ascontiguousarray(np.rot90(piece, int(rng.integers(4)))[:, :: rng.choice([-1, 1])])


def level_tiles(width: int, height: int, seed: int, level: int, tile: int = TILE, level_step: int = 2):
    """Tiles of a level, each averaged down from the level-0 tiles beneath it."""
    factor = level_step**level
    rows, cols = -(-height // factor // tile), -(-width // factor // tile)
    for ty in range(rows):
        for tx in range(cols):
            block = np.concatenate(
                [
                    np.concatenate(
                        [
                            level0_tile(width, height, seed, ty * factor + i, tx * factor + j, tile)
                            for j in range(factor)
                        ],
                        axis=1,
                    )
                    for i in range(factor)
                ],
                axis=0,
            )
            yield (
                block if factor == 1 else np.asarray(Image.fromarray(block).resize((tile, tile), Image.Resampling.BOX))
            )


def build_slide(
    path: Path,
    width: int,
    height: int,
    levels: int,
    seed: int = 0,
    mpp: float = MPP,
    tile: int = TILE,
    level_step: int = 2,
) -> Path:
    """The slide at ``path``, built on first use (written to a temporary name, then renamed)."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".partial.tif")
    started = time.perf_counter()
    with tifffile.TiffWriter(temporary, bigtiff=True) as tif:
        for level in range(levels):
            factor = level_step**level
            shape = (height // factor, width // factor, 3)
            tif.write(
                level_tiles(width, height, seed, level, tile, level_step),
                shape=shape,
                dtype=np.uint8,
                tile=(tile, tile),
                photometric="rgb",
                compression="jpeg",
                compressionargs={"level": 80},
                subfiletype=1 if level else 0,
                resolution=(1e4 / (mpp * factor), 1e4 / (mpp * factor)),
                resolutionunit="CENTIMETER",
            )
    temporary.rename(path)
    print(f"built {path.name} in {time.perf_counter() - started:.0f} s", flush=True)
    return path
