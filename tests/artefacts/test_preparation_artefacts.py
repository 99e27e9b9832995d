"""Folds, air bubbles and debris: found where synthetic ones were drawn, not on clean tissue, and
mapped end to end as their own classes in the map, summary, warnings and GeoJSON."""

import csv
import html
import json

import numpy as np
import pytest
from PIL import Image

from slideiqa import map_slide, open_map
from slideiqa.artefacts.bubbles import bubble_mask
from slideiqa.artefacts.debris import debris_tiles, density_shrunk, specks_in_tiles
from slideiqa.artefacts.folds import fold_mask
from slideiqa.artefacts.registry import ARTEFACT_TILE_SHARE
from slideiqa.batch.report import record_from_summary, write_reports
from slideiqa.io.grid import TileGrid, tile_fractions
from slideiqa.io.slide import open_slide
from slideiqa.outputs.palette import class_colour
from slideiqa.outputs.store import FIXED_LABELS
from slideiqa.outputs.summary import MapSummary
from slideiqa.synthetic.artefacts import add_artefact
from slideiqa.synthetic.distortions import distort

from paths import CMU_SLIDE, TEST_DATA
from slides import write_pyramidal_tiff

BUBBLE = FIXED_LABELS["bubble"]
DEBRIS = FIXED_LABELS["debris"]
FOLD = FIXED_LABELS["fold"]

HELDOUT = TEST_DATA / "heldout"
MPP = 0.5
THUMBNAIL_UM = 5.0  # a small slide's thumbnail scale


@pytest.fixture(scope="module")
def tumour_slide_pixels(tumour_field):
    """A 1 × 1 mm slide at 0.5 µm/px: the H&E field and its mirror images, 2 × 2."""
    top = np.concatenate([tumour_field, tumour_field[:, ::-1]], axis=1)
    return np.ascontiguousarray(np.concatenate([top, top[::-1]], axis=0))


def _thumbnail(image: np.ndarray, um_per_px: float = THUMBNAIL_UM) -> np.ndarray:
    factor = um_per_px / MPP
    size = (round(image.shape[1] / factor), round(image.shape[0] / factor))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))


def _tiles_under(mask: np.ndarray, um_per_px: float = THUMBNAIL_UM) -> np.ndarray:
    grid = TileGrid(mask.shape[1], mask.shape[0], um_per_px, MPP, 224)
    return tile_fractions(mask, grid) >= ARTEFACT_TILE_SHARE


@pytest.mark.parametrize("kind, find", [("fold", fold_mask), ("bubble", bubble_mask)])
def test_thumbnail_detectors_find_synthetic_artefacts(tumour_slide_pixels, kind, find):
    hits = total = 0
    for seed in range(3):
        drawn, truth = add_artefact(kind, tumour_slide_pixels, 0.6, MPP, seed=seed)
        small_truth = _thumbnail(truth.astype(np.uint8) * 255)
        under = _tiles_under(small_truth > 127)
        found = _tiles_under(find(_thumbnail(drawn), THUMBNAIL_UM))
        hits, total = hits + int((found & under).sum()), total + int(under.sum())
        grid = TileGrid(small_truth.shape[1], small_truth.shape[0], THUMBNAIL_UM, MPP, 224)
        assert not (found & (tile_fractions(small_truth > 0, grid) == 0)).any()  # never where it is not
    assert total >= 10 and hits >= 0.8 * total, (hits, total)


@pytest.mark.parametrize("side", [256, 400])
def test_clean_slides_have_no_fold_or_bubble(tumour_slide_pixels, side):
    with open_slide(CMU_SLIDE) as slide:
        thumbnail = slide.thumbnail(side)
        um_per_px = slide.dimensions[0] * slide.mpp / thumbnail.shape[1]
    for image, scale in ((thumbnail, um_per_px), (_thumbnail(tumour_slide_pixels), THUMBNAIL_UM)):
        assert not fold_mask(image, scale).any()
        assert not bubble_mask(image, scale).any()


@pytest.fixture(scope="module")
def clean_tiles():
    """The committed held-out tiles (never in the shipped model's training), tissue and smear."""
    return np.stack([np.asarray(Image.open(path).convert("RGB"))[:224, :224] for path in sorted(HELDOUT.glob("*.png"))])


