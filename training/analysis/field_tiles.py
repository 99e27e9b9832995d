"""The 224 px grid tiles of a clean field at the model's 0.5 µm/px, as the analyses here cut them."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from clean_tissue import resampled  # noqa: E402

from slideiqa.io.slide import open_slide  # noqa: E402

MODEL_MPP, TILE = 0.5, 224
#: A tile is kept where this share of its pixels has an RGB sum below DARK_SUM (tissue, not glass).
MIN_TISSUE, DARK_SUM = 0.25, 630


def field_at_model_scale(path: Path, mpp: float | None) -> np.ndarray:
    """The whole field at 0.5 µm/px (Lanczos); ``mpp`` None: the file's own, 0: taken as 0.5."""
    with open_slide(path) as slide:
        pixels = slide.read_region((0, 0), 0, slide.dimensions)
        scale = MODEL_MPP if mpp == 0 else mpp or slide.mpp or MODEL_MPP
    return resampled(pixels, scale, MODEL_MPP) if abs(scale - MODEL_MPP) > 0.01 else pixels


def tissue_tiles(field: np.ndarray, min_tissue: float = MIN_TISSUE) -> list[np.ndarray]:
    """The field's grid tiles holding at least ``min_tissue`` tissue (every tile with 0)."""
    tiles = [
        field[r : r + TILE, c : c + TILE]
        for r in range(0, field.shape[0] - TILE + 1, TILE)
        for c in range(0, field.shape[1] - TILE + 1, TILE)
    ]
    return [tile for tile in tiles if (tile.astype(np.int32).sum(-1) < DARK_SUM).mean() >= min_tissue]
