"""Coverslip edges found on the slide thumbnail, checked against HistoQC's real edge images and masks."""

import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from slideiqa import map_slide, open_map
from slideiqa.artefacts.coverslip import edge_mask
from slideiqa.artefacts.pen import disk
from slideiqa.artefacts.registry import EDGE_TILE_SHARE
from slideiqa.io.grid import TileGrid, tile_fractions
from slideiqa.io.slide import open_slide
from slideiqa.outputs.palette import class_colour
from slideiqa.outputs.store import FIXED_LABELS

from paths import CMU_SLIDE, TEST_DATA
from slides import enlarged_slide

EDGE = FIXED_LABELS["edge"]
PEN = FIXED_LABELS["pen"]

ARTEFACTS = TEST_DATA / "artefacts"
EDGE_IMAGES = [
    "histoqc_models__coverslip_edge_he__coverslip_edge",
    "histoqc_models__coverslip_edge_ihc__coverslip_edge",
]
#: The H&E image's left 300 columns (the edge and the tissue it crosses), enlarged 16× at 0.5 µm/px:
#: the thumbnail then shows it at 8 µm/px, the scale the masks fit.
CROP_COLUMNS, FACTOR = 300, 16


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(Image.open(ARTEFACTS / f"{name}.png").convert("RGB"))
    mask = np.asarray(Image.open(ARTEFACTS / f"{name}_mask.png").convert("L")) > 0
    return image, mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("name", EDGE_IMAGES)
@pytest.mark.parametrize("um_per_px", [8.0, 15.0])  # the images do not state their scale
def test_edge_mask_matches_the_real_mask(name, um_per_px):
    image, truth = load(name)
    assert iou(edge_mask(image, um_per_px), truth) >= 0.6


def test_a_fine_thumbnail_finds_the_same_edge():
    """A thumbnail finer than the working scale is shrunk to it: the same glass at twice the pixels
    (and half the µm per pixel) gives the same line."""
    image, truth = load(EDGE_IMAGES[1])
    enlarged = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)
    found = edge_mask(enlarged, 7.5)
    assert iou(found, np.repeat(np.repeat(truth, 2, axis=0), 2, axis=1)) >= 0.6


@pytest.mark.parametrize("um_per_px", [8.0, 15.0])
def test_pen_ink_and_its_tissue_are_not_an_edge(um_per_px):
    """HistoQC's pen image: a green circle, dark tissue, no coverslip edge."""
    image, _ = load("histoqc_pen__1k_version__pen_green")
    assert not edge_mask(image, um_per_px).any()


@pytest.mark.parametrize("side", [256, 800])
def test_clean_tissue_has_no_edge(side):
    with open_slide(CMU_SLIDE) as slide:
        thumbnail = slide.thumbnail(side)
        um_per_px = slide.dimensions[0] * slide.mpp / thumbnail.shape[1]
    assert not edge_mask(thumbnail, um_per_px).any()


def test_a_straight_dark_line_on_glass_is_an_edge_and_a_short_one_is_not():
    """The rule in its own terms: long, straight, thin, darker than the glass on both sides."""
    glass = np.full((400, 600, 3), 225, np.uint8)
    glass[200:205, 20:580] = 150  # 5.6 mm long, 50 µm wide at 10 µm/px
    glass[100:104, 300:400] = 150  # 1 mm: a fibre, not an edge
    found = edge_mask(glass, 10.0)
    assert found[200:205, 40:560].mean() > 0.9
    assert not found[90:115, 290:410].any()
    assert not found[:190].any() and not found[215:].any()


@pytest.fixture(scope="module")
def edge_map(tmp_path_factory):
    image, mask = load(EDGE_IMAGES[0])
    folder = tmp_path_factory.mktemp("edge")
    slide = enlarged_slide(folder / "edge.tif", np.ascontiguousarray(image[:, :CROP_COLUMNS]), FACTOR)
    return map_slide(slide, folder / "edge.quality.zarr"), mask[:, :CROP_COLUMNS]


def test_a_real_edge_slide_maps_edge_where_its_mask_says(edge_map):
    result, mask = edge_map
    quality = open_map(result.path)
    label = quality.array("label")
    height, width = mask.shape
    grid = TileGrid(width * FACTOR, height * FACTOR, 0.5, 0.5, 224)
    on_line = tile_fractions(mask, grid)
    edge = label == EDGE
    crossed = (on_line >= EDGE_TILE_SHARE) & (label > 0)  # tissue tiles the mask's lines cross
    # The mask's wide band (what survives an opening 50 µm across): the bevelled edge itself. The thin
    # lines beside it are fainter, and one crosses the tissue where only its shadow shows (measured:
    # 76 of 78 band tiles, 102 of 143 tiles in all).
    band = tile_fractions(ndimage.binary_opening(mask, disk(3)), grid) >= EDGE_TILE_SHARE
    assert (band & crossed).sum() >= 50
    assert (edge & band & crossed).sum() >= 0.9 * (band & crossed).sum()
    assert (edge & crossed).sum() >= 0.6 * crossed.sum()
    assert not (edge & ~ndimage.binary_dilation(on_line > 0)).any()  # never an edge a tile away from the line
    assert not (label == PEN).any()  # the black band is not taken for black ink
    assert np.isnan(quality.array("score")[edge]).all()

    summary = result.summary
    assert summary.artefact_tiles["edge"] == edge.sum()
    assert summary.share_per_class["edge"] == pytest.approx(edge.sum() / summary.tissue_tiles)
    assert any("crossed by a coverslip or slide edge" in warning for warning in result.warnings)
    features = json.loads((result.path / "regions.geojson").read_text())["features"]
    edges = [f for f in features if f["properties"]["classification"]["name"] == "edge"]
    assert sum(f["properties"]["measurements"]["tiles"] for f in edges) == edge.sum()
    assert all(f["properties"]["classification"]["color"] == class_colour("edge", 0)[:3] for f in edges)
    assert {"label-value": EDGE, "class": "edge"} in quality.image_label["properties"]

    overview = np.asarray(Image.open(result.path / "overview.png").convert("RGB")).astype(int)
    swatch = np.abs(overview - np.array(class_colour("edge", 0)[:3])).max(axis=-1) <= 12
    assert swatch.sum() >= 13 * 13  # the legend's swatch (inside its outline); tiles are blended over the slide
