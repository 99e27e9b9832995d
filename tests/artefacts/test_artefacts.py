"""Pen ink found on the slide thumbnail, checked against a real pen image and its real mask."""

import json

import numpy as np
import pytest
from PIL import Image

from slideiqa import map_slide, open_map
from slideiqa.artefacts.pen import pen_mask
from slideiqa.artefacts.registry import ARTEFACT_TILE_SHARE
from slideiqa.io.grid import TileGrid, tile_fractions
from slideiqa.io.slide import open_slide
from slideiqa.outputs.palette import class_colour
from slideiqa.outputs.store import FIXED_LABELS
from slideiqa.outputs.summary import MapSummary

from paths import CMU_SLIDE, TEST_DATA
from slides import enlarged_slide

PEN = FIXED_LABELS["pen"]

PEN_IMAGE = TEST_DATA / "artefacts" / "histoqc_pen__1k_version__pen_green.png"
#: Enlarged 6× at 0.5 µm/px, the 1000 px thumbnail becomes a 6000 px slide the model can map.
FACTOR = 6


@pytest.fixture(scope="module")
def pen_image():
    image = np.asarray(Image.open(PEN_IMAGE).convert("RGB"))
    mask = np.asarray(Image.open(PEN_IMAGE.with_name(PEN_IMAGE.stem + "_mask.png")).convert("L")) > 0
    return image, mask


