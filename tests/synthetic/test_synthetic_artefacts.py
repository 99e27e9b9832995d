"""Synthetic preparation artefacts: deterministic, identity at 0, local to their mask, monotone."""

import numpy as np
import pytest

from slideiqa.artefacts.pen import pen_mask
from slideiqa.artefacts.registry import ARTEFACT_TILE_SHARE
from slideiqa.io.grid import TileGrid, tile_fractions
from slideiqa.io.slide import open_slide
from slideiqa.synthetic.artefacts import ARTEFACTS, INK_OD, add_artefact

from paths import CMU_SLIDE

PEN_FLOOR = 0.6
MPP = 2.0  # a 400 px crop of the 0.25 µm/px field shrunk 8×: 0.8 mm, room for every artefact


@pytest.fixture(scope="module")
def field(tumour_field):
    from PIL import Image

    return np.asarray(Image.fromarray(tumour_field).resize((500, 400), Image.Resampling.BOX))


@pytest.mark.parametrize("kind", ARTEFACTS)
def test_deterministic_identity_at_zero_and_local(field, kind):
    first, mask = add_artefact(kind, field, 0.6, MPP, seed=3)
    again, mask_again = add_artefact(kind, field, 0.6, MPP, seed=3)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(mask, mask_again)
    assert 0.002 < mask.mean() < 0.9, mask.mean()
    changed = np.any(first != field, axis=-1)
    assert not (changed & ~mask).any()
    assert changed[mask].mean() > 0.5
    untouched, empty = add_artefact(kind, field, 0.0, MPP, seed=3)
    np.testing.assert_array_equal(untouched, field)
    assert not empty.any()
    odd = field[:201, :133]  # any size
    assert add_artefact(kind, odd, 0.5, MPP, seed=1)[0].shape == odd.shape


@pytest.mark.parametrize("kind", ARTEFACTS)
def test_stronger_with_severity(field, kind):
    change = [
        np.abs(add_artefact(kind, field, severity, MPP, seed=5)[0].astype(float) - field).sum()
        for severity in (0.2, 0.5, 0.9)
    ]
    assert change[0] < change[1] < change[2], change


def test_unknown_artefact_is_refused(field):
    with pytest.raises(ValueError, match="unknown artefact 'smudge'"):
        add_artefact("smudge", field, 0.5, MPP)


@pytest.mark.parametrize("colour", sorted(INK_OD))
def test_the_pen_detector_finds_synthetic_strokes_of_every_ink(colour):
    """Strokes at the documented floor (severity 0.6: 1.2 × the real inks' median OD) on a real
    slide's thumbnail, at the scale a map's thumbnail has: ≥ 90 % of the tiles a quarter under ink
    are found, and no tile without ink."""
    with open_slide(CMU_SLIDE) as slide:
        thumbnail = slide.thumbnail(400)
        um_per_px = slide.dimensions[0] * slide.mpp / thumbnail.shape[1]
    inked, truth = add_artefact("pen", thumbnail, PEN_FLOOR, um_per_px, seed=11, colour=colour)
    found = pen_mask(inked, um_per_px)
    grid = TileGrid(thumbnail.shape[1], thumbnail.shape[0], um_per_px, 0.5, 224)
    true_tiles = tile_fractions(truth, grid) >= ARTEFACT_TILE_SHARE
    found_tiles = tile_fractions(found, grid) >= ARTEFACT_TILE_SHARE
    assert true_tiles.sum() >= 5
    assert (found_tiles & true_tiles).sum() >= 0.9 * true_tiles.sum()
    assert not (found_tiles & (tile_fractions(truth, grid) == 0)).any()
