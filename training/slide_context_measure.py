"""The generalisation measurement with each held-out group judged in its own slide context.

``slideiqa.slide_context`` shifts a slide's P(good) by an amount read from the slide's own tiles, so
what it does depends on what else is on the slide. A held-out group's test tiles are treated as one
lab's slide, in three compositions that bracket real ones:

* ``sharp slide`` — the context is the group's sharp tiles (a good scan with a few defective tiles);
  every tile, sharp and defective, is judged with that shift;
* ``mostly defective`` — the context is all the group's test tiles, of which about one in eleven is
  sharp;
* ``defective throughout`` — per family, the context is only that family's defective tiles (a slide
  defocused, noisy or over-exposed everywhere): what the bound on the shift has to keep flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slideiqa.synthetic.distortions import FAMILIES

from .generalisation import THRESHOLD, GroupMeasurement, TileSet, measure
from .slide_context import shift_probabilities, slide_shift


@dataclass
class ContextMeasurement:
    group: str
    raw: GroupMeasurement
    sharp_slide: GroupMeasurement
    sharp_slide_shift: float
    mostly_defective: GroupMeasurement
    mostly_defective_shift: float
    #: per family: (share flagged of slideiqa's defects, of the other libraries'), each family's slide
    #: shifted by its own context
    defective_throughout: dict[str, tuple[float, float]]


def _in_context(
    group: str, tiles: TileSet, probabilities: np.ndarray, context: np.ndarray
) -> tuple[GroupMeasurement, float]:
    shift = slide_shift(probabilities[context, 0])
    return measure(group, tiles, shift_probabilities(probabilities, shift)), shift


def measure_in_context(group: str, tiles: TileSet, probabilities: np.ndarray) -> ContextMeasurement:
    """One held-out group's test tiles (``probabilities`` in CLASSES order) in the three contexts."""
    sharp = tiles.families == "none"
    sharp_slide, sharp_shift = _in_context(group, tiles, probabilities, sharp)
    mostly, mostly_shift = _in_context(group, tiles, probabilities, np.ones(len(tiles), bool))
    throughout = {}
    for family in FAMILIES:
        defects = tiles.families == family
        if not defects.any():
            throughout[family] = (float("nan"), float("nan"))
            continue
        good = shift_probabilities(probabilities, slide_shift(probabilities[defects, 0]))[:, 0]
        ours, other = defects & (tiles.makers == "slideiqa"), defects & (tiles.makers != "slideiqa")
        throughout[family] = (
            float((good[ours] < THRESHOLD).mean()) if ours.any() else float("nan"),
            float((good[other] < THRESHOLD).mean()) if other.any() else float("nan"),
        )
    return ContextMeasurement(
        group, measure(group, tiles, probabilities), sharp_slide, sharp_shift, mostly, mostly_shift, throughout
    )


def context_table(rows: list[ContextMeasurement]) -> str:
    """Markdown: per group, sharp pass and the worst flagged family before and in each context."""

    def worst(m: GroupMeasurement) -> str:
        family = min(FAMILIES, key=lambda f: min(m.flagged[f], m.flagged_other[f]))
        return f"{min(m.flagged[family], m.flagged_other[family]):.2f} {family}"

    lines = [
        "| held-out group | sharp pass: raw / sharp slide / mostly defective | shift (log-odds) | "
        "worst flagged: raw / sharp slide / mostly defective | defective throughout, worst flagged | "
        "AUC ours / other | right family (sharp slide), worst |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        family = min(FAMILIES, key=lambda f: np.nanmin(row.defective_throughout[f]))
        throughout = np.nanmin(row.defective_throughout[family])
        right = min(row.sharp_slide.right_family, key=lambda name: row.sharp_slide.right_family[name])
        lines.append(
            f"| {row.group} | {row.raw.sharp_pass:.2f} / {row.sharp_slide.sharp_pass:.2f} / "
            f"{row.mostly_defective.sharp_pass:.2f} | {row.sharp_slide_shift:.1f} / {row.mostly_defective_shift:.1f} | "
            f"{worst(row.raw)} / {worst(row.sharp_slide)} / {worst(row.mostly_defective)} | {throughout:.2f} {family} | "
            f"{row.raw.auc:.3f} / {row.raw.auc_other:.3f} | {row.sharp_slide.right_family[right]:.2f} {right} |"
        )
    return "\n".join(lines)
