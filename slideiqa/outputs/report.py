"""What a finished map tells a person: summary figures, an overview picture, low-quality regions.

Verdict rule (documented in the README): a slide **passes** when at most ``max_bad_share`` (default
10 %) of its tissue tiles score below ``threshold`` (default 0.5, i.e. the model thinks a defect is
more likely than not), lie under a preparation artefact (pen ink, a fold, an air bubble, a coverslip
edge, debris), or are unreadable: tissue a pathologist cannot see needs a rescan (or cleaning) as much
as a blurred one. The summary gives the share lost to each cause.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from slideiqa.outputs.palette import score_colours
from slideiqa.outputs.store import FIXED_LABELS, UNREADABLE_CLASS, label_entries
from slideiqa.outputs.summary import CellSummary, VerdictFigures
from slideiqa.settings.defaults import DEFAULT_MAX_BAD_SHARE, DEFAULT_THRESHOLD  # noqa: F401  (the rule's defaults, re-exported)


def summarize(
    score: np.ndarray, label: np.ndarray, classes: list[str], threshold: float, max_bad_share: float
) -> VerdictFigures:
    """Figures over tissue tiles (assessed, or given a fixed label: an artefact, unreadable): per-class
    shares (the fixed labels among them), mean score of the assessed ones, the share that fails
    (below threshold or fixed-labelled), verdict."""
    assessed = ~np.isnan(score)
    counts = {c: int((label[assessed] == i + 1).sum()) for i, c in enumerate(classes)}
    counts |= {name: int((label == value).sum()) for name, value in FIXED_LABELS.items()}
    fixed = sum(counts[name] for name in FIXED_LABELS)
    tiles = int(assessed.sum()) + fixed
    bad_share = (int((score[assessed] < threshold).sum()) + fixed) / tiles if tiles else 0.0
    return VerdictFigures(
        tissue_tiles=tiles,
        unreadable_tiles=counts[UNREADABLE_CLASS],
        artefact_tiles={name: counts[name] for name in FIXED_LABELS if name != UNREADABLE_CLASS},
        grid_tiles=int(score.size),
        share_per_class={c: n / tiles if tiles else 0.0 for c, n in counts.items()},
        mean_score=float(np.nanmean(score)) if assessed.any() else None,
        share_below_threshold=bad_share,
        threshold=threshold,
        max_bad_share=max_bad_share,
        verdict="pass" if bad_share <= max_bad_share else "fail",
        verdict_rule=f"pass when at most {max_bad_share:.0%} of tissue tiles score below {threshold}, "
        "lie under pen ink, a fold, an air bubble, a coverslip edge or debris, or are unreadable",
    )


def summarize_cells(
    cell_score: np.ndarray, cell_label: np.ndarray, classes: list[str], threshold: float, cell_um: float
) -> CellSummary:
    """What the cell arrays add to a summary: of the cells of assessed tiles, the share below
    ``threshold`` (the verdict stays the tiles') and how many of those each class has."""
    assessed = ~np.isnan(cell_score)
    below = assessed & (cell_score < threshold)
    counts = {name: int((below & (cell_label == i + 1)).sum()) for i, name in enumerate(classes)}
    return CellSummary(
        cell_um=cell_um,
        assessed_cells=int(assessed.sum()),
        share_below_threshold=float(below.sum() / assessed.sum()) if assessed.any() else 0.0,
        below_threshold_by_class={name: count for name, count in counts.items() if count},
    )


OVERVIEW_WIDTH = 640  # per panel
SCORE_ALPHA, MARK_ALPHA, CLASS_ALPHA = 0.55, 0.85, 0.7
#: Scale-bar lengths to choose from, in µm: the longest that fits a fifth of a panel is drawn.
SCALE_BAR_UM = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)


@dataclass
class OverviewPanels:
    """The thumbnail at panel size and, for every panel pixel, the tile it shows."""

    base: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    um_per_pixel: float

    def tiles(self, per_tile: np.ndarray) -> np.ndarray:
        return per_tile[self.rows[:, None], self.cols[None, :]]


def _panels(
    thumbnail: np.ndarray, tile_step: float, grid_shape: tuple[int, int], thumbnail_um_per_px: float
) -> OverviewPanels:
    height, width = thumbnail.shape[:2]
    scale = OVERVIEW_WIDTH / max(width, 1)
    size = (OVERVIEW_WIDTH, max(1, round(height * scale)))
    base = np.asarray(Image.fromarray(thumbnail).resize(size, Image.Resampling.BILINEAR), np.float32)
    # Tile index of every overview pixel (tiles may run past the slide's edge, pixels never do).
    rows = np.minimum((np.arange(size[1]) / scale / tile_step).astype(int), grid_shape[0] - 1)
    cols = np.minimum((np.arange(size[0]) / scale / tile_step).astype(int), grid_shape[1] - 1)
    return OverviewPanels(base, rows, cols, thumbnail_um_per_px / scale)


