"""Layer data (napari's ``(data, kwargs, type)`` tuples) for a slide and for a quality map.

Everything is placed in micrometres, so the slide and its map align at every zoom level:

* the slide's level 0 has a scale of its µm/px, and a translation of half a pixel so that pixel
  ``j`` spans ``[j, j + 1) × µm/px`` — the convention of the map's tile grid, which starts at the
  outer corner of level-0 pixel (0, 0);
* the map's arrays have a scale of one tile in µm and a translation of half a tile, exactly as in the
  NGFF metadata that :mod:`slideiqa.outputs.store` writes, so tile ``c`` spans ``[c, c + 1) × tile µm``;
  its cell arrays likewise with one cell (a k-th of a tile), so cells ``k·c … k·c + k − 1`` span tile ``c``.

A layer's ``metadata["slideiqa"]`` says what it is (``role``) and which map or slide it comes from;
the hover status and the widget find the layers of one map through it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from slideiqa.io.slide import Slide
from slideiqa.outputs.palette import OUTLINE_INNER, OUTLINE_OUTER, SCORE_RAMP
from slideiqa.outputs.report import DEFAULT_THRESHOLD
from slideiqa.outputs.store import FIXED_LABELS, QualityMap, label_entries

from .pyramid import slide_pyramid

LayerData = tuple[Any, dict[str, Any], str]

UNITS = ("micrometer", "micrometer")
#: The score layer's colours: the overview's ramp (``slideiqa.outputs.palette``), red (bad) through yellow to
#: blue (good), which colour-blind readers tell apart.
SCORE_COLORMAP_NAME = "slideiqa score (RdYlBu)"
#: Light enough to read the tissue through the overlay, strong enough to see the colours on H&E.
SCORE_OPACITY = 0.5
LABEL_OPACITY = 0.6
#: Regions of tiles below the threshold are outlined, not filled, so the score colours stay readable;
#: each tile is drawn as this many sub-pixels per side so each of the outline's two lines (black
#: outside, white inside: ``palette.OUTLINE_OUTER``, ``OUTLINE_INNER``) is an eighth of a tile wide.
HIGHLIGHT_SUBDIVISION = 8
#: Values of the outline layer: its outer and inner line.
OUTLINE_OUTER_VALUE, OUTLINE_INNER_VALUE = 1, 2

ROLE_SLIDE, ROLE_SCORE, ROLE_LABEL, ROLE_HIGHLIGHT = "slide", "score", "label", "below threshold"
ROLE_EXPLANATION = "explanation"
ROLE_CELL_SCORE, ROLE_CELL_LABEL = "cell score", "cell class"
#: Heat on the slide: dark (transparent-looking at this opacity) to bright yellow where the defect is.
EXPLANATION_COLORMAP, EXPLANATION_OPACITY = "inferno", 0.6


def tag(role: str, map_path: Path | None, slide_path: Path | str | None) -> dict[str, Any]:
    """The ``metadata`` of a slideiqa layer."""
    return {
        "slideiqa": {
            "role": role,
            "map": str(map_path) if map_path else None,
            "slide": str(slide_path) if slide_path else None,
        }
    }


def role_of(layer: Any) -> tuple[str | None, str | None]:
    """(role, map path) of a napari layer; (None, None) for layers that are not slideiqa's."""
    info = getattr(layer, "metadata", {}).get("slideiqa") or {}
    return info.get("role"), info.get("map")


def slide_layer(slide: Slide, mpp: float | None, map_path: Path | None = None) -> LayerData:
    """The slide as a lazy multiscale RGB layer; ``mpp`` None places it in pixels (no µm scale known)."""
    levels = slide_pyramid(slide)
    pixel = mpp or 1.0
    kwargs = {
        "name": slide.path.name,
        "rgb": True,
        "multiscale": len(levels) > 1,
        "scale": (pixel, pixel),
        "translate": (pixel / 2, pixel / 2),
        "metadata": tag(ROLE_SLIDE, map_path, slide.path),
    }
    if mpp:
        kwargs["units"] = UNITS
    return (levels if len(levels) > 1 else levels[0], kwargs, "image")


