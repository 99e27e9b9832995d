"""The usable-tissue mask: tissue in tiles that pass, at a chosen µm/px, as PNG and QuPath GeoJSON."""

import json
import shutil

import numpy as np
import pytest
import shapely
from PIL import Image

from slideiqa.io.slide import open_slide
from slideiqa.measure.tissue import tissue_mask
from slideiqa.outputs.store import open_map
from slideiqa.outputs.usable import mask_geojson, usable_tissue

from support import one_error_line as _one_error_line
from support import run_command as _run

UM_PER_PX = 4.0  # the phantom's 112 µm tiles are 28 mask pixels across


def _per_tile(mask: np.ndarray, tiles: tuple[int, int]) -> np.ndarray:
    """Share of each tile's mask pixels that are True (the phantom's tiles are whole mask pixels)."""
    side = mask.shape[0] // tiles[0]
    return mask[: side * tiles[0], : side * tiles[1]].reshape(tiles[0], side, tiles[1], side).mean((1, 3))


def test_usable_tissue_is_the_tissue_of_the_tiles_that_pass(phantom_map):
    quality = open_map(phantom_map.path)
    score, label = quality.array("score"), quality.array("label")
    usable = usable_tissue(phantom_map.path, UM_PER_PX)
    assert usable.um_per_px == pytest.approx(UM_PER_PX, rel=0.01)
    assert usable.mask.shape == (224, 224)
    share = _per_tile(usable.mask, score.shape)
    passing = (score >= 0.5) & (label > 0)
    failing = (score < 0.5) & (label > 0)
    assert passing.sum() >= 25 and failing.sum() >= 12  # the phantom's defocused and noisy rectangles fail
    assert (share[failing] == 0).all()  # nothing of a failing tile is usable, however much tissue it holds
    # Inside the passing tiles the mask is the tissue at the chosen scale, not the whole tile.
    with open_slide(quality.attributes["slide"]["path"]) as slide:
        tissue = tissue_mask(slide.thumbnail(224))
    assert not (usable.mask & ~tissue).any()
    in_passing = np.kron(passing, np.ones((28, 28), bool))
    # ... less the cells (16 µm, 4 mask pixels) that the map's cell arrays find defective.
    cell_score, cell_label = quality.array("cell_score"), quality.array("cell_label")
    cell_passes = np.kron(
        (cell_score >= 0.5) & (cell_label >= 1) & (cell_label <= len(quality.classes)), np.ones((4, 4), bool)
    )
    expected = tissue & cell_passes
    assert (usable.mask[in_passing] == expected[in_passing]).mean() >= 0.99
    assert (tissue & ~cell_passes)[in_passing].sum() > 0  # the cells do take something out
    assert _per_tile(tissue, score.shape)[passing].min() < 0.9  # some of them are partly glass
    stricter = usable_tissue(phantom_map.path, UM_PER_PX, threshold=0.99)
    assert stricter.mask.sum() < usable.mask.sum() and not (stricter.mask & ~usable.mask).any()


def test_geojson_outlines_the_mask_in_level0_pixels(phantom_map):
    usable = usable_tissue(phantom_map.path, UM_PER_PX)
    collection = mask_geojson(usable)
    assert collection["features"]
    area_um2, outlines = 0.0, []
    for feature in collection["features"]:
        properties = feature["properties"]
        assert properties["objectType"] == "annotation"
        assert properties["classification"]["name"] == "usable tissue"
        area_um2 += properties["measurements"]["area µm^2"]
        outline = shapely.geometry.shape(feature["geometry"])
        assert outline.is_valid and min(outline.bounds) >= 0 and max(outline.bounds) <= 224 * 8  # level-0 px
        outlines.append(outline)
    assert area_um2 == pytest.approx(usable.area_um2, rel=1e-6)
    # Pixel centres inside the outlines, back on the mask's grid: the same pixels, give or take the
    # half-pixel simplification along the outline.
    rows, cols = np.mgrid[0:224, 0:224]
    x = (cols + 0.5) * usable.level0_per_px[0]
    y = (rows + 0.5) * usable.level0_per_px[1]
    redrawn = shapely.contains_xy(shapely.union_all(outlines), x, y)
    iou = (redrawn & usable.mask).sum() / (redrawn | usable.mask).sum()
    assert iou >= 0.97


def test_cli_writes_png_with_its_scale_and_geojson(phantom_map, tmp_path):
    out = tmp_path / "usable.png"
    result = _run("slideiqa.cli.app", "usable", phantom_map.path, "-o", out, "--um-per-px", UM_PER_PX)
    assert result.returncode == 0, result.stderr
    picture = Image.open(out)
    assert picture.size == (224, 224) and picture.mode == "L"
    assert picture.info["dpi"][0] == pytest.approx(25_400 / UM_PER_PX, rel=0.01)
    pixels = np.asarray(picture)
    assert set(np.unique(pixels)) == {0, 255}
    assert (pixels > 0).sum() == usable_tissue(phantom_map.path, UM_PER_PX).mask.sum()
    assert json.loads(out.with_suffix(".geojson").read_text())["features"]


def test_bad_requests_are_one_line_errors_and_write_nothing(phantom_map, phantom, tmp_path):
    out = tmp_path / "usable.png"
    _one_error_line(
        _run("slideiqa.cli.app", "usable", phantom_map.path, "-o", out, "--um-per-px", 0.1),
        "at least the slide's own 0.5 µm/px",
    )
    _one_error_line(
        _run("slideiqa.cli.app", "usable", tmp_path / "none.quality.zarr", "-o", out), "no such quality map"
    )
    other = tmp_path / "other.tif"
    shutil.copy(phantom, other)
    with open(other, "r+b") as handle:  # the same size, other content
        handle.seek(other.stat().st_size // 2)
        handle.write(b"\x00" * 64)
    _one_error_line(
        _run("slideiqa.cli.app", "usable", phantom_map.path, "-o", out, "--slide", other),
        "other.tif",
        "not the slide this map was made from",
    )
    _one_error_line(
        _run("slideiqa.cli.app", "usable", phantom_map.path, "-o", out, "--slide", tmp_path / "gone.tif"),
        "gone.tif",
        "not there",
    )
    missing = tmp_path / "missing" / "usable.png"
    _one_error_line(_run("slideiqa.cli.app", "usable", phantom_map.path, "-o", missing), f"{missing}: No such file")
    assert not list(tmp_path.glob("usable*")) and not list(tmp_path.glob(".usable*"))


def test_an_unfinished_map_has_no_usable_mask(phantom_map, tmp_path):
    partial = tmp_path / "partial.quality.zarr"
    shutil.copytree(phantom_map.path, partial)
    from slideiqa.outputs.store import open_for_update, update_attributes

    update_attributes(open_for_update(partial), status="running")
    _one_error_line(
        _run("slideiqa.cli.app", "usable", partial, "-o", tmp_path / "u.png"), "partial.quality.zarr", "not complete"
    )
    assert not (tmp_path / "u.png").exists()
