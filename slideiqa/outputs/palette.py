"""The colours of every output — overview, GeoJSON, batch report, napari — from one place, chosen so
that colour-blind readers can tell them apart.

One reader in twelve men sees red and green alike. Classes therefore take the Okabe–Ito palette
(Okabe & Ito, *Color Universal Design*, 2008: eight colours that stay distinct under the common
colour-vision deficiencies), and slideiqa's own labels beyond those eight differ by lightness alone
(greys and white), which every reader sees. The score runs on ColorBrewer's RdYlBu — red (bad)
through yellow to blue (good), which ColorBrewer marks colour-blind safe — instead of red → green.
The threshold is marked by a black tick on the colour bars and, in napari, by a double line around
the tiles below it — black outside, white inside — which shows on any slide and looks like no
class's fill.
"""

from __future__ import annotations

import numpy as np

from slideiqa.artefacts.registry import ARTEFACTS

#: Okabe & Ito's eight colours (RGB).
OKABE_ITO = {
    "black": (0, 0, 0),
    "orange": (230, 159, 0),
    "sky blue": (86, 180, 233),
    "bluish green": (0, 158, 115),
    "yellow": (240, 228, 66),
    "blue": (0, 114, 178),
    "vermillion": (213, 94, 0),
    "reddish purple": (204, 121, 167),
}


def _rgba(name: str) -> list[int]:
    return [*OKABE_ITO[name], 255]


#: RGBA of each class and of slideiqa's own labels. A model's classes take the hues, unreadable is
#: black (no pixels); each preparation artefact has its colour in its record (``artefacts.registry``).
CLASS_COLOURS: dict[str, list[int]] = {
    "good": _rgba("bluish green"),
    "defocus": _rgba("vermillion"),
    "motion": _rgba("orange"),
    "noise": _rgba("reddish purple"),
    "jpeg": _rgba("yellow"),
    "exposure": _rgba("blue"),
    # the paper's four blood-smear classes
    "bad": _rgba("vermillion"),
    "fair": _rgba("orange"),
    "excellent": _rgba("blue"),
    "unreadable": _rgba("black"),
} | {artefact.name: list(artefact.colour) for artefact in ARTEFACTS}
#: Colours of a model's classes that have none of their own, in turn.
FALLBACK_COLOURS = [_rgba("reddish purple"), _rgba("sky blue"), _rgba("yellow"), [120, 120, 120, 255]]

#: ColorBrewer's RdYlBu (11 classes): the score's ramp, red at 0 through yellow to blue at 1.
SCORE_RAMP = np.array(
    [
        [165, 0, 38],
        [215, 48, 39],
        [244, 109, 67],
        [253, 174, 97],
        [254, 224, 144],
        [255, 255, 191],
        [224, 243, 248],
        [171, 217, 233],
        [116, 173, 209],
        [69, 117, 180],
        [49, 54, 149],
    ],
    np.float32,
)
#: In words, for tooltips and captions.
SCORE_RAMP_WORDS = "red 0 → yellow → blue 1"

#: napari's outline of the tiles below the threshold: a black line with a white one inside.
OUTLINE_OUTER, OUTLINE_INNER = (0.0, 0.0, 0.0, 1.0), (1.0, 1.0, 1.0, 1.0)


#: A verdict's colour wherever one is written in colour (the batch report's badges, napari's widget).
VERDICT_COLOURS = {"pass": OKABE_ITO["bluish green"], "fail": OKABE_ITO["orange"], "error": OKABE_ITO["vermillion"]}


def hex_colour(rgb: tuple[int, int, int]) -> str:
    """``#rrggbb`` of an RGB colour, for HTML."""
    return "#" + "".join(f"{channel:02x}" for channel in rgb[:3])


def class_colour(name: str, index: int) -> list[int]:
    """The RGBA of class ``name``, the ``index``-th of its model's classes."""
    return CLASS_COLOURS.get(name, FALLBACK_COLOURS[index % len(FALLBACK_COLOURS)])


def score_colours(score: np.ndarray) -> np.ndarray:
    """RGB (float) of each score on :data:`SCORE_RAMP`, interpolated between its colours; NaN gives NaN."""
    position = np.clip(score, 0.0, 1.0) * (len(SCORE_RAMP) - 1)
    low = np.clip(np.floor(np.nan_to_num(position)).astype(int), 0, len(SCORE_RAMP) - 2)
    weight = (np.nan_to_num(position) - low)[..., None]
    colours = SCORE_RAMP[low] * (1 - weight) + SCORE_RAMP[low + 1] * weight
    colours[np.isnan(score)] = np.nan
    return colours