def _grid_placement(tile_um: float, subdivision: int = 1) -> dict[str, Any]:
    step = tile_um / subdivision
    return {"scale": (step, step), "translate": (step / 2, step / 2), "units": UNITS}


def label_colormap(classes: list[str]) -> Any:
    """One colour per label value (those of the map's NGFF image-label), background transparent."""
    from napari.utils.colormaps import DirectLabelColormap

    colours: dict[int | None, np.ndarray] = {None: np.zeros(4)}
    colours |= {value: np.asarray(rgba, float) / 255 for value, _, rgba in label_entries(classes)}
    return DirectLabelColormap(color_dict=colours)


def legend(classes: list[str]) -> list[tuple[str, tuple[int, int, int]]]:
    """(class name, RGB) of each label value after background, as the label layer draws them."""
    return [(name, (rgba[0], rgba[1], rgba[2])) for _, name, rgba in label_entries(classes)[1:]]


def score_colormap() -> Any:
    """The score layer's colormap, from the same ramp the overview draws."""
    from napari.utils.colormaps import Colormap

    return Colormap(colors=np.c_[SCORE_RAMP / 255, np.ones(len(SCORE_RAMP))], name=SCORE_COLORMAP_NAME)


def below_threshold(
    score: np.ndarray, threshold: float, label: np.ndarray | None = None, subdivision: int = HIGHLIGHT_SUBDIVISION
) -> np.ndarray:
    """The outline of each region of tiles lost at ``threshold`` — assessed tiles scoring below it,
    and tiles slideiqa labelled itself (pen, fold, debris…: no score, lost at any threshold, and
    transparent on the score layer) — its outermost px :data:`OUTLINE_OUTER_VALUE`, the px inside
    that :data:`OUTLINE_INNER_VALUE`, 0 elsewhere; each tile is ``subdivision`` px wide."""
    from scipy import ndimage

    mask = ~np.isnan(score) & (score < threshold)
    if label is not None:
        mask |= np.isin(label, list(FIXED_LABELS.values()))
    fine = np.repeat(np.repeat(mask, subdivision, axis=0), subdivision, axis=1)
    inside = ndimage.binary_erosion(fine, border_value=0)
    outline = np.zeros(fine.shape, np.uint8)
    outline[fine & ~inside] = OUTLINE_OUTER_VALUE
    outline[inside & ~ndimage.binary_erosion(inside, border_value=0)] = OUTLINE_INNER_VALUE
    return outline


def highlight_layer(
    score: np.ndarray, label: np.ndarray, threshold: float, tile_um: float, map_path: Path, slide_path: str | None
) -> LayerData:
    """Outlines of the tiles lost at ``threshold``; the widget's slider rewrites its data."""
    from napari.utils.colormaps import DirectLabelColormap

    colormap = DirectLabelColormap(
        color_dict={
            None: np.zeros(4),
            0: np.zeros(4),
            OUTLINE_OUTER_VALUE: np.asarray(OUTLINE_OUTER),
            OUTLINE_INNER_VALUE: np.asarray(OUTLINE_INNER),
        }
    )
    return (
        below_threshold(score, threshold, label),
        {
            "name": f"below {threshold:.2f}",
            "colormap": colormap,
            "opacity": 1.0,
            "metadata": tag(ROLE_HIGHLIGHT, map_path, slide_path) | {"threshold": threshold},
            **_grid_placement(tile_um, HIGHLIGHT_SUBDIVISION),
        },
        "labels",
    )


def map_threshold(quality: QualityMap) -> float:
    """The threshold the map's verdict was made with (the default for maps without a summary)."""
    summary = quality.saved_summary or quality.summary
    threshold = summary.threshold if summary is not None else None
    return float(DEFAULT_THRESHOLD if threshold is None else threshold)