@pytest.fixture(scope="module")
def pen_map(pen_image, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pen")
    slide = enlarged_slide(folder / "pen.tif", pen_image[0], FACTOR)
    return map_slide(slide, folder / "pen.quality.zarr")


@pytest.mark.parametrize("um_per_px", [15.0, 30.0])  # the image does not state its scale
def test_pen_mask_matches_the_real_mask(pen_image, um_per_px):
    image, truth = pen_image
    found = pen_mask(image, um_per_px)
    assert (found & truth).sum() / (found | truth).sum() >= 0.6


def test_a_fine_thumbnail_is_shaped_at_the_working_scale(pen_image):
    """A small slide's thumbnail can be finer than a µm per pixel: the same ink is found there as at
    the real image's own scale (the shaping then runs on a shrunk copy, not with disks hundreds of
    pixels wide)."""
    image, truth = pen_image
    rows, cols = np.nonzero(truth)
    y, x = max(0, int(np.median(rows)) - 75), max(0, int(np.median(cols)) - 75)
    crop, crop_truth = image[y : y + 150, x : x + 150], truth[y : y + 150, x : x + 150]
    assert crop_truth.mean() > 0.05
    # The same glass at 16× the pixels: 30 µm/px becomes 1.875 µm/px, shaped on a copy shrunk twice.
    enlarged = np.repeat(np.repeat(crop, 16, axis=0), 16, axis=1)
    found = pen_mask(enlarged, 30.0 / 16)
    expected = np.repeat(np.repeat(crop_truth, 16, axis=0), 16, axis=1)
    assert (found & expected).sum() / (found | expected).sum() >= 0.6


@pytest.mark.parametrize("side", [256, 400, 800])  # thumbnails of 3–9 µm/px, as maps of small slides take
def test_clean_tissue_has_no_pen(side):
    """Dense eosin passes the red-ink colour rule pixel by pixel here and there; it must not make a mark."""
    with open_slide(CMU_SLIDE) as slide:
        thumbnail = slide.thumbnail(side)
        um_per_px = slide.dimensions[0] * slide.mpp / thumbnail.shape[1]
    assert not pen_mask(thumbnail, um_per_px).any()


def test_a_real_pen_slide_maps_pen_where_its_mask_says(pen_image, pen_map):
    quality = open_map(pen_map.path)
    label = quality.array("label")
    height, width = pen_image[1].shape
    grid = TileGrid(width * FACTOR, height * FACTOR, 0.5, 0.5, 224)
    inked = tile_fractions(pen_image[1], grid)
    pen = label == PEN
    under_ink = (inked >= ARTEFACT_TILE_SHARE) & (label > 0)  # tissue tiles the mask puts under ink
    assert under_ink.sum() >= 15
    assert (pen & under_ink).sum() >= 0.9 * under_ink.sum()
    assert not (pen & (inked == 0)).any()  # never pen where the mask has no ink
    assert np.isnan(quality.array("score")[pen]).all()

    summary = pen_map.summary
    assert summary.artefact_tiles["pen"] == pen.sum()
    assert summary.share_per_class["pen"] == pytest.approx(pen.sum() / summary.tissue_tiles)
    assert "lie under pen ink" in pen_map.warnings[0]
    assert json.loads((pen_map.path / "summary.json").read_text())["warnings"][0] == {
        "code": "pen",
        "count": int(pen.sum()),
        "message": pen_map.warnings[0],
    }
    features = json.loads((pen_map.path / "regions.geojson").read_text())["features"]
    pens = [f for f in features if f["properties"]["classification"]["name"] == "pen"]
    assert sum(f["properties"]["measurements"]["tiles"] for f in pens) == pen.sum()
    assert all(f["properties"]["classification"]["color"] == class_colour("pen", 0)[:3] for f in pens)
    image_label = quality.image_label
    assert {"label-value": PEN, "class": "pen"} in image_label["properties"]


def test_without_artefact_detection_the_inked_tiles_are_assessed(pen_map, tmp_path):
    slide = pen_map.summary.slide
    plain = map_slide(slide, tmp_path / "plain.quality.zarr", find_artefacts=False)
    label = open_map(plain.path).array("label")
    assert not (label == PEN).any() and plain.summary.artefact_tiles["pen"] == 0
    inked = open_map(pen_map.path).array("label") == PEN
    assert (label[inked] > 0).all()  # the same tiles, now judged by the model


def test_artefacts_are_switched_on_and_off_one_by_one(pen_map, tmp_path):
    """A lab that finds one detector wrong for its slides turns that one off, and keeps the others."""
    slide = pen_map.summary.slide
    inked = open_map(pen_map.path).array("label") == PEN
    without_pen = map_slide(slide, tmp_path / "others.quality.zarr", artefacts=("debris", "fold", "edge", "bubble"))
    quality = open_map(without_pen.path)
    assert quality.attributes["settings"]["artefacts"] == ["edge", "bubble", "fold", "debris"]  # the order searched
    assert not (quality.array("label") == PEN).any() and without_pen.summary.artefact_tiles["pen"] == 0
    assert (quality.array("label")[inked] > 0).all()  # the inked tiles judged by the model instead
    only_pen = open_map(map_slide(slide, tmp_path / "pen.quality.zarr", artefacts=("pen",)).path)
    assert only_pen.attributes["settings"]["artefacts"] == ["pen"]
    assert (only_pen.array("label")[inked] == PEN).all()


def test_every_artefact_is_one_record():
    """Labels, colours, warnings and the settings' names all come from the registry's records."""
    from slideiqa.artefacts.registry import ARTEFACT_NAMES, ARTEFACTS
    from slideiqa.outputs.palette import CLASS_COLOURS
    from slideiqa.outputs.store import UNREADABLE
    from slideiqa.pipeline.finish import map_warnings

    names, labels = [a.name for a in ARTEFACTS], [a.label for a in ARTEFACTS]
    assert len(set(names)) == len(names) and len(set(labels)) == len(labels) and UNREADABLE not in labels
    assert min(labels) >= 128  # far above any model's class values (1 … classes)
    assert sorted(ARTEFACT_NAMES) == sorted(names)
    for artefact in ARTEFACTS:
        assert callable(artefact.find)
        assert FIXED_LABELS[artefact.name] == artefact.label
        assert CLASS_COLOURS[artefact.name] == list(artefact.colour)
        (warning,) = map_warnings(MapSummary.from_dict({"artefact_tiles": {artefact.name: 3}}))
        assert warning.code == artefact.name and artefact.finds in warning.message
        assert artefact.advice in warning.message
    thumbnail = sorted(a.claim for a in ARTEFACTS if a.scale == "thumbnail")
    assert len(set(thumbnail)) == len(thumbnail)  # two detectors never tie for the same pixels
