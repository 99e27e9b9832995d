"""Every preparation artefact slideiqa looks for, one record each.

A record holds all that the map, its outputs and its messages need to know of an artefact: its name
and value in the map's ``label`` array, its colour, where it is found (on the slide's thumbnail or
in each tile), how it treats the tissue under it, and what a person is told about it. Labels,
colours, warnings, the settings' names and the detectors run are all derived from :data:`ARTEFACTS`,
so adding a detector is one module in this package and one record here.

This module imports nothing heavy (the command line and the settings read it before anything else
is loaded); a detector's module is imported when the detector is first asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np

#: A tile artefact's detector: (N, h, w, 3) tiles, their µm/px, the model's (N, classes) probabilities
#: and its class names → (N,) True where a tile holds the artefact (labelled, left out of the model's
#: judgement) and (N,) True where it holds specks of marking dye (judged as usual, named in a warning).
TileDetector = Callable[["np.ndarray", float, "np.ndarray", list[str]], tuple["np.ndarray", "np.ndarray"]]

#: A tile whose footprint is at least this much under an artefact is labelled with it.
ARTEFACT_TILE_SHARE = 0.25
#: A coverslip edge is a line, not an area: one 30 µm wide crossing a 112 µm tile covers about a
#: quarter of it, a thin grey one a tenth; at this share the line is across the tile, and the CNN
#: would judge a tile by a dark stripe it was never taught.
EDGE_TILE_SHARE = 0.1


@dataclass(frozen=True)
class Artefact:
    """One preparation artefact.

    ``scale`` says where it is found: ``thumbnail`` artefacts are hundreds of µm to millimetres
    large and found on the thumbnail the map reads for its tissue mask; ``tile`` ones are found in
    each tile as it is assessed. ``hides_tissue``: ink and edges hide the tissue under them (tissue
    is counted beside them), folds and bubbles alter tissue that is still there. ``claim`` orders
    thumbnail detectors that answer for the same pixels: the lowest keeps them. ``finds`` completes
    "N tissue tiles …" in the warning; ``advice`` says what to do. ``detector`` is the function, in
    this package, that finds it: ``module.function``, taking (RGB image, µm per pixel) for a
    thumbnail artefact (:attr:`find`) and (tiles, µm per pixel, the model's probabilities, its
    classes) for a tile artefact (:attr:`find_in_tiles`). The map calls both through these records,
    so a new detector is its module and one record here.
    """

    name: str
    label: int
    colour: tuple[int, int, int, int]
    scale: Literal["thumbnail", "tile"]
    hides_tissue: bool
    tile_share: float
    claim: int
    finds: str
    advice: str
    detector: str

    @property
    def find(self) -> Callable[[np.ndarray, float], np.ndarray]:
        """A thumbnail artefact's detector (image, µm/px → mask), its module imported on first use."""
        return self._detector()

    @property
    def find_in_tiles(self) -> TileDetector:
        """A tile artefact's detector (tiles, µm/px, probabilities, classes → (N,) tiles it labels,
        (N,) tiles holding marking dye), its module imported on first use."""
        return self._detector()

    def _detector(self) -> Any:
        module, function = self.detector.rsplit(".", 1)
        return getattr(import_module(f"slideiqa.artefacts.{module}"), function)


#: In the order their labels are listed in a map (its image-label metadata, the legends). Colours:
#: pen is sky blue (inks are blue, green, black); the others differ by lightness alone, which every
#: reader sees — edge, fold, debris from dark to light up to bubble's white (a bubble leaves a pale
#: patch). Claims: the black band of a bevelled edge passes the black-ink rule and inked tissue is
#: dark enough to pass for a fold, so edges come before ink and ink before folds.
ARTEFACTS: tuple[Artefact, ...] = (
    Artefact(
        "pen", 254, (86, 180, 233, 255), "thumbnail", hides_tissue=True, tile_share=ARTEFACT_TILE_SHARE, claim=1,
        finds="lie under pen ink", advice="remove the ink and rescan, or judge them by eye",
        detector="pen.pen_mask",
    ),
    Artefact(
        "fold", 252, (110, 110, 110, 255), "thumbnail", hides_tissue=False, tile_share=ARTEFACT_TILE_SHARE, claim=3,
        finds="look folded (tissue far darker than the rest of the slide, in a band)",
        advice="check them by eye; a fold over diagnostic tissue needs a recut",
        detector="folds.fold_mask",
    ),
    Artefact(
        "bubble", 251, (255, 255, 255, 255), "thumbnail", hides_tissue=False, tile_share=ARTEFACT_TILE_SHARE, claim=2,
        finds="lie under an air bubble (a round area inside a colourless dark rim)",
        advice="remount the coverslip and rescan if the tissue matters",
        detector="bubbles.bubble_mask",
    ),
    Artefact(
        "edge", 253, (70, 70, 70, 255), "thumbnail", hides_tissue=True, tile_share=EDGE_TILE_SHARE, claim=0,
        finds="are crossed by a coverslip or slide edge", advice="check the coverslip covers the tissue",
        detector="coverslip.edge_mask",
    ),
    Artefact(
        "debris", 250, (190, 190, 190, 255), "tile", hides_tissue=False, tile_share=0.0, claim=4,
        finds="hold debris (dark colourless particles: dust, dirt)", advice="clean the coverslip and rescan",
        detector="debris.specks_in_tiles",
    ),
)  # fmt: skip

BY_NAME: dict[str, Artefact] = {artefact.name: artefact for artefact in ARTEFACTS}
#: Every artefact's name, in the order a map searches for them: the thumbnail's by claim, then the tiles'.
ARTEFACT_NAMES: tuple[str, ...] = tuple(
    artefact.name for artefact in sorted(ARTEFACTS, key=lambda a: (a.scale != "thumbnail", a.claim))
)


def thumbnail_artefacts(names: tuple[str, ...] | list[str] = ARTEFACT_NAMES) -> list[Artefact]:
    """The thumbnail artefacts among ``names``, strongest claim first."""
    return sorted((BY_NAME[name] for name in names if BY_NAME[name].scale == "thumbnail"), key=lambda a: a.claim)


def tile_artefacts(names: tuple[str, ...] | list[str] = ARTEFACT_NAMES) -> list[Artefact]:
    """The tile artefacts among ``names``, in the order they claim a tile (the lowest first)."""
    return sorted((BY_NAME[name] for name in names if BY_NAME[name].scale == "tile"), key=lambda a: a.claim)


def unknown_artefacts(names: tuple[str, ...] | list[str]) -> list[str]:
    """The names among ``names`` that are not artefacts slideiqa looks for."""
    return [name for name in names if name not in BY_NAME]
