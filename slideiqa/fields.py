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


MAX_FIELD_PIXELS = 8192 * 8192


def read_field(path: str | Path) -> np.ndarray:
    """A whole field image; whole slides belong to ``slideiqa map``, which reads them tile by tile."""
    with open_slide(path) as field:
        width, height = field.dimensions
        if width * height > MAX_FIELD_PIXELS:
            raise SlideIQAError(f"{path}: {width}×{height} px is a whole slide, not a field; use slideiqa map")
        return field.read_region((0, 0), 0, (width, height))


def field_tiles(image: np.ndarray, size: int, name: str = "field") -> np.ndarray:
    """Non-overlapping ``size`` tiles covering the field; the last row/column is shifted inwards so
    that every pixel is seen and no tile is padded."""
    height, width = image.shape[:2]
    if height < size or width < size:
        raise SlideIQAError(f"{name}: {width}×{height} px is smaller than one {size} px tile")
    ys = sorted({*range(0, height - size + 1, size), height - size})
    xs = sorted({*range(0, width - size + 1, size), width - size})
    return np.stack([image[y : y + size, x : x + size] for y in ys for x in xs])


def score_field(path: str | Path, predictor: Predictor) -> FieldQuality:
    """Mean class probabilities over the field's tiles; score = mean P(good)."""
    tiles = field_tiles(read_field(path), predictor.card.input_size, str(path))
    probabilities = predictor.predict(tiles).mean(axis=0)
    return FieldQuality(len(tiles), float(probabilities[predictor.card.good_index]),
                        predictor.classes[int(probabilities.argmax())], probabilities)