def _blend(base: np.ndarray, where: np.ndarray, colours: np.ndarray, alpha: float) -> None:
    base[where] = base[where] * (1 - alpha) + colours[where] * alpha


def _scale_bar(draw, font, um_per_pixel: float, left: int, bottom: int, width: int, micro: str) -> None:
    """A black bar of a round length (µm or mm) in the panel's lower left corner, on a white box."""
    fitting = [um for um in SCALE_BAR_UM if um / um_per_pixel <= width / 5] or [SCALE_BAR_UM[0]]
    length_um = fitting[-1]
    pixels = max(1, round(length_um / um_per_pixel))
    text = f"{length_um // 1000} mm" if length_um >= 1000 else f"{length_um} {micro}m"
    x0, y0 = left + 8, bottom - 24
    draw.rectangle((x0 - 4, y0 - 16, x0 + max(pixels, 50) + 4, y0 + 10), fill="white")
    draw.rectangle((x0, y0, x0 + pixels, y0 + 5), fill="black")
    draw.text((x0, y0 - 15), text, fill="black", font=font)


def fonts(title: int = 14, label: int = 11) -> tuple[Any, Any, str]:
    """Title and label fonts of those sizes, and how to write "micro": DejaVu Sans where the system
    has it, else Pillow's built-in font, which has no "µ" (the scale bar then says "um")."""
    from PIL import ImageFont

    try:
        return ImageFont.truetype("DejaVuSans.ttf", title), ImageFont.truetype("DejaVuSans.ttf", label), "µ"
    except OSError:
        return ImageFont.load_default(size=title), ImageFont.load_default(size=label), "u"


def overview_image(
    thumbnail: np.ndarray,
    score: np.ndarray,
    label: np.ndarray,
    tile_step: float,
    threshold: float,
    title: str,
    entries: list[tuple[int, str, list[int]]],
    thumbnail_um_per_px: float,
) -> Image.Image:
    """Two panels of the slide thumbnail: *where* — tile scores (red = bad → blue = good; artefact and
    unreadable tiles in their own colour) with a colour bar marking the threshold — and *why* — each
    tile's most likely class, with a legend of the classes present and their tile counts. Both carry
    a scale bar.

    ``tile_step`` is a tile's side in thumbnail pixels; ``entries`` are the map's label values,
    names and colours (:func:`slideiqa.outputs.store.label_entries`). Drawn with Pillow alone: matplotlib
    cost more to import than mapping a small slide takes."""
    from PIL import ImageDraw

    panels = _panels(thumbnail, tile_step, score.shape, thumbnail_um_per_px)
    where, why = panels.base.copy(), panels.base.copy()
    colours = panels.tiles(score_colours(score))
    _blend(where, ~np.isnan(colours[..., 0]), colours, SCORE_ALPHA)
    lut = np.zeros((256, 3), np.float32)
    for value, _, rgba in entries:
        lut[value] = rgba[:3]
    labels = panels.tiles(label)
    fixed = np.isin(labels, list(FIXED_LABELS.values()))
    _blend(where, fixed, lut[labels], MARK_ALPHA)
    _blend(why, labels > 0, lut[labels], CLASS_ALPHA)

    font, small, micro = fonts()
    height, width = where.shape[:2]
    bar_width, margin, top = 18, 12, 50
    legend = [
        (value, name, rgba, int((label == value).sum()))
        for value, name, rgba in entries
        if value > 0 and (label == value).any()
    ]
    legend_height = 20 * (len(legend) + 1)
    second = 2 * margin + width + bar_width + 40
    canvas = Image.new(
        "RGB", (second + width + margin, top + max(height, legend_height) + margin + legend_height), "white"
    )
    draw = ImageDraw.Draw(canvas)
    draw.text((margin, 8), title, fill="black", font=font)
    for image, left, caption in (
        (where, margin, "where: P(good) per tile"),
        (why, second, "why: most likely class per tile"),
    ):
        canvas.paste(Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8)), (left, top))
        draw.text((left, top - 16), caption, fill="black", font=small)
        _scale_bar(draw, small, panels.um_per_pixel, left, top + height, width, micro)

    left = margin + width + margin
    ramp = score_colours(np.linspace(1.0, 0.0, height))[:, None, :].repeat(bar_width, axis=1)
    canvas.paste(Image.fromarray(np.rint(ramp).astype(np.uint8)), (left, top))
    draw.rectangle((left, top, left + bar_width - 1, top + height - 1), outline="black")
    for mark in (0.0, 0.5, 1.0):
        y = top + round((1 - mark) * (height - 1))
        draw.text((left + bar_width + 4, y - 7), f"{mark:.1f}", fill="black", font=font)
    y = top + round((1 - threshold) * (height - 1))
    draw.line((left - 3, y, left + bar_width + 2, y), fill="black", width=2)  # the threshold

    y = top + height + margin
    draw.text((second, y), "class (tiles)", fill="black", font=small)
    for _value, name, rgba, count in legend:
        y += 20
        draw.rectangle((second, y, second + 14, y + 14), fill=tuple(rgba[:3]), outline="black")
        draw.text((second + 22, y), f"{name} ({count})", fill="black", font=small)
    # 256 colours are plenty for a preview and make the PNG a quarter of the size.
    return canvas.quantize(colors=256, method=Image.Quantize.FASTOCTREE)