def map_layers(quality: QualityMap, threshold: float | None = None) -> list[LayerData]:
    """The map's overlays, bottom to top: score (diverging colours), class labels (hidden until
    asked for, since two colour overlays at once blur each other) and below-threshold outlines."""
    score, label = quality.array("score"), quality.array("label")
    slide_path = str(quality.slide.path)
    stem = quality.path.name.removesuffix(".zarr").removesuffix(".quality")
    threshold = map_threshold(quality) if threshold is None else threshold
    placement = _grid_placement(quality.tile_um)
    classes = quality.classes
    unfinished = "" if quality.complete else " (unfinished)"
    score_layer = (
        score,
        {
            "name": f"{stem} score{unfinished}",
            "colormap": score_colormap(),
            "contrast_limits": (0.0, 1.0),
            "opacity": SCORE_OPACITY,
            "blending": "translucent",
            "interpolation2d": "nearest",
            "metadata": tag(ROLE_SCORE, quality.path, slide_path),
            **placement,
        },
        "image",
    )
    label_layer = (
        label,
        {
            "name": f"{stem} class",
            "colormap": label_colormap(classes),
            "opacity": LABEL_OPACITY,
            "visible": False,
            "features": {
                "index": [value for value, _, _ in label_entries(classes)],
                "class": [name for _, name, _ in label_entries(classes)],
            },
            "metadata": tag(ROLE_LABEL, quality.path, slide_path) | {"legend": legend(classes)},
            **placement,
        },
        "labels",
    )
    layers = [score_layer, label_layer]
    if quality.cells_per_side:
        layers += cell_layers(quality, stem, slide_path)
    return layers + [highlight_layer(score, label, threshold, quality.tile_um, quality.path, slide_path)]


def cell_layers(quality: QualityMap, stem: str, slide_path: str | None) -> list[LayerData]:
    """The cell arrays — where inside each tile — as a score and a class layer at the cells' scale,
    hidden at first: at a glance the tiles say enough; zoomed in, the cells say where."""
    if quality.cell_um is None:  # a map without cell arrays
        return []
    placement = _grid_placement(quality.cell_um)
    classes = quality.classes
    return [
        (
            quality.array("cell_score"),
            {
                "name": f"{stem} cell score",
                "colormap": score_colormap(),
                "contrast_limits": (0.0, 1.0),
                "opacity": SCORE_OPACITY,
                "blending": "translucent",
                "interpolation2d": "nearest",
                "visible": False,
                "metadata": tag(ROLE_CELL_SCORE, quality.path, slide_path),
                **placement,
            },
            "image",
        ),
        (
            quality.array("cell_label"),
            {
                "name": f"{stem} cell class",
                "colormap": label_colormap(classes),
                "opacity": LABEL_OPACITY,
                "visible": False,
                "metadata": tag(ROLE_CELL_LABEL, quality.path, slide_path) | {"legend": legend(classes)},
                **placement,
            },
            "labels",
        ),
    ]


def explanation_layers(
    explanation: Any, row: int, col: int, tile_um: float, map_path: Path, threshold: float = DEFAULT_THRESHOLD
) -> list[LayerData]:
    """One heatmap layer per defect class of an explained map tile (``slideiqa.explain.heatmaps``), placed over
    that tile in micrometres; the most likely class is shown at first if it is found in the tile
    (P at least ``threshold``), and a class that is not says so in its layer's name."""
    probabilities = explanation.probabilities[0]
    ranked = sorted(explanation.heatmaps, key=lambda name: -probabilities[explanation.classes.index(name)])
    placement = _grid_placement(tile_um, explanation.image.shape[0])
    origin = (row * tile_um, col * tile_um)
    placement["translate"] = tuple(o + t for o, t in zip(origin, placement["translate"]))
    layers = []
    for name in ranked:
        p = float(probabilities[explanation.classes.index(name)])
        layers.append(
            (
                explanation.heatmaps[name],
                {
                    "name": f"why ({row}, {col}): {name} P={p:.2f}" + ("" if p >= threshold else " (not found)"),
                    "colormap": EXPLANATION_COLORMAP,
                    "opacity": EXPLANATION_OPACITY,
                    "contrast_limits": (0.0, 1.0),
                    "blending": "additive",
                    "visible": name == ranked[0] and p >= threshold,
                    "metadata": {"slideiqa": tag(ROLE_EXPLANATION, map_path, None)["slideiqa"] | {"class": name}},
                    **placement,
                },
                "image",
            )
        )
    return layers