def test_debris_is_found_in_tiles_and_nothing_else_is(clean_tiles, tissue_crop):
    """Faint particles (severity 0.3) are found on every tile but the dense dark tumour of HistoQC's
    template, where they take the haematoxylin's colour (the colour rule that keeps DAB and dyes from
    being debris; ``benchmarks/README.md``, synthetic debris); from severity 0.5 on every tile."""
    tiles = np.concatenate([clean_tiles, tissue_crop[None]])
    names = [path.name for path in sorted(HELDOUT.glob("*.png"))] + ["tissue_crop"]
    assert not debris_tiles(tiles, MPP).any()
    for severity, may_miss in ((0.3, {"histoqc_templates__template3.png"}), (0.5, set())):
        dirty = np.stack([add_artefact("debris", tile, severity, MPP, seed=i)[0] for i, tile in enumerate(tiles)])
        missed = {name for name, found in zip(names, debris_tiles(dirty, MPP)) if not found}
        assert missed <= may_miss, (severity, missed)
    for family in ("noise", "jpeg", "defocus"):  # acquisition defects at their floors are not debris
        degraded = np.stack([distort(tile, family, 0.5, mpp=MPP, seed=i) for i, tile in enumerate(tiles)])
        assert not debris_tiles(degraded, MPP).any(), family
    assert debris_tiles(tiles[:0], MPP).shape == (0,)