def _feature_id(*parts: object) -> str:
    """A stable UUID for a feature (QuPath keeps objects by UUID): the same map gives the same ids."""
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, "slideiqa:" + "/".join(map(str, parts))))


def qupath_feature(
    geometry: dict[str, Any],
    object_type: str,
    name: str,
    colour: list[int],
    label: str,
    measurements: dict[str, float | None],
    key: tuple,
) -> dict[str, Any]:
    """One QuPath object as GeoJSON: QuPath reads ``objectType``, ``classification``, ``name`` and the
    numbers under ``measurements`` (other properties it drops on import)."""
    return {
        "type": "Feature",
        "id": _feature_id(*key),
        "geometry": geometry,
        "properties": {
            "objectType": object_type,
            "name": label,
            "classification": {"name": name, "color": list(colour[:3])},
            "measurements": {k: v for k, v in measurements.items() if v is not None},
        },
    }


def low_quality_regions(
    score: np.ndarray,
    label: np.ndarray,
    classes: list[str],
    threshold: float,
    tile_step: float,
    colours: dict[str, list[int]],
    tile_um: float,
) -> dict[str, Any]:
    """A GeoJSON FeatureCollection (level-0 pixel coordinates, as QuPath expects) of contiguous
    low-quality tiles of the same class: QuPath annotations with the tile count, area and mean score
    as measurements."""
    from shapely.geometry import box, mapping
    from shapely.ops import unary_union

    features = []
    bad = ~np.isnan(score) & (score < threshold)
    groups = [(name, bad & (label == index + 1)) for index, name in enumerate(classes)]
    groups += [(name, label == value) for name, value in FIXED_LABELS.items()]
    for name, cells in groups:
        components, _ = ndimage.label(cells)
        # Each component searched within its bounding box: over the whole map, one comparison per
        # component made a large slide's regions quadratic in its size.
        for component, (row_span, col_span) in enumerate(ndimage.find_objects(components), start=1):
            rows, cols = np.nonzero(components[row_span, col_span] == component)
            rows, cols = rows + row_span.start, cols + col_span.start
            shape = unary_union(
                [
                    box(c * tile_step, r * tile_step, (c + 1) * tile_step, (r + 1) * tile_step)
                    for r, c in zip(rows, cols)
                ]
            )
            mean = None if name in FIXED_LABELS else float(score[rows, cols].mean())
            tiles = len(rows)
            described = name if mean is None else f"mean score {mean:.2f}"
            features.append(
                qupath_feature(
                    mapping(shape),
                    "annotation",
                    name,
                    colours.get(name, [200, 0, 0]),
                    f"{name} ({tiles} tile{'s' if tiles != 1 else ''}, {described})",
                    {"tiles": float(tiles), "area µm^2": tiles * tile_um**2, "mean score": mean},
                    ("region", name, int(rows[0]), int(cols[0])),
                )
            )
    return {"type": "FeatureCollection", "features": features}


def tile_objects(
    score: np.ndarray,
    label: np.ndarray,
    probabilities: np.ndarray,
    tissue: np.ndarray,
    classes: list[str],
    tile_step: float,
    colours: dict[str, list[int]],
) -> dict[str, Any]:
    """Every tissue tile as a QuPath tile object (level-0 pixels) classified by its label, with its
    score, class probabilities and tissue fraction as measurements — a map QuPath can colour,
    filter and count by measurement."""
    names = {value: name for value, name, _ in label_entries(classes)}
    features = []
    for r, c in zip(*np.nonzero(label > 0)):
        name = names[int(label[r, c])]
        x0, y0, x1, y1 = c * tile_step, r * tile_step, (c + 1) * tile_step, (r + 1) * tile_step
        assessed = not np.isnan(score[r, c])
        measurements = {
            "score": float(score[r, c]) if assessed else None,
            "tissue fraction": float(tissue[r, c]),
            "row": float(r),
            "column": float(c),
        }
        if assessed:
            measurements |= {f"P({cls})": float(probabilities[i, r, c]) for i, cls in enumerate(classes)}
        geometry = {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}
        features.append(
            qupath_feature(
                geometry,
                "tile",
                name,
                colours.get(name, [200, 0, 0]),
                f"tile {r},{c}: {name}",
                measurements,
                ("tile", int(r), int(c)),
            )
        )
    return {"type": "FeatureCollection", "features": features}
