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

from .store import FIXED_LABELS, UNREADABLE_CLASS

DEFAULT_THRESHOLD = 0.5
DEFAULT_MAX_BAD_SHARE = 0.10


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


def overview_image(thumbnail: np.ndarray, score: np.ndarray, tile_step: float, threshold: float,
                   title: str, marked: list[tuple[np.ndarray, list[int]]] = ()) -> Image.Image:
    """The slide thumbnail with tile scores overlaid (red = bad → green = good), ``marked`` tiles
    (a mask and an RGBA each: pen, unreadable) in their own colour, and a legend.

    ``tile_step`` is a tile's side in thumbnail pixels."""
    # The object-oriented API with an Agg canvas, not pyplot: pyplot's global figure state is not
    # thread-safe, and a batch renders the overviews of several slides at once.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    height, width = thumbnail.shape[:2]
    rows, cols = score.shape
    figure = Figure(figsize=(8, 8 * height / max(width, 1) + 0.8), dpi=100)
    canvas = FigureCanvasAgg(figure)
    axis = figure.add_subplot()
    axis.imshow(thumbnail)
    overlay = axis.imshow(np.ma.masked_invalid(score), cmap="RdYlGn", vmin=0, vmax=1, alpha=0.55,
                          extent=(0, cols * tile_step, rows * tile_step, 0), interpolation="nearest")
    for mask, rgba in marked:
        if mask.any():
            colour = np.zeros((*mask.shape, 4))
            colour[mask] = np.asarray(rgba) / 255 * [1, 1, 1, 0.85]
            axis.imshow(colour, extent=(0, cols * tile_step, rows * tile_step, 0), interpolation="nearest")
    axis.set_xlim(0, width)
    axis.set_ylim(height, 0)
    axis.set_axis_off()
    axis.set_title(title, fontsize=10)
    bar = figure.colorbar(overlay, ax=axis, fraction=0.04, pad=0.02)
    bar.set_label("quality score P(good)")
    bar.ax.axhline(threshold, color="black", linewidth=1.5)
    figure.tight_layout()
    canvas.draw()
    image = Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())
    return image


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
