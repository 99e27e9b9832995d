"""A batch's measurements are each tile's own: measured in parts (as the predictor does on several
threads) they are the whole batch's, tile for tile, edge tiles included."""

from dataclasses import fields

import numpy as np

from slideiqa.measure.judgement import MEASURABLE, TileMeasurements, joined, measure_tiles
from slideiqa.models.predictor import Predictor


def assert_same(a: TileMeasurements, b: TileMeasurements) -> None:
    for field in fields(TileMeasurements):
        left, right = getattr(a, field.name), getattr(b, field.name)
        if isinstance(left, np.ndarray) or left is None:
            np.testing.assert_array_equal(left, right, err_msg=field.name)
        else:
            for inner in fields(left):
                np.testing.assert_array_equal(getattr(left, inner.name), getattr(right, inner.name), err_msg=field.name)


def batch(heldout_tiles: np.ndarray) -> np.ndarray:
    """The held-out tiles and an edge tile: a tile's own part mirrored past the slide's border."""
    edge = np.pad(heldout_tiles[0][:150, :100], ((0, 74), (0, 124), (0, 0)), mode="symmetric")
    return np.concatenate([heldout_tiles, edge[None]])


def test_parts_measured_apart_and_joined_are_the_whole_batch(heldout_tiles):
    tiles = batch(np.asarray(heldout_tiles))
    whole = measure_tiles(tiles, list(MEASURABLE))
    parts = [measure_tiles(part, list(MEASURABLE)) for part in np.array_split(tiles, 3)]
    assert_same(joined(parts), whole)
    assert whole.noise is not None and len(whole.noise.sigma) == len(tiles)


def test_a_predictor_on_two_threads_measures_as_on_one(heldout_tiles):
    tiles = batch(np.asarray(heldout_tiles))
    two, one = Predictor("default", threads=2), Predictor("default", threads=1)
    assert_same(two._measure(tiles, None), one._measure(tiles, None))
    np.testing.assert_array_equal(
        two.predict(tiles, native=True)[:, 0] >= 0.5, one.predict(tiles, native=True)[:, 0] >= 0.5
    )
