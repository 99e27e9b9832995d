"""A corrupt tile inside a good slide costs that tile only: real files with garbage bytes in one
compressed tile, read by real OpenSlide (whose errors stick to the handle) and tifffile."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from slideiqa import map_slide, open_map
from slideiqa.io.slide import UnreadableRegion, open_slide
from slideiqa.outputs.store import UNREADABLE

from paths import ROOT
from slides import tiles_over, with_garbage_tile, write_pyramidal_tiff

#: The TIFF tile (256 px, 7 per row of the 1792 px phantom) in the middle of the slide: rows and
#: columns 3–4 of the 224 px map grid lie over it.
MIDDLE_TILE = 3 * 7 + 3
STEP = 224


def _regions(errors: list[str]) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) of each 'cannot decode the region x a–b, y c–d' message."""
    found = [re.search(r"x (\d+)–(\d+), y (\d+)–(\d+)", error) for error in errors]
    return [(int(m[1]), int(m[3]), int(m[2]), int(m[4])) for m in found if m]


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_a_clean_region_reads_right_after_a_corrupt_one_on_the_same_handle(phantom, tmp_path):
    corrupt = tmp_path / "corrupt.tif"
    box = with_garbage_tile(phantom, corrupt, MIDDLE_TILE)
    clean = (0, 1500), 0, (200, 200)
    with open_slide(phantom) as reference, open_slide(corrupt) as slide:
        assert slide.info.reader == "openslide"  # the reader whose errors are sticky
        with pytest.raises(UnreadableRegion, match="corrupt.tif: cannot decode the region") as error:
            slide.read_region((box[0] + 10, box[1] + 10), 0, (100, 100))
        assert _overlaps(_regions([str(error.value)])[0], box)
        np.testing.assert_array_equal(slide.read_region(*clean), reference.read_region(*clean))


def test_a_corrupt_tile_costs_only_the_map_tiles_over_it(phantom, phantom_map, tmp_path):
    corrupt = tmp_path / "corrupt.tif"
    box = with_garbage_tile(phantom, corrupt, MIDDLE_TILE)
    out = tmp_path / "corrupt.quality.zarr"
    # The default in-process cluster: threads share one OpenSlide handle, which the corrupt tile poisons.
    result = subprocess.run(
        [sys.executable, "-m", "slideiqa.cli.app", "map", str(corrupt), "-o", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Compute Failed" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert "tissue tiles cannot be decoded" in " ".join(result.stderr.split())  # a warning: on stderr

    reference, quality = open_map(phantom_map.path), open_map(out)
    label, expected_label = quality.array("label"), reference.array("label")
    over = tiles_over(box, STEP, label.shape) & (expected_label > 0)
    unreadable = int(over.sum())
    assert unreadable >= 3  # of the four tiles over it, those with tissue
    np.testing.assert_array_equal(label == UNREADABLE, over)
    assert np.isnan(quality.array("score")[over]).all()
    np.testing.assert_array_equal(label[~over], expected_label[~over])  # every other tile read and judged as before
    # Scores as before too, but for the tone check: each tile is judged against the slide's tone, whose
    # reference moves a little with the tiles lost, so a tile near its departure threshold moves (one
    # tile here, 0.05 → 0.003). None crosses the threshold, and nearly all are as they were.
    score, expected = quality.array("score")[~over], reference.array("score")[~over]
    np.testing.assert_array_equal(np.isnan(score), np.isnan(expected))
    assessed = ~np.isnan(expected)
    score, expected = score[assessed], expected[assessed]
    np.testing.assert_array_equal(score >= 0.5, expected >= 0.5)
    assert (np.abs(score - expected) <= 0.03).mean() >= 0.95, np.abs(score - expected).round(3)

    summary = json.loads((out / "summary.json").read_text())
    tissue = int((expected_label > 0).sum())
    below = int(np.sum(reference.array("score")[~over & (expected_label > 0)] < summary["threshold"]))
    assert summary["tissue_tiles"] == tissue and summary["unreadable_tiles"] == unreadable
    assert summary["share_per_class"]["unreadable"] == pytest.approx(unreadable / tissue)
    assert summary["share_below_threshold"] == pytest.approx((below + unreadable) / tissue)
    recorded = quality.attributes["unreadable"]
    assert sorted((r["row"], r["col"]) for r in recorded) == sorted(zip(*np.nonzero(over)))
    assert all(_overlaps(region, box) for region in _regions([r["error"] for r in recorded]))
    regions = json.loads((out / "regions.geojson").read_text())["features"]
    assert (
        sum(
            f["properties"]["measurements"]["tiles"]
            for f in regions
            if f["properties"]["classification"]["name"] == "unreadable"
        )
        == unreadable
    )


def test_a_corrupt_tile_in_a_slide_without_pyramid_is_unreadable_not_glass(phantom, phantom_map, tmp_path):
    """The tissue mask's thumbnail is read from the only level, so the corrupt tile hits it too:
    what the thumbnail cannot show is not taken for glass: its tiles are read, and the four over the
    corrupt tile found unreadable, glass or not."""
    with open_slide(phantom) as slide:
        pixels = slide.read_region((0, 0), 0, slide.dimensions)
    flat = write_pyramidal_tiff(tmp_path / "flat.tif", pixels, mpp=0.5, levels=1, compression="zlib")
    box = with_garbage_tile(flat, tmp_path / "flat_corrupt.tif", MIDDLE_TILE)
    result = map_slide(tmp_path / "flat_corrupt.tif", tmp_path / "flat.quality.zarr")
    label, expected_label = open_map(result.path).array("label"), open_map(phantom_map.path).array("label")
    over = tiles_over(box, STEP, label.shape)
    np.testing.assert_array_equal(label == UNREADABLE, over)
    assert np.all(label[expected_label > 0] > 0)  # no tissue tile lost
    assert result.summary.unreadable_tiles == 4 and "cannot be decoded" in result.warnings[0]
