"""Quality of a single microscope field: tile it at the model's input size and pool the tiles."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from slideiqa.errors import SlideIQAError
from slideiqa.io.grid import COARSEST_RATIO, judging_scale
from slideiqa.io.slide import open_slide
from slideiqa.models.predictor import Predictor


@dataclass
class FieldQuality:
    tiles: int
    score: float
    label: str
    probabilities: np.ndarray
    #: µm/px the field was taken to be at, and whether that was assumed (neither given nor in the file).
    mpp: float = 0.0
    assumed_mpp: bool = False
    #: µm/px it was judged at: the model's, or finer where the field is smaller than a tile at the model's.
    judged_mpp: float = 0.0
    #: Whether the field was smaller than a tile even so, and was mirrored out to one.
    mirrored: bool = False


MAX_FIELD_PIXELS = 8192 * 8192


#: A field within this ratio of the scale it is judged at is judged as it is, not resampled.
SAME_SCALE = 1.05
#: A field smaller than a tile at the model's scale is judged magnified, at most this much: held-out
#: camera fields judged 1.95× and 2.4× magnified pass as the model's own scale does (Chula 0.97,
#: cbc 1.00). A field that would need more (BCCD's, 5.7×, where it is soft at the pixel: 0.18
#: passed) is judged this much magnified all the same, mirrored out to a tile (docs/model/default-model.md).
MAX_MAGNIFICATION = 2.5
#: The smallest field, in px at the scale it is judged at, that is mirrored out to a tile: a little
#: under the smallest measured (BCCD's 640 × 480 fields, 108 px at 2.5×).
MIN_FIELD_SIDE = 100


def read_field(path: str | Path, slide_file_hint: str | None = None) -> tuple[np.ndarray, float | None]:
    """A whole field image and its µm/px if the file says it; whole slides belong to ``slideiqa map``,
    which reads them tile by tile. With ``slide_file_hint`` (what to do instead), so does any slide
    file: averaged over its tiles, glass and all, its score says nothing a lab can use."""
    with open_slide(path) as field:
        width, height = field.dimensions
        if width * height > MAX_FIELD_PIXELS:
            raise SlideIQAError(f"{path}: {width}×{height} px is a whole slide, not a field; use slideiqa map")
        info = field.info
        if slide_file_hint and (info.reader == "openslide" or len(info.level_dimensions) > 1):
            levels = len(info.level_dimensions)
            raise SlideIQAError(
                f"{path}: a slide file ({info.vendor}{f', {levels} levels' if levels > 1 else ''}), "
                f"not a field image: {slide_file_hint}"
            )
        return field.read_region((0, 0), 0, (width, height)), field.mpp


def judging_mpp(shape: tuple[int, ...], mpp: float, model_mpp: float, tile: int) -> float:
    """The µm/px a field is judged at: the model's, or, where the field would then be smaller than one
    tile (a 640 × 480 camera field at 1000×), the coarsest at which its shorter side still fills a
    tile, but never more than :data:`MAX_MAGNIFICATION` finer than the model's: as the held-out smear
    labs are judged in the generalisation benchmark. A field still smaller than a tile there is
    mirrored out to one (:func:`mirrored_to_tile`). A field a little coarser than the model is judged
    at its own pixels, as a slide is (:func:`~slideiqa.io.grid.judging_scale`)."""
    if mpp > model_mpp:
        return judging_scale(mpp, model_mpp)
    return min(model_mpp, max(mpp, mpp * min(shape[:2]) / tile, model_mpp / MAX_MAGNIFICATION))


def measured_at(judged_mpp: float, model_mpp: float) -> float | None:
    """The µm/px to hand the measurements that read detail of a physical size (``Predictor.predict``):
    a slightly coarser field's own, judged at its own pixels; None — the model's — for a field resized
    to the model's scale or magnified to fill a tile, which the measurements read as they always have."""
    return judged_mpp if judged_mpp > model_mpp else None


def mirrored_to_tile(field: np.ndarray, size: int) -> np.ndarray:
    """A field smaller than a ``size`` tile filled out to one by mirroring it about its edges, again
    and again. Mirroring, unlike a border of glass or a wrap-around, adds no edge the field does not
    have: a blurred field stays blurred up to every seam, and a sharp one gains no sharp border that
    could pass a soft field. The field keeps the tile's top-left corner, so its own JPEG blocks stay
    on the tile's 8-pixel grid."""
    height, width = field.shape[:2]
    pad = ((0, max(0, size - height)), (0, max(0, size - width))) + ((0, 0),) * (field.ndim - 2)
    return np.pad(field, pad, mode="symmetric")


class JudgedField(NamedTuple):
    """A field as it is judged: its pixels, their µm/px, and whether they are the file's own (not
    resized: what a scanner's compression left is there as it left it, ``jpeg_quantisation.judge_jpeg``)."""

    pixels: np.ndarray
    mpp: float
    native: bool


def at_judging_scale(image: np.ndarray, mpp: float, model_mpp: float, name: str, tile: int) -> JudgedField:
    """The field resized to the µm/px of :func:`judging_mpp` (Lanczos, as the map's tiles are), and
    the µm/px it is judged at; judged as it is within :data:`SAME_SCALE` of that; refused when more
    than :data:`~slideiqa.io.grid.COARSEST_RATIO` coarser than the model, or when smaller than
    ``MIN_FIELD_SIDE`` px there."""
    if mpp > model_mpp * COARSEST_RATIO:
        raise SlideIQAError(
            f"{name}: {mpp:g} µm/px is more than {COARSEST_RATIO - 1:.0%} coarser than the "
            f"{model_mpp:g} µm/px the model was trained for; enlarged, it would look blurred, so "
            "the model cannot judge it"
        )
    target = judging_mpp(image.shape, mpp, model_mpp, tile)
    height, width = image.shape[:2]
    size = (max(1, round(width * mpp / target)), max(1, round(height * mpp / target)))
    if min(size) < MIN_FIELD_SIDE:
        raise SlideIQAError(
            f"{name}: {width}×{height} px at {mpp:g} µm/px is {size[0]}×{size[1]} px at the "
            f"{target:g} µm/px it would be judged at, smaller than the {MIN_FIELD_SIDE} px the "
            "model is measured to judge"
        )
    if target / SAME_SCALE <= mpp <= target * SAME_SCALE:
        return JudgedField(image, mpp, native=True)
    from PIL import Image

    return JudgedField(np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS)), target, native=False)


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
    ``mpp`` overrides the file's µm/px; with neither, the field is taken to be at the model's. A slide
    file is refused (:func:`read_field`)."""
    image, stated = read_field(path, f"judge its tissue tile by tile with slideiqa map {path}")
    model_mpp = predictor.card.mpp
    field_mpp = float(mpp) if mpp is not None else (float(stated) if stated else model_mpp)
    size = predictor.card.input_size
    field, judged_mpp, native = at_judging_scale(image, field_mpp, model_mpp, str(path), size)
    tiles = field_tiles(mirrored_to_tile(field, size), size, str(path))
    probabilities = predictor.predict(tiles, measured_at(judged_mpp, model_mpp), native).mean(axis=0)
    return FieldQuality(
        len(tiles),
        float(probabilities[predictor.card.good_index]),
        predictor.classes[int(probabilities.argmax())],
        probabilities,
        field_mpp,
        assumed_mpp=mpp is None and not stated,
        judged_mpp=judged_mpp,
        mirrored=min(field.shape[:2]) < size,
    )