def test_debris_averages_densities_so_a_stain_keeps_its_colour():
    """Stains add in optical density. A 16 µm speck of DAB over haematoxylin (a Ki67-positive
    nucleus) in stripes 2 px wide with glass between, shrunk to 2 µm/px, has half the stain's
    density in each channel: still the stain's colour (green in excess), so not debris; a grey speck
    of that density is debris. Averaged as light, the dense channels saturate towards the glass and
    the speck turned grey: debris (what the every-other-pixel shrink before said of it)."""
    stain = np.array([0.65, 0.70, 0.29]) + np.array([0.27, 0.57, 0.78])
    glass, patch = 0.04, (slice(96, 128), slice(96, 128))  # 16 µm at 0.5 µm/px
    stripes = np.where((np.arange(32) // 2 % 2 == 0)[None, :, None], stain, glass)
    striped, grey = np.full((224, 224, 3), glass), np.full((224, 224, 3), glass)
    striped[patch] = np.broadcast_to(stripes, (32, 32, 3))
    grey[patch] = (stain + glass).mean() / 2
    pixels = np.clip(np.rint(255 * 10.0 ** -np.stack([striped, grey])), 0, 255).astype(np.uint8)
    shrunk = density_shrunk(pixels, 4)
    assert shrunk.shape == (2, 3, 56, 56)
    np.testing.assert_allclose(shrunk[0, :, 28, 28], (stain + glass) / 2, atol=0.01)
    assert debris_tiles(pixels, 0.5).tolist() == [False, True]


def _with_speck(tile: np.ndarray, od: tuple[float, float, float], radius_um: float = 6.0) -> np.ndarray:
    """``tile`` with a disk of optical density ``od`` (R, G, B) at its centre (Beer–Lambert)."""
    yy, xx = np.mgrid[: tile.shape[0], : tile.shape[1]]
    disk = np.hypot(yy - tile.shape[0] / 2, xx - tile.shape[1] / 2) <= radius_um / MPP
    specked = tile.astype(np.float64)
    specked[disk] *= 10.0 ** -np.asarray(od)
    return np.clip(np.rint(specked), 0, 255).astype(np.uint8)


def test_green_marking_dye_is_named_not_called_debris(clean_tiles):
    """A 12 µm speck of green grossing ink (absorbing red most, green least) is dye, not debris, on
    every held-out tile; a grey one of the same size is not dye (over glass it is debris); clean tiles
    of every held-out source — H&E, smears, dense tumour — hold neither."""
    dirt, dye = specks_in_tiles(clean_tiles, MPP)
    assert not dirt.any() and not dye.any()
    dirt, dye = specks_in_tiles(np.stack([_with_speck(tile, (0.9, 0.25, 0.6)) for tile in clean_tiles]), MPP)
    assert dye.all() and not dirt.any(), (dye, dirt)
    # Faint ink is still dye; over pink eosin its density and the eosin's add up to a grey at its core,
    # but its rim keeps the dye's colour, and a grey speck touching dye is dye, not debris.
    dirt, dye = specks_in_tiles(np.stack([_with_speck(tile, (0.5, 0.1, 0.35)) for tile in clean_tiles]), MPP)
    assert dye.all() and dirt.sum() == 0, (dye, dirt)
    dirt, dye = specks_in_tiles(np.stack([_with_speck(tile, (0.6, 0.6, 0.6)) for tile in clean_tiles]), MPP)
    assert not dye.any()
    glass = np.full((1, 224, 224, 3), 235, np.uint8)
    assert specks_in_tiles(_with_speck(glass[0], (0.6, 0.6, 0.6))[None], MPP)[0].all()
    np.testing.assert_array_equal(debris_tiles(clean_tiles, MPP), specks_in_tiles(clean_tiles, MPP)[0])


@pytest.fixture(scope="module")
def artefact_map(tumour_slide_pixels, tmp_path_factory):
    """The 1 mm slide with a fold across its top half, a bubble in its lower left and debris in its
    lower right quarter, mapped; with the masks of each."""
    image = tumour_slide_pixels.copy()
    half = image.shape[0] // 2
    top, fold = add_artefact("fold", np.ascontiguousarray(image[:half]), 0.5, MPP, seed=1)
    image[:half] = top
    corner = np.s_[half:, : image.shape[1] // 2]
    image[corner], bubble = add_artefact("bubble", np.ascontiguousarray(image[corner]), 0.7, MPP, seed=0)
    dirty = np.s_[half:, image.shape[1] // 2 :]
    image[dirty], debris = add_artefact("debris", np.ascontiguousarray(image[dirty]), 0.6, MPP, seed=2)
    masks = {name: np.zeros(image.shape[:2], bool) for name in ("fold", "bubble", "debris")}
    masks["fold"][:half], masks["bubble"][corner], masks["debris"][dirty] = fold, bubble, debris
    folder = tmp_path_factory.mktemp("preparation")
    slide = write_pyramidal_tiff(folder / "artefacts.tif", image, mpp=MPP, levels=3, compression="zlib")
    return map_slide(slide, folder / "artefacts.quality.zarr"), masks


def test_folds_bubbles_and_debris_are_mapped_as_their_own_classes(artefact_map):
    result, masks = artefact_map
    quality = open_map(result.path)
    label = quality.array("label")
    grid = TileGrid(masks["fold"].shape[1], masks["fold"].shape[0], MPP, MPP, 224)
    under = {name: tile_fractions(mask, grid) for name, mask in masks.items()}
    # How often each is found is measured above and in benchmarks/synthetic_artefacts.py; here, that
    # the map labels them where they are and nowhere else. A fold is found by being darker than the
    # rest of the slide: where the tissue folded over is pale (this fold's left end) it is missed.
    for name, value, share in (("fold", FOLD, 0.6), ("bubble", BUBBLE, 0.8)):
        truth = under[name] >= ARTEFACT_TILE_SHARE
        assert truth.sum() >= 4
        assert ((label == value) & truth).sum() >= share * truth.sum(), name
        assert not ((label == value) & (under[name] == 0)).any(), name
    debris = label == DEBRIS
    # Particles cover a few % of a tile; those not claimed by a thumbnail artefact first are debris.
    # Faint ones over haematoxylin take its green excess and are missed (debris.GREEN_EXCESS, which
    # keeps DAB over haematoxylin out of debris): 6 of these 9 tiles are found.
    particles = (under["debris"] >= 0.03) & ~np.isin(label, [FOLD, BUBBLE])
    assert particles.sum() >= 6 and (debris & particles).sum() >= 0.6 * particles.sum()
    # Debris only where particles are, or where a bubble's colourless rim runs into a tile the
    # bubble itself covers too little of to claim.
    assert not (debris & (under["debris"] == 0) & (under["bubble"] == 0)).any()
    assert np.isnan(quality.array("score")[label >= min(FIXED_LABELS.values())]).all()  # not judged by the CNN

    summary = result.summary
    for name, value in (("fold", FOLD), ("bubble", BUBBLE), ("debris", DEBRIS)):
        assert summary.artefact_tiles[name] == (label == value).sum()
        assert any(f"labelled {name} in the map" in warning for warning in result.warnings)
    # The warnings are kept in summary.json and reach the batch's reports, not only the terminal.
    kept = json.loads((result.path / "summary.json").read_text())["warnings"]
    assert {w["code"]: w["count"] for w in kept if w["code"] in ("fold", "bubble", "debris")} == {
        name: (label == value).sum() for name, value in (("fold", FOLD), ("bubble", BUBBLE), ("debris", DEBRIS))
    }
    assert [w["message"] for w in kept] == result.warnings
    write_reports(
        [
            record_from_summary(
                str(result.path),
                str(result.path),
                "mapped",
                MapSummary.from_dict(json.loads((result.path / "summary.json").read_text())),
            )
        ],
        result.path.parent,
        {"model": "default", "verdict_rule": "rule"},
    )
    assert json.loads((result.path.parent / "report.json").read_text())["slides"][0]["warnings"] == kept
    row = next(csv.DictReader((result.path.parent / "report.csv").read_text().splitlines()))
    assert row["warnings"] == "; ".join(f"{w['code']} {w['count']}" for w in kept)
    page = (result.path.parent / "report.html").read_text()
    assert all(html.escape(w["message"]) in page for w in kept)
    features = json.loads((result.path / "regions.geojson").read_text())["features"]
    for name, value in (("fold", FOLD), ("bubble", BUBBLE), ("debris", DEBRIS)):
        regions = [f for f in features if f["properties"]["classification"]["name"] == name]
        assert sum(f["properties"]["measurements"]["tiles"] for f in regions) == (label == value).sum()
        assert all(f["properties"]["classification"]["color"] == class_colour(name, 0)[:3] for f in regions)
        assert {"label-value": value, "class": name} in quality.image_label["properties"]


def test_without_artefact_detection_every_tile_is_judged_by_the_model(artefact_map, tmp_path):
    result, _ = artefact_map
    plain = map_slide(result.summary.slide, tmp_path / "plain.quality.zarr", find_artefacts=False)
    label = open_map(plain.path).array("label")
    assert not np.isin(label, [FOLD, BUBBLE, DEBRIS]).any()
    assert plain.summary.artefact_tiles["debris"] == 0


def test_a_band_darkened_by_too_little_light_is_not_a_fold(tumour_slide_pixels):
    """The synthetic fold's band, darkened instead by OpenCV's gain × ½ (a stripe of too little
    light): as dark as the fold, but its excess density is the same in every channel, not the
    tissue's colour, so it is left to the model and the slide's tone instead of being called a fold."""
    import cv2

    hits = total = 0
    for seed in range(3):
        folded, band = add_artefact("fold", tumour_slide_pixels, 0.6, MPP, seed=seed)
        darkened = tumour_slide_pixels.copy()
        darkened[band] = cv2.convertScaleAbs(tumour_slide_pixels[band], alpha=0.5)
        under = _tiles_under(_thumbnail(band.astype(np.uint8) * 255) > 127)
        hits += int((_tiles_under(fold_mask(_thumbnail(folded), THUMBNAIL_UM)) & under).sum())
        total += int(under.sum())
        assert not fold_mask(_thumbnail(darkened), THUMBNAIL_UM).any()
    assert hits >= 0.8 * total, (hits, total)  # the fold itself is still found


def test_tile_artefacts_are_looked_for_through_their_records_one_by_one(artefact_map, tmp_path):
    """The block task runs every tile artefact the map's list names (debris is one), through its
    record's detector: the full map's debris tiles are labelled again with only debris on, and none
    with every artefact on but debris."""
    from slideiqa.artefacts.registry import BY_NAME, tile_artefacts

    assert [artefact.name for artefact in tile_artefacts()] == ["debris"]
    assert tile_artefacts(("pen", "fold")) == []
    result, _ = artefact_map
    label = open_map(result.path).array("label")
    debris, under_thumbnail_artefacts = label == DEBRIS, np.isin(label, [FOLD, BUBBLE])
    assert debris.any()
    # With only debris on, the tiles folds and bubbles claimed in the full map are assessed, and
    # some of them hold debris-like specks; elsewhere the same tiles are debris.
    only = open_map(map_slide(result.summary.slide, tmp_path / "only.quality.zarr", artefacts=("debris",)).path)
    found = only.array("label") == DEBRIS
    np.testing.assert_array_equal(found[~under_thumbnail_artefacts], debris[~under_thumbnail_artefacts])
    others = tuple(name for name in BY_NAME if name != "debris")
    without = map_slide(result.summary.slide, tmp_path / "without.quality.zarr", artefacts=others)
    assert not (open_map(without.path).array("label") == DEBRIS).any()
    assert without.summary.artefact_tiles["debris"] == 0
