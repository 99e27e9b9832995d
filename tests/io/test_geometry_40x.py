"""Level-0 geometry of a 40× slide checked against coordinates worked out by hand, not against the
map's own grid: at 0.25 µm/px a 224 px tile at the model's 0.5 µm/px covers 448 level-0 pixels, so
code that used the tile size (224) where it needs the step would draw every outline at half size.

The slide: a 1000 × 1000 px H&E field written as a 0.25 µm/px pyramidal TIFF; a 3 × 3 grid of 448 px
steps whose last row and column hold 104 px of the field (23 %, too little tissue to assess). The
two tiles of the first column's upper rows (level-0 x 0–448, y 0–896) are blurred far past the
defocus floor, so they fail and the two beside them (x 448–896) pass."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import shapely
from shapely.geometry import box, shape

from slideiqa import map_slide, open_map
from slideiqa.outputs.usable import mask_geojson, usable_tissue
from slideiqa.settings.options import MapOptions

from slides import write_pyramidal_tiff

STEP = 448  # level-0 px per tile: 224 px × (0.5 µm/px ÷ 0.25 µm/px)
SIDE = 1000
FAILING, PASSING = box(0, 0, STEP, 2 * STEP), box(STEP, 0, 2 * STEP, 2 * STEP)


@pytest.fixture(scope="module")
def mapped_40x(tmp_path_factory, tumour_field):
    folder = tmp_path_factory.mktemp("geometry40x")
    field = tumour_field[:SIDE, :SIDE].copy()
    field[: 2 * STEP, :STEP] = cv2.GaussianBlur(field[: 2 * STEP, :STEP], (0, 0), 12)
    slide = write_pyramidal_tiff(folder / "forty.tif", field, mpp=0.25, levels=3)
    result = map_slide(slide, folder / "forty.quality.zarr", MapOptions(tile_geojson=True))
    return result


def test_the_grid_is_448_level0_pixels_a_tile_and_only_the_blurred_tiles_fail(mapped_40x):
    quality = open_map(mapped_40x.path)
    assert quality.attributes["grid"]["step"] == pytest.approx(STEP)
    assert quality.array("score").shape == (3, 3)
    score = quality.array("score")
    assert (score[:2, :2] < 0.5).tolist() == [[True, False], [True, False]]
    assert np.isnan(score[2]).all() and np.isnan(score[:, 2]).all()  # the edge tiles: too little tissue


def test_tile_outlines_lie_on_the_448_px_grid(mapped_40x):
    tiles = json.loads((mapped_40x.path / "tiles.geojson").read_text())["features"]
    assert len(tiles) == 4
    for feature in tiles:
        measured = feature["properties"]["measurements"]
        row, col = int(measured["row"]), int(measured["column"])
        assert shape(feature["geometry"]).bounds == (col * STEP, row * STEP, (col + 1) * STEP, (row + 1) * STEP)


def test_the_low_quality_region_is_the_two_blurred_tiles_in_level0_pixels(mapped_40x):
    regions = json.loads((mapped_40x.path / "regions.geojson").read_text())["features"]
    outline = shapely.union_all([shape(feature["geometry"]) for feature in regions])
    assert outline.equals(FAILING), outline.wkt
    assert sum(f["properties"]["measurements"]["area µm^2"] for f in regions) == pytest.approx(2 * 112.0**2)


def test_the_usable_tissue_outline_avoids_the_failing_tiles_in_level0_pixels(mapped_40x):
    usable = usable_tissue(mapped_40x.path, 4.0)  # 16 level-0 px a mask pixel
    assert usable.level0_per_px == pytest.approx((16.0, 16.0), rel=0.02)
    outline = shapely.union_all([shape(f["geometry"]) for f in mask_geojson(usable)["features"]])
    x0, y0, x1, y1 = outline.bounds
    assert x0 >= STEP - 16 and x1 <= 2 * STEP + 16 and y1 <= 2 * STEP + 16  # the passing tiles' footprint
    assert x1 > 2 * STEP - 40 and y1 > 2 * STEP - 40  # ... all of it: the field is tissue almost everywhere
    assert outline.intersection(FAILING).area < 0.01 * FAILING.area
    assert outline.area > 0.8 * PASSING.area


def test_explaining_a_region_reads_the_maps_tiles_and_finds_the_blurred_ones(mapped_40x):
    """``explain --region`` in level-0 px of a 40× slide: the region x, y 224–672 lies across the
    four assessed tiles, read as the map read them (their probabilities are the map's), and
    defocus is found in the two blurred ones only."""
    from slideiqa.explain.heatmaps import explain_slide_region

    quality = open_map(mapped_40x.path)
    explanation, tiles = explain_slide_region(quality.attributes["slide"]["path"], (224, 224, STEP, STEP))
    assert (tiles.row0, tiles.col0, tiles.rows, tiles.cols) == (0, 0, 2, 2)
    probs = np.moveaxis(quality.array("probs")[:, :2, :2], 0, -1).reshape(4, -1)
    alone = [i for i, name in enumerate(quality.classes) if name not in ("good", "exposure")]  # tone aside
    np.testing.assert_allclose(explanation.probabilities[:, alone], probs[:, alone], atol=1e-5)
    assert explanation.found_tiles("defocus").tolist() == [True, False, True, False]
    assert explanation.image.shape[:2] == (448, 448)  # two tiles a side at the model's 0.5 µm/px
