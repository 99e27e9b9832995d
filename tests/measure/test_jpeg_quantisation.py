"""JPEG read from its quantisation step: quality 15 is seen by every encoder on any block grid, a
scanner's quality 30 and sharp tiles are not, a tile resampled after compression shows nothing; on a
file's own pixels the step decides P(jpeg), elsewhere it only raises the network's."""

import numpy as np
import pytest
from PIL import Image

from slideiqa.io.edge_tiles import own_extent
from slideiqa.measure.jpeg_quantisation import JPEG_SCALE, block_grid, jpeg_scale, judge_jpeg, readable
from slideiqa.models.predictor import Predictor
from slideiqa.synthetic.distortions import jpeg, jpeg_round_trip
from slideiqa_training.cross_implementation import IMPLEMENTATIONS, degrade
from slideiqa_training.generalisation import FLOORS


def tiles_of(field: np.ndarray, offset: int, count: int = 6) -> np.ndarray:
    """``count`` 224 px tiles of ``field`` starting ``offset`` px off its 8 px block grid."""
    return np.stack(
        [
            field[
                offset + 224 * (i // 3) : offset + 224 * (i // 3) + 224,
                offset + 224 * (i % 3) : offset + 224 * (i % 3) + 224,
            ]
            for i in range(count)
        ]
    )


@pytest.mark.parametrize("offset", [0, 3])
@pytest.mark.parametrize("kind", ["420", "444"])
def test_quality_15_is_read_on_any_block_grid(tumour_field, kind, offset):
    compressed = jpeg(tumour_field, FLOORS["jpeg"], kind=kind)
    tiles = tiles_of(compressed, offset)
    columns, rows, _ = block_grid(tiles)
    assert set(columns) == set(rows) == {(8 - offset) % 8}
    scale = jpeg_scale(tiles)
    assert np.all((scale > 3.0) & (scale < 4.0)), scale.round(2)  # 50 / 15 = 3.33 times the standard table


@pytest.mark.parametrize("name", IMPLEMENTATIONS["jpeg"])
def test_other_encoders_at_the_floor_are_read_too(heldout_tiles, name):
    """albumentations hands RGB to OpenCV as BGR, so its encoder's luminance mixes the channels the
    other way; both orders are read."""
    compressed = np.stack(
        [
            degrade(tile, "jpeg", FLOORS["jpeg"], 0.5, np.random.default_rng(i), name)[0]
            for i, tile in enumerate(heldout_tiles[:4])
        ]
    )
    assert jpeg_scale(compressed).min() > JPEG_SCALE


@pytest.mark.parametrize("inside", [(224, 79), (150, 224), (60, 175), (30, 30)])
def test_an_edge_tile_is_read_on_its_own_part_not_its_mirror_image(tumour_field, inside):
    """A map mirrors a tile past the slide's border (``grid.mirrored_past_edge``); the mirror image's
    blocks lie on another grid, so only the tile's own part is read — down to 4 × 4 blocks of it."""
    rows, columns = inside
    compressed = jpeg(tumour_field, FLOORS["jpeg"])
    whole = tiles_of(compressed, 0, count=1)
    edge = np.pad(
        compressed[224 : 224 + rows, 448 : 448 + columns],
        ((0, 224 - rows), (0, 224 - columns), (0, 0)),
        mode="symmetric",
    )
    assert own_extent(np.stack([whole[0], edge])).tolist() == [[224, 224], [rows, columns]]
    scale = jpeg_scale(edge[None])[0]
    assert (scale > 3.0) if min(inside) >= 60 else (scale == 0.0), scale  # too few blocks: no reading


def test_sharp_tiles_and_a_scanners_quality_are_not_read_as_the_floor(heldout_tiles, tumour_field):
    assert jpeg_scale(heldout_tiles).max() < 1.0
    for quality, top in ((30, 2.0), (75, 0.6)):
        tiles = tiles_of(jpeg_round_trip(tumour_field, quality), 0)
        assert jpeg_scale(tiles).max() < top


def test_a_tile_resampled_after_compression_shows_no_lattice(tumour_field):
    """A 40× slide compressed at its own pixels and read at half the size keeps no block grid: the
    network's call stands there."""
    compressed = jpeg(tumour_field, FLOORS["jpeg"])
    height, width = compressed.shape[:2]
    shrunk = np.asarray(Image.fromarray(compressed).resize((width // 2, height // 2), Image.Resampling.LANCZOS))
    assert jpeg_scale(tiles_of(shrunk, 0, count=2)).max() == 0.0


def test_the_measurement_only_raises_p_jpeg_on_resampled_tiles():
    classes = ["good", "jpeg", "noise"]
    probabilities = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.8, 0.1, 0.1]])
    judged = judge_jpeg(probabilities, classes, np.array([3.4, 0.0, 1.7]))
    np.testing.assert_allclose(judged.sum(1), 1.0, atol=1e-6)
    assert judged[0, 1] > 0.999  # read at the floor, whatever the network said
    np.testing.assert_allclose(judged[1:], probabilities[1:], atol=1e-6)  # no lattice, or a fine step
    assert judge_jpeg(probabilities, ["good", "a", "b"], np.full(3, 3.4)) is probabilities


def test_the_predictor_flags_every_tile_at_the_floor(heldout_tiles):
    compressed = np.stack([jpeg(tile, FLOORS["jpeg"]) for tile in heldout_tiles])
    measured, network = Predictor("default"), Predictor("default", measure_jpeg=False)
    index = measured.classes.index("jpeg")
    judged = measured.predict(compressed)
    assert (judged[:, index] > 0.99).all()
    assert measured.predict(heldout_tiles)[:, index].max() < 0.05
    assert "jpeg" not in network.measured_families


def test_on_a_files_own_pixels_the_measured_step_decides_p_jpeg_both_ways():
    """A JPEG artefact on a tile that is its file's own pixels shows the encoder's lattice: a network's
    JPEG call on a tile without one (featureless tissue of a lab it never saw) is set aside."""
    classes = ["good", "jpeg", "noise"]
    probabilities = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.8, 0.1, 0.1]])
    judged = judge_jpeg(probabilities, classes, np.array([3.4, 0.0, 1.7]), native=True)
    np.testing.assert_allclose(judged.sum(1), 1.0, atol=1e-6)
    assert judged[0, 1] > 0.999
    assert judged[1:, 1].max() < 1e-6  # no lattice, or a scanner's fine step: not compressed past the floor
    # the rest keeps the network's ratios: good 2 : noise 1, and 8 : 1
    np.testing.assert_allclose(judged[1:, 0] / judged[1:, 2], [2.0, 8.0], rtol=1e-5)


