"""What a finished map tells a person: summary figures, an overview picture, low-quality regions.

Verdict rule (documented in the README): a slide **passes** when at most ``max_bad_share`` (default
10 %) of its tissue tiles score below ``threshold`` (default 0.5, i.e. the model thinks a defect is
more likely than not), lie under pen ink or are unreadable: tissue a pathologist cannot see needs
a rescan (or cleaning) as much as a blurred one. The summary gives the share lost to each cause.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from .rules import DEFAULT_MAX_BAD_SHARE, DEFAULT_THRESHOLD  # noqa: F401  (the rule's defaults, re-exported)
from .store import FIXED_LABELS, UNREADABLE_CLASS


def summarize(score: np.ndarray, label: np.ndarray, classes: list[str], threshold: float,
              max_bad_share: float) -> dict[str, Any]:
    """Figures over tissue tiles (assessed, or given a fixed label: pen, unreadable): per-class
    shares (the fixed labels among them), mean score of the assessed ones, the share that fails
    (below threshold or fixed-labelled), verdict."""
    assessed = ~np.isnan(score)
    counts = {c: int((label[assessed] == i + 1).sum()) for i, c in enumerate(classes)}
    counts |= {name: int((label == value).sum()) for name, value in FIXED_LABELS.items()}
    fixed = sum(counts[name] for name in FIXED_LABELS)
    tiles = int(assessed.sum()) + fixed
    bad_share = (int((score[assessed] < threshold).sum()) + fixed) / tiles if tiles else 0.0
    return {
        "tissue_tiles": tiles,
        "unreadable_tiles": counts[UNREADABLE_CLASS],
        "artefact_tiles": {name: counts[name] for name in FIXED_LABELS if name != UNREADABLE_CLASS},
        "grid_tiles": int(score.size),
        "share_per_class": {c: n / tiles if tiles else 0.0 for c, n in counts.items()},
        "mean_score": float(np.nanmean(score)) if assessed.any() else None,
        "share_below_threshold": bad_share,
        "threshold": threshold,
        "max_bad_share": max_bad_share,
        "verdict": "pass" if bad_share <= max_bad_share else "fail",
        "verdict_rule": f"pass when at most {max_bad_share:.0%} of tissue tiles score below {threshold}, "
                        "lie under pen ink or are unreadable",
    }


#: ColorBrewer's RdYlGn (11 classes), the diverging red → yellow → green of the napari score layer.
RD_YL_GN = np.array([[165, 0, 38], [215, 48, 39], [244, 109, 67], [253, 174, 97], [254, 224, 139],
                     [255, 255, 191], [217, 239, 139], [166, 217, 106], [102, 189, 99], [26, 152, 80],
                     [0, 104, 55]], np.float32)
OVERVIEW_WIDTH = 800
SCORE_ALPHA, MARK_ALPHA = 0.55, 0.85


def score_colours(score: np.ndarray) -> np.ndarray:
    """RGB (float) of each score on RdYlGn, interpolated between its 11 colours; NaN gives NaN."""
    position = np.clip(score, 0.0, 1.0) * (len(RD_YL_GN) - 1)
    low = np.clip(np.floor(np.nan_to_num(position)).astype(int), 0, len(RD_YL_GN) - 2)
    weight = (np.nan_to_num(position) - low)[..., None]
    colours = RD_YL_GN[low] * (1 - weight) + RD_YL_GN[low + 1] * weight
    colours[np.isnan(score)] = np.nan
    return colours


def overview_image(thumbnail: np.ndarray, score: np.ndarray, tile_step: float, threshold: float,
                   title: str, marked: list[tuple[np.ndarray, list[int]]] = ()) -> Image.Image:
    """The slide thumbnail with tile scores overlaid (red = bad → green = good), ``marked`` tiles
    (a mask and an RGBA each: pen, unreadable) in their own colour, a colour bar with the
    threshold on it, and a title.

    ``tile_step`` is a tile's side in thumbnail pixels. Drawn with Pillow alone: matplotlib cost more
    to import than mapping a small slide takes."""
    from PIL import ImageDraw, ImageFont

    height, width = thumbnail.shape[:2]
    scale = OVERVIEW_WIDTH / max(width, 1)
    size = (OVERVIEW_WIDTH, max(1, round(height * scale)))
    base = np.asarray(Image.fromarray(thumbnail).resize(size, Image.Resampling.BILINEAR), np.float32)
    # Tile index of every overview pixel (tiles may run past the slide's edge, pixels never do).
    rows = np.minimum((np.arange(size[1]) / scale / tile_step).astype(int), score.shape[0] - 1)
    cols = np.minimum((np.arange(size[0]) / scale / tile_step).astype(int), score.shape[1] - 1)
    colours = score_colours(score)[rows[:, None], cols[None, :]]
    scored = ~np.isnan(colours[..., 0])
    base[scored] = base[scored] * (1 - SCORE_ALPHA) + colours[scored] * SCORE_ALPHA
    for mask, rgba in marked:
        cells = mask[rows[:, None], cols[None, :]]
        base[cells] = base[cells] * (1 - MARK_ALPHA) + np.asarray(rgba[:3], np.float32) * MARK_ALPHA

    font = ImageFont.load_default(size=14)
    bar_width, margin, top = 18, 12, 34
    canvas = Image.new("RGB", (size[0] + bar_width + 3 * margin + 40, size[1] + top + margin), "white")
    canvas.paste(Image.fromarray(np.clip(np.rint(base), 0, 255).astype(np.uint8)), (margin, top))
    draw = ImageDraw.Draw(canvas)
    draw.text((margin, 8), title, fill="black", font=font)
    left, bar_height = size[0] + 2 * margin, size[1]
    ramp = score_colours(np.linspace(1.0, 0.0, bar_height))[:, None, :].repeat(bar_width, axis=1)
    canvas.paste(Image.fromarray(np.rint(ramp).astype(np.uint8)), (left, top))
    draw.rectangle((left, top, left + bar_width - 1, top + bar_height - 1), outline="black")
    for value in (0.0, 0.5, 1.0):
        y = top + round((1 - value) * (bar_height - 1))
        draw.text((left + bar_width + 4, y - 7), f"{value:.1f}", fill="black", font=font)
    y = top + round((1 - threshold) * (bar_height - 1))
    draw.line((left - 3, y, left + bar_width + 2, y), fill="black", width=2)  # the threshold
    draw.text((left - 6, top - 16), "P(good)", fill="black", font=ImageFont.load_default(size=11))
    # 256 colours are plenty for a preview and make the PNG a quarter of the size.
    return canvas.quantize(colors=256, method=Image.Quantize.FASTOCTREE)


def low_quality_regions(score: np.ndarray, label: np.ndarray, classes: list[str], threshold: float,
                        tile_step: float, colours: dict[str, list[int]]) -> dict[str, Any]:
    """A GeoJSON FeatureCollection (level-0 pixel coordinates, as QuPath expects) of contiguous
    low-quality tiles of the same class, each with its class, tile count and mean score."""
    from shapely.geometry import box, mapping
    from shapely.ops import unary_union

    features = []
    bad = ~np.isnan(score) & (score < threshold)
    groups = [(name, bad & (label == index + 1)) for index, name in enumerate(classes)]
    groups += [(name, label == value) for name, value in FIXED_LABELS.items()]
    for name, cells in groups:
        components, count = ndimage.label(cells)
        for component in range(1, count + 1):
            rows, cols = np.nonzero(components == component)
            shape = unary_union([box(c * tile_step, r * tile_step, (c + 1) * tile_step, (r + 1) * tile_step)
                                 for r, c in zip(rows, cols)])
            mean = None if name in FIXED_LABELS else float(score[rows, cols].mean())
            described = name if mean is None else f"mean score {mean:.2f}"
            features.append({
                "type": "Feature",
                "geometry": mapping(shape),
                "properties": {
                    "objectType": "annotation",
                    "name": f"{name} ({len(rows)} tiles, {described})",
                    "classification": {"name": name, "color": colours.get(name, [200, 0, 0, 255])[:3]},
                    "class": name,
                    "tiles": int(len(rows)),
                    "mean_score": mean,
                },
            })
    return {"type": "FeatureCollection", "features": features}
