"""A tile's tone judged against its slide's: a tone curve applied by another library to part of a real
slide is flagged as exposure where a single tile cannot tell it from a stronger stain, the rest of the
slide is left alone, and judging a finished map again changes nothing."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.exposure import adjust_gamma

from slideiqa import map_slide
from slideiqa.measure.block_means import block_means
from slideiqa.measure.slide_tone import (
    DEPARTURE_Z,
    TONE_FEATURES,
    ToneReference,
    clear_exposure,
    fit_probability,
    judge_against_slide,
    judge_tiles,
    judge_tone,
    tone_deviation,
    tone_features,
)
from slideiqa.outputs.store import open_for_update, open_map, read_array
from slideiqa.pipeline.finish import judge_map_tone

from paths import CMU_SLIDE, FIELDS
from slides import mosaic_pixels, write_pyramidal_tiff

TUMOUR_FIELD = FIELDS / "he_tumour_target.png"

CLASSES = ["good", "defocus", "motion", "noise", "jpeg", "exposure"]
TILE = 224
#: A box of 2 × 2 tiles (row0, col0, row1, col1) of a slide of real tissue given a tone curve by
#: scikit-image at the exposure floor of ±1 EV at mid-grey: γ = 2 (a stronger-looking stain) or ½ (a
#: paler one). On the CMU slide neither departs from the slide's tone at the floor: a doubled or
#: halved density is within 3 of its tissue's own spreads (fat beside epidermis; training/README.md).
BOX = (5, 4, 7, 6)


def test_a_tone_curve_moves_the_measurements_as_the_physics_says(heldout_tiles):
    with_glass = heldout_tiles[2]  # an H&E tile of an Aperio slide with glass between the tissue
    tiles = np.stack([with_glass, adjust_gamma(with_glass, 2.0), adjust_gamma(with_glass, 0.5)])
    features = tone_features(tiles)
    np.testing.assert_array_equal(features, tone_features(tiles.copy()))
    density = features[:, TONE_FEATURES.index("stain_density")]
    # γ multiplies optical density by γ: log2 density moves by ±1 (less where pixels cross the stain cut).
    assert 0.8 < density[1] - density[0] < 1.1 and -1.1 < density[2] - density[0] < -0.8, density
    glass = features[:, TONE_FEATURES.index("glass")]
    assert glass[1] < glass[0] - 8 and glass[2] > glass[0] + 4, glass
    full_of_tissue = np.full((1, TILE, TILE, 3), (150, 80, 160), np.uint8)
    assert np.isnan(tone_features(full_of_tissue)[0, TONE_FEATURES.index("glass")])


def test_tone_is_read_on_block_means_so_fine_detail_a_decoder_adds_does_not_move_it(heldout_tiles):
    """Two decoders of one scan differ in fine detail, not in tone: a zero-mean pattern of a few grey
    levels at the pixel scale (what a DCT-domain shrink and a Lanczos one differ by) leaves the
    features where they were, because they are read on 4 × 4 means rather than on single pixels."""
    tiles = heldout_tiles[:6].astype(np.int16)
    checker = np.where((np.indices((TILE, TILE)).sum(axis=0) % 2) == 0, 3, -3)[None, :, :, None]
    patterned = np.clip(tiles + checker, 0, 255).astype(np.uint8)
    before, after = tone_features(tiles.astype(np.uint8)), tone_features(patterned)
    np.testing.assert_array_equal(np.isnan(before), np.isnan(after))
    measured = ~np.isnan(before)
    assert np.abs(after - before)[measured].max() < 0.3, np.abs(after - before)
    means = block_means(patterned, 4)
    np.testing.assert_array_equal(means, np.rint(patterned.reshape(6, 56, 4, 56, 4, 3).mean(axis=(2, 4)) + 1e-9))


def test_judging_takes_only_from_good_and_leaves_fitting_tiles_exactly_as_they_were():
    probabilities = np.array(
        [
            [0.97, 0.01, 0.0, 0.0, 0.01, 0.01],  # good, fits its slide
            [0.97, 0.01, 0.0, 0.0, 0.01, 0.01],  # good, departs
            [0.02, 0.0, 0.0, 0.97, 0.0, 0.01],  # noisy, departs
            [np.nan] * 6,
        ],
        np.float32,
    )  # not assessed
    deviation = np.array([1.0, DEPARTURE_Z + 3, DEPARTURE_Z + 3, DEPARTURE_Z + 3])
    judged = judge_tone(probabilities, CLASSES, deviation)
    np.testing.assert_array_equal(judged[0], probabilities[0])
    assert judged[1, 0] < 0.01 and judged[1].argmax() == CLASSES.index("exposure")
    np.testing.assert_array_equal(judged[1, 1:5], probabilities[1, 1:5])
    assert judged[2].argmax() == CLASSES.index("noise")  # a noisy tile keeps its family
    np.testing.assert_allclose(judged[:3].sum(axis=1), 1.0, atol=1e-6)
    assert np.isnan(judged[3]).all()
    np.testing.assert_array_equal(judge_tone(judged, CLASSES, deviation), judged)  # idempotent
    two_classes = probabilities[:, :2]
    assert judge_tone(two_classes, ["good", "defocus"], deviation) is two_classes  # nothing to move to


def test_a_tile_is_measured_against_its_slides_spread():
    steady = np.column_stack([np.full(40, 240.0), np.linspace(-0.5, -0.45, 40), np.full(40, np.nan)])
    varied = steady.copy()
    varied[:, 1] = np.linspace(-1.2, 0.2, 40)  # fat beside dense tissue
    twice_as_dense = np.array([[240.0, -0.48 + 1.0, np.nan]])
    assert tone_deviation(twice_as_dense, steady)[0] > DEPARTURE_Z
    assert tone_deviation(twice_as_dense, varied)[0] < DEPARTURE_Z
    assert np.isnan(ToneReference.of(steady[:5]).median).all()  # too few tiles: no reference


def _slide(glass: float) -> np.ndarray:
    """Tone measurements of 40 tissue tiles of a slide with glass at ``glass`` and varied tissue."""
    return np.column_stack([np.full(40, glass), np.linspace(-1.0, 0.0, 40), np.full(40, np.nan)])


def test_a_tile_that_fits_its_slide_has_its_exposure_cleared_and_nothing_else():
    features = np.array(
        [
            [241.0, -0.4, np.nan],  # fits: fat or pale eosin on its slide's glass
            [241.0, -0.4, np.nan],  # fits, but JPEG-damaged as well
            [np.nan, -0.4, 230.0],  # no glass to tell its exposure by
            [249.0, -0.4, np.nan],  # glass 3 spreads brighter: a paler tone curve?
            [241.0, -3.0, np.nan],
        ]
    )  # density far off: departs
    probabilities = np.array(
        [
            [0.12, 0.01, 0.01, 0.01, 0.0, 0.85],
            [0.03, 0.0, 0.0, 0.0, 0.07, 0.90],
            [0.12, 0.01, 0.01, 0.01, 0.0, 0.85],
            [0.12, 0.01, 0.01, 0.01, 0.0, 0.85],
            [0.97, 0.01, 0.0, 0.0, 0.01, 0.01],
        ]
    )
    reference = ToneReference.of(_slide(240.0))
    assert (fit_probability(features, reference) > 0.5).tolist() == [True, True, False, False, False]
    judged = judge_against_slide(probabilities, CLASSES, features, reference)
    exposure = CLASSES.index("exposure")
    assert judged[0, exposure] < 0.1 and judged[0, 0] > 0.7
    assert judged[0, 0] / judged[0, 1] == pytest.approx(12.0)  # the other classes keep their ratios
    # The JPEG copy's exposure goes to its other classes in their ratio: it is still flagged, as JPEG.
    assert judged[1, 0] < 0.5 and judged[1].argmax() == CLASSES.index("jpeg")
    np.testing.assert_array_equal(judged[2:4], probabilities[2:4])
    assert judged[4].argmax() == exposure  # departing still adds exposure
    np.testing.assert_array_equal(judge_against_slide(judged, CLASSES, features, reference), judged)  # idempotent
    # A slide whose glass is clipped (over-exposed throughout) or dark (1 EV under) clears nothing.
    for glass in (253.0, 150.0):
        on_that_glass = features.copy()
        on_that_glass[:, 0] += glass - 241.0
        assert not fit_probability(on_that_glass, ToneReference.of(_slide(glass))).any()
    two_classes = probabilities[:, :2]
    assert clear_exposure(two_classes, ["good", "defocus"], np.ones(5, bool)) is two_classes


def test_judging_a_judged_map_again_changes_no_bit():
    """Stored as float32, a P(good) capped a hair below 1 by a tiny P(departs) rounds back above its
    cap, and a rescaled row moves a hair of exposure: acted on, a finished map's last bits would
    change at every finish."""
    rng = np.random.default_rng(0)
    probabilities = np.zeros((200, len(CLASSES)), np.float32)
    probabilities[:, 0] = 1 - rng.uniform(0, 3e-6, 200)
    probabilities[:, -1] = 1 - probabilities[:, 0]
    deviation, fit = rng.uniform(0, 1.5, 200), rng.uniform(0, 0.98, 200)
    once = judge_tiles(probabilities, CLASSES, deviation, fit)
    np.testing.assert_array_equal(judge_tiles(once, CLASSES, deviation, fit), once)


def _toned(pixels: np.ndarray, gamma: float, path: Path) -> Path:
    """``pixels`` as a 0.5 µm/px slide (224 px tiles on the map's grid) with :data:`BOX` given a tone
    curve by scikit-image."""
    r0, c0, r1, c1 = BOX
    box = np.s_[r0 * TILE : r1 * TILE, c0 * TILE : c1 * TILE]
    pixels[box] = adjust_gamma(pixels[box], gamma)
    return write_pyramidal_tiff(path, pixels, mpp=0.5, compression="zlib")


def tumour_slide(gamma: float, path: Path) -> Path:
    return _toned(mosaic_pixels([np.asarray(Image.open(TUMOUR_FIELD).convert("RGB"))], 12, TILE, seed=3), gamma, path)


@pytest.mark.parametrize("gamma", [2.0, 0.5])
def test_a_map_flags_a_tone_curve_on_part_of_a_real_slide_and_leaves_the_rest(gamma, tmp_path):
    result = map_slide(tumour_slide(gamma, tmp_path / "toned.tif"), tmp_path / "toned.quality.zarr")
    quality = open_map(result.path)
    label, score = quality.array("label"), quality.array("score")
    toned = np.zeros(label.shape, bool)
    toned[BOX[0] : BOX[2], BOX[1] : BOX[3]] = True
    exposure = CLASSES.index("exposure") + 1
    assert (label[toned] == exposure).all() and (score[toned] < 0.5).all(), label[toned]
    found = quality.attributes["tone_context"]
    # The box departs from the slide's tone (whatever the network made of it), and at most one of
    # the slide's 140 clean tissue tiles does.
    tone = quality.array("tone")
    assessed = np.isfinite(quality.array("probs")).all(axis=0)
    assert (tone_deviation(tone[:, toned].T, tone[:, assessed].T) > DEPARTURE_Z).all()
    assert 0 <= found["tiles_departing"] - int(toned.sum()) <= 1, found
    assert result.summary.tone is not None and result.summary.tone.to_dict() == found
    assert any(f"{found['tiles_departing']} tissue tiles' tone" in warning for warning in result.warnings)
    assert np.isfinite(tone[1, assessed]).all() and np.isnan(tone[:, ~assessed]).all()

    # Finishing again (as after a kill during the finish) changes nothing.
    arrays = {
        name: quality.array(name) for name in ("probs", "score", "label", "cell_probs", "cell_score", "cell_label")
    }
    judge_map_tone(open_for_update(result.path), CLASSES, 0, with_cells=True)
    root = open_map(result.path).group
    for name, before in arrays.items():
        np.testing.assert_array_equal(read_array(root, name), before)


def test_no_tile_of_the_bundled_real_slide_departs_from_its_tone_and_most_fit_it(tmp_path):
    result = map_slide(CMU_SLIDE, tmp_path / "cmu.quality.zarr")
    quality = open_map(result.path)
    found = quality.attributes["tone_context"]
    assert found["tiles_compared"] > 40 and found["tiles_departing"] == 0, found
    assert not any("tone" in warning or "glass is at" in warning for warning in result.warnings)
    # Tiles whose glass and stain fit the slide's have no exposure error left: pale dermis and fat
    # the network alone calls over-exposed pass (the quick start's figures: four exposure tiles left, of five).
    assert found["tiles_fitting"] > found["tiles_compared"] / 2, found
    tone, probs = quality.array("tone"), quality.array("probs")
    fitting = fit_probability(tone[:, np.isfinite(probs).all(axis=0)].T) > 0.5
    exposure = probs[CLASSES.index("exposure")][np.isfinite(probs).all(axis=0)]
    assert fitting.sum() == found["tiles_fitting"] and (exposure[fitting] < 0.5).all()
    assert (quality.array("label") == CLASSES.index("exposure") + 1).sum() <= 4
    # Their cells are judged with them: exposure is the scan's, not a cell's.
    fit = np.zeros(probs.shape[1:])
    fit[np.isfinite(probs).all(axis=0)] = fit_probability(tone[:, np.isfinite(probs).all(axis=0)].T)
    fit_of_cells = np.repeat(np.repeat(fit, 7, axis=0), 7, axis=1)
    cells = quality.array("cell_probs")
    judged = np.isfinite(cells).all(axis=0)
    assert (cells[CLASSES.index("exposure")][judged] <= 1 - fit_of_cells[judged] + 1e-6).all()
    assert not (quality.array("cell_label")[fit_of_cells > 0.5] == CLASSES.index("exposure") + 1).any()
    np.testing.assert_array_equal(quality.array("cell_score")[judged], cells[0][judged])
    # Departing and fitting each move a hair of the other's share: judging again still changes nothing.
    names = ("probs", "score", "label", "cell_probs", "cell_score", "cell_label")
    before = {name: quality.array(name) for name in names}
    judge_map_tone(open_for_update(result.path), CLASSES, 0, with_cells=True)
    for name in names:
        np.testing.assert_array_equal(read_array(open_map(result.path).group, name), before[name])


def test_a_slide_over_exposed_throughout_clears_nothing(tmp_path):
    """OpenCV's gain × 2 over the whole skin field clips its glass: the slide is its own reference, so
    nothing departs, but its glass is not what a calibrated scanner writes, so nothing is cleared
    either and the network's exposure flags stand."""
    import cv2

    skin = mosaic_pixels([np.asarray(Image.open(FIELDS / "he_skin_10x.tif").convert("RGB"))], 10, TILE, seed=3)
    blown = write_pyramidal_tiff(
        tmp_path / "blown.tif", cv2.convertScaleAbs(skin, alpha=2.0), mpp=0.5, compression="zlib"
    )
    result = map_slide(blown, tmp_path / "blown.quality.zarr")
    score = open_map(result.path).array("score")
    assert result.summary.tone.tiles_fitting == 0, result.summary.tone
    assert (score[np.isfinite(score)] < 0.5).mean() >= 0.9
    assert any("the slide's glass is at 255" in w and "over-exposed" in w for w in result.warnings), result.warnings


def test_a_slide_under_exposed_throughout_is_named_by_its_glass(tmp_path):
    """OpenCV's gain × ½ over the whole skin field: its glass falls to about 112, far below what a
    calibrated scanner writes, and the map says so; its tiles, judged against each other, cannot.
    The clean field's glass (225) says nothing."""
    import cv2

    skin = mosaic_pixels([np.asarray(Image.open(FIELDS / "he_skin_10x.tif").convert("RGB"))], 10, TILE, seed=3)
    warnings = {}
    for name, pixels in (("clean", skin), ("dark", cv2.convertScaleAbs(skin, alpha=0.5))):
        slide = write_pyramidal_tiff(tmp_path / f"{name}.tif", pixels, mpp=0.5, compression="zlib")
        warnings[name] = [w for w in map_slide(slide, tmp_path / f"{name}.quality.zarr").warnings if "glass is at" in w]
    assert not warnings["clean"]
    assert len(warnings["dark"]) == 1 and "under-exposed" in warnings["dark"][0], warnings


def test_tissue_over_exposed_to_white_is_judged_not_taken_for_glass(tmp_path):
    """A box of pale real tissue (the skin field) over-exposed to white by OpenCV's gain × 2 looked
    like glass to the tissue mask, so three of its four tiles left the map and the verdict; clipped
    white on a slide whose glass is not clipped is now assessed, and flagged."""
    import cv2

    from slideiqa.measure.tissue import tissue_pixels

    skin = mosaic_pixels([np.asarray(Image.open(FIELDS / "he_skin_10x.tif").convert("RGB"))], 10, TILE, seed=3)
    blown = skin.copy()
    box = np.s_[4 * TILE : 6 * TILE, 4 * TILE : 6 * TILE]
    blown[box] = cv2.convertScaleAbs(np.ascontiguousarray(blown[box]), alpha=2.0)
    maps = {
        name: open_map(
            map_slide(
                write_pyramidal_tiff(tmp_path / f"{name}.tif", pixels, mpp=0.5, compression="zlib"),
                tmp_path / f"{name}.quality.zarr",
            ).path
        )
        for name, pixels in (("clean", skin), ("blown", blown))
    }
    label, score = maps["blown"].array("label"), maps["blown"].array("score")
    in_box = np.zeros(label.shape, bool)
    in_box[4:6, 4:6] = True
    assert (label[in_box] > 0).all() and (score[in_box] < 0.5).all(), label[in_box]
    np.testing.assert_array_equal(label[~in_box] > 0, maps["clean"].array("label")[~in_box] > 0)

    # A scanner that writes its glass as white keeps that glass as glass.
    on_white_glass = np.full((3 * TILE, 3 * TILE, 3), 255, np.uint8)
    on_white_glass[TILE : 2 * TILE, TILE : 2 * TILE] = skin[:TILE, :TILE]
    mask = tissue_pixels(on_white_glass)
    assert not mask[:TILE].any() and mask[TILE : 2 * TILE, TILE : 2 * TILE].mean() > 0.5
