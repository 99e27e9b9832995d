"""Quality of a single microscope field: tile it at the model's input size and pool the tiles."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import SlideIQAError
from .inference import Predictor


@dataclass
class FieldQuality:
    tiles: int
    score: float
    label: str
    probabilities: np.ndarray


def read_field(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise SlideIQAError(f"{path}: no such file")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise SlideIQAError(f"{path}: not a readable image ({error})") from None


def field_tiles(image: np.ndarray, size: int) -> np.ndarray:
    """Non-overlapping ``size`` tiles covering the field; the last row/column is shifted inwards so
    that every pixel is seen and no tile is padded."""
    height, width = image.shape[:2]
    if height < size or width < size:
        raise SlideIQAError(f"field of {width}×{height} px is smaller than one {size} px tile")
    ys = sorted({*range(0, height - size + 1, size), height - size})
    xs = sorted({*range(0, width - size + 1, size), width - size})
    return np.stack([image[y : y + size, x : x + size] for y in ys for x in xs])


def score_field(path: str | Path, predictor: Predictor) -> FieldQuality:
    """Mean class probabilities over the field's tiles; score = mean P(good)."""
    tiles = field_tiles(read_field(path), predictor.card.input_size)
    probabilities = predictor.predict(tiles).mean(axis=0)
    return FieldQuality(len(tiles), float(probabilities[predictor.card.good_index]),
                        predictor.classes[int(probabilities.argmax())], probabilities)