def test_the_predictor_told_tiles_are_native_still_flags_the_floor_and_clears_clean_tiles(heldout_tiles):
    predictor = Predictor("default")
    index = predictor.classes.index("jpeg")
    compressed = np.stack([jpeg(tile, FLOORS["jpeg"]) for tile in heldout_tiles])
    assert (predictor.predict(compressed, native=True)[:, index] > 0.99).all()
    assert predictor.predict(heldout_tiles, native=True)[:, index].max() < 1e-6


def test_a_lowered_p_jpeg_never_pushes_a_measured_class_over_its_line():
    """What the step takes from the network's P(jpeg) goes to the classes not judged already: a
    measured P(motion) of 0.42 stays 0.42 (shared in the network's ratios it became 0.76, a motion
    flag the JPEG rule made)."""
    classes = ["good", "motion", "jpeg"]
    probabilities = np.array([[0.0, 0.417, 0.583], [0.1, 0.2, 0.7]])
    judged = judge_jpeg(probabilities, classes, np.zeros(2), native=True, measured=("motion",))
    np.testing.assert_allclose(judged[:, 1], probabilities[:, 1], atol=1e-6)
    np.testing.assert_allclose(judged[:, 2], 0.0, atol=1e-6)
    np.testing.assert_allclose(judged.sum(1), 1.0, atol=1e-6)


def test_an_edge_tile_too_small_to_read_keeps_the_networks_call(tumour_field):
    """A 30 × 30 px own part holds too few blocks to read a step (it reads 0): that is no evidence of
    no compression, so there the network's P(jpeg) stands even on the file's own pixels."""
    compressed = jpeg(tumour_field, FLOORS["jpeg"])
    edge = np.pad(compressed[224:254, 448:478], ((0, 194), (0, 194), (0, 0)), mode="symmetric")
    tiles = np.stack([edge, tiles_of(compressed, 0, count=1)[0]])
    assert readable(own_extent(tiles)).tolist() == [False, True]
    predictor = Predictor("default")
    native, resampled = predictor.predict(tiles, native=True), predictor.predict(tiles, native=False)
    np.testing.assert_allclose(native[0], resampled[0], atol=1e-6)
