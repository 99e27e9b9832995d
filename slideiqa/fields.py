"""Quality of a single microscope field: tile it at the model's input size and pool the tiles."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import SlideIQAError
from .inference import Predictor
from .slide import open_slide


@dataclass
class FieldQuality:
    tiles: int
    score: float
    label: str
    probabilities: np.ndarray
    #: µm/px the field was taken to be at, and whether that was assumed (neither given nor in the file).
    mpp: float = 0.0
    assumed_mpp: bool = False


MAX_FIELD_PIXELS = 8192 * 8192


#: A field may be this much coarser than the model before it would have to be upsampled (as in a map).
COARSEST_RATIO = 1.05


def read_field(path: str | Path) -> tuple[np.ndarray, float | None]:
    """A whole field image and its µm/px if the file says it; whole slides belong to ``slideiqa map``,
    which reads them tile by tile."""
    with open_slide(path) as field:
        width, height = field.dimensions
        if width * height > MAX_FIELD_PIXELS:
            raise SlideIQAError(f"{path}: {width}×{height} px is a whole slide, not a field; use slideiqa map")
        return field.read_region((0, 0), 0, (width, height)), field.mpp


def at_model_scale(image: np.ndarray, mpp: float, model_mpp: float, name: str) -> np.ndarray:
    """The field shrunk to the model's µm/px (Lanczos, as the map's tiles are); refused when coarser."""
    if mpp > model_mpp * COARSEST_RATIO:
        raise SlideIQAError(f"{name}: {mpp:g} µm/px is coarser than the {model_mpp:g} µm/px the model was trained "
                            "for; upsampled, it would look blurred, so the model cannot judge it")
    if mpp >= model_mpp / COARSEST_RATIO:
        return image
    from PIL import Image

    height, width = image.shape[:2]
    size = (max(1, round(width * mpp / model_mpp)), max(1, round(height * mpp / model_mpp)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def tile_origins(image: np.ndarray, size: int, name: str = "field") -> list[tuple[int, int]]:
    """(y, x) of non-overlapping ``size`` tiles covering the field; the last row/column is shifted
    inwards so that every pixel is seen and no tile is padded."""
    height, width = image.shape[:2]
    if height < size or width < size:
        raise SlideIQAError(f"{name}: {width}×{height} px is smaller than one {size} px tile")
    ys = sorted({*range(0, height - size + 1, size), height - size})
    xs = sorted({*range(0, width - size + 1, size), width - size})
    return [(y, x) for y in ys for x in xs]


def field_tiles(image: np.ndarray, size: int, name: str = "field") -> np.ndarray:
    """The tiles of :func:`tile_origins`, stacked."""
    return np.stack([image[y : y + size, x : x + size] for y, x in tile_origins(image, size, name)])


def score_field(path: str | Path, predictor: Predictor, mpp: float | None = None) -> FieldQuality:
    """Mean class probabilities over the field's tiles at the model's µm/px; score = mean P(good).
    ``mpp`` overrides the file's µm/px; with neither, the field is taken to be at the model's."""
    image, stated = read_field(path)
    model_mpp = predictor.card.mpp
    field_mpp = float(mpp) if mpp is not None else (float(stated) if stated else model_mpp)
    image = at_model_scale(image, field_mpp, model_mpp, str(path))
    tiles = field_tiles(image, predictor.card.input_size, str(path))
    probabilities = predictor.predict(tiles).mean(axis=0)
    return FieldQuality(len(tiles), float(probabilities[predictor.card.good_index]),
                        predictor.classes[int(probabilities.argmax())], probabilities, field_mpp,
                        assumed_mpp=mpp is None and not stated)
