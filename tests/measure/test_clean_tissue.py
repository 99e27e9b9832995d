"""Clean tissue of legitimate looks passes, and real defects are still flagged: dense dark tumour,
dark epidermis, oriented collagen, DAB over haematoxylin, pale stroma between nuclei, tissue that
runs to the field's border, a 20× scanner's 0.55 µm/px. Each field is mapped alone at its own scale, as a lab maps it;
the held-out measurement on many hospitals' fields is ``benchmarks/clean_tissue.py``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from slideiqa import map_slide, open_map
from slideiqa.artefacts.debris import debris_tiles
from slideiqa.io.edge_tiles import own_extent
from slideiqa.io.grid import TileGrid, mirrored_past_edge, read_plan, read_tile
from slideiqa.io.slide import open_slide
from slideiqa.measure.exposure_evidence import exposure_evidence, judge_exposure
from slideiqa.measure.tissue import tissue_mask
from slideiqa.outputs.store import MapError
from slideiqa.synthetic.distortions import exposure
from slideiqa_training.cross_implementation import degrade
from slideiqa_training.generalisation import FLOORS

from paths import CMU_SLIDE, HELDOUT, ROOT, TEST_DATA
from slides import write_pyramidal_tiff

CLEAN_LOOKS = TEST_DATA / "clean_looks"
DENSE = CLEAN_LOOKS / "histolab_high-nuclei-score-level0.png"
#: HistoQC's histogram templates, H&E of a source no model here saw (tests/data/PROVENANCE.md): oriented
#: collagen stroma with ducts, and dense dark tumour. About 1 µm/px, taken as 0.5, as the training
#: shows half its crops (up to 2× coarser than the model's scale).
UNSEEN_STROMA, UNSEEN_TUMOUR = (CLEAN_LOOKS / f"histoqc_templates__template{number}.png" for number in (1, 3))
HISTOART = next(path for path in HELDOUT if path.name == "histoart__artifact_free_1.png")


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _mapped(image: np.ndarray | Path, tmp_path: Path, mpp: float, name: str = "field"):
    path = image if isinstance(image, Path) else tmp_path / f"{name}.png"
    if not isinstance(image, Path):
        Image.fromarray(np.ascontiguousarray(image)).save(path)
    result = map_slide(path, tmp_path / f"{name}.quality.zarr", mpp=mpp, overwrite=True)
    return result.summary, open_map(result.path)


def test_dense_dark_tumour_whose_tissue_runs_to_the_border_passes(tmp_path):
    """Histolab's densest H&E field (956 × 779 px, so its last tiles run past the border): judged on
    white padding and called exposure, it failed with 32 % of its tiles; mirrored at the edge and with
    exposure judged by evidence, none is flagged."""
    summary, _ = _mapped(DENSE, tmp_path, 0.5)
    assert summary.verdict == "pass" and summary.share_below_threshold == 0.0
    assert summary.share_per_class["exposure"] == 0.0
    assert (summary.tone.glass_median or 0) < 250  # no white padding taken for glass


def test_the_quick_start_sample_passes_its_dark_epidermis_not_called_exposure(tmp_path):
    """The bundled clean Aperio scan failed its own quick start: dark epidermis called exposure, green
    marking-dye specks called debris (now named as dye in a warning). Its cells are judged by their tile's evidence, so none is
    called exposure either."""
    result = map_slide(CMU_SLIDE, tmp_path / "cmu.quality.zarr")
    assert result.summary.verdict == "pass"
    assert result.summary.share_per_class["exposure"] == 0.0 and result.summary.artefact_tiles["debris"] == 0
    # The dye is named for what it is, with no advice to clean the coverslip.
    dye = [warning for warning in result.summary.warnings if warning.code == "dye"]
    assert result.summary.dye_tiles >= 5 and len(dye) == 1 and dye[0].count == result.summary.dye_tiles
    assert "marking dye" in dye[0].message and "coverslip" not in dye[0].message
    quality = open_map(result.path)
    exposure_cells = quality.array("cell_probs")[list(quality.attributes["model"]["classes"]).index("exposure")]
    assert np.nanmax(exposure_cells) < 0.5
    # One tile of oblique collagen bundles under the epidermis still reads as a streak (motion_blur's
    # known weak spot); the other oriented dermis does not.
    assert result.summary.share_per_class["motion"] <= 1 / result.summary.tissue_tiles + 1e-9


def test_oriented_collagen_bundles_pass_and_the_same_field_streaked_fails(tmp_path):
    """Parallel collagen bundles of the sample's dermis (with green marking dye at the margin): fibre
    orientation is not a streak, so none of its tiles is motion; a 5 µm streak drawn by OpenCV's
    kernel (not slideiqa's) on the same field is found on most of them."""
    import openslide

    with openslide.OpenSlide(str(CMU_SLIDE)) as slide:
        field = np.asarray(slide.read_region((1380, 1900), 0, (672, 672)).convert("RGB"))
    summary, quality = _mapped(field, tmp_path, 0.499, "collagen")
    assert summary.verdict == "pass" and summary.share_below_threshold == 0.0
    assert summary.share_per_class["motion"] == 0.0 and summary.artefact_tiles["debris"] == 0
    streaked, _ = degrade(field, "motion", FLOORS["motion"], 0.5, np.random.default_rng(4), "opencv.filter2D-line")
    summary, _ = _mapped(streaked, tmp_path, 0.499, "collagen_streaked")
    assert summary.verdict == "fail" and summary.share_per_class["motion"] >= 0.5


def test_the_real_out_of_focus_tile_is_flagged_and_its_clean_sibling_passes(tmp_path):
    """HistoArtifacts' real out-of-focus tile and its artefact-free sibling, neither seen by any model
    here, each mapped alone (224 px, taken as 0.5 µm/px). The network passes the blurred one (P(good)
    0.95); its fine detail, gone in every direction over a tile full of tissue (−3.20 against its
    sibling's −0.71), is what calls it defocus (``measure/defocus_evidence.py``'s floor)."""
    clean, _ = _mapped(HISTOART, tmp_path, 0.5, "sibling")
    assert clean.verdict == "pass"
    blurred, _ = _mapped(TEST_DATA / "natural_focus" / "histoart_blur_1.png", tmp_path, 0.5, "blurred")
    assert blurred.verdict == "fail" and blurred.share_per_class["defocus"] == 1.0


def test_a_field_cut_at_its_border_is_judged_on_its_own_pixels(tmp_path, tumour_field):
    """A 700 px cut of a dense tumour field at 0.25 µm/px: its edge tiles hold 56 % and 12 % of a
    tile. They are judged on the image mirrored about the border, never on white."""
    cut = tumour_field[150:850, 150:850]
    summary, quality = _mapped(cut, tmp_path, 0.25)
    assert summary.verdict == "pass" and summary.share_below_threshold == 0.0
    rows, cols = quality.array("score").shape
    assert (rows, cols) == (2, 2) and np.isfinite(quality.array("score")[:, 1]).all()


def test_mirroring_past_the_edge_is_exact():
    grid = TileGrid(1000, 700, 0.25, 0.5, 224)  # steps of 448 px: the last column holds 104 px, the last row 252
    pixels = np.random.default_rng(0).integers(0, 255, (448, 448, 3), dtype=np.uint8)
    edge = mirrored_past_edge(pixels, grid, (896, 448))
    np.testing.assert_array_equal(edge[:252, :104], pixels[:252, :104])
    np.testing.assert_array_equal(edge[:252, 104:208], pixels[:252, 103::-1])
    np.testing.assert_array_equal(edge[252:448, :104], pixels[251:55:-1, :104])
    assert mirrored_past_edge(pixels, grid, (0, 0)) is pixels  # a tile wholly inside is untouched


def test_an_edge_tile_read_from_a_finer_level_is_mirrored_at_the_tiles_scale(tmp_path, tumour_field):
    """A 40× field's edge tile: the part inside is shrunk alone and mirrored afterwards, so the mirror
    line lies exactly on the tile's pixels, where the motion and JPEG measurements find it."""
    path = write_pyramidal_tiff(
        tmp_path / "forty.tif", tumour_field[:700, :1000], mpp=0.25, levels=1, compression="zlib"
    )
    grid = TileGrid(1000, 700, 0.25, 0.5, 224)  # the last column holds 104 px (52 at 0.5), the last row 252 (126)
    with open_slide(path) as slide:
        plan = read_plan(slide, grid)
        edge, _ = read_tile(slide, grid, plan, 1, 2)
        inner, _ = read_tile(slide, grid, plan, 0, 0)
    assert own_extent(np.stack([inner, edge])).tolist() == [[224, 224], [126, 52]]
    own = np.asarray(Image.fromarray(tumour_field[448:700, 896:1000]).resize((52, 126), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(edge[:126, :52], own)
    np.testing.assert_array_equal(edge[:126, 52:104], own[:, ::-1])


def test_dab_over_haematoxylin_is_stain_and_grey_particles_are_debris():
    """A Ki67-positive nucleus is DAB over haematoxylin: nearly grey in optical density except for
    green, which every stain absorbs more than red and blue's mean. Drawn on real tissue as compact
    particles: the stain mixture is never debris, grey dust of the same density and size is."""
    tile = np.asarray(Image.open(HELDOUT[0]).convert("RGB")).astype(np.float64)
    od = -np.log10(np.clip(tile, 1, 255) / 255)
    yy, xx = np.mgrid[:224, :224]
    particles = np.zeros((224, 224))
    for y, x in ((60, 60), (60, 160), (160, 60), (160, 160)):
        particles += np.hypot(yy - y, xx - x) < 12  # 12 µm across at 0.5 µm/px
    haematoxylin, dab = np.array([0.65, 0.70, 0.29]), np.array([0.27, 0.57, 0.78])
    for colour, is_debris in ((haematoxylin + dab, False), (np.array([1.0, 1.0, 1.0]), True)):
        drawn = od + 0.6 * particles[..., None] * colour / colour.max()
        pixels = np.clip(np.rint(255 * 10**-drawn), 0, 255).astype(np.uint8)
        assert debris_tiles(pixels[None], 0.5)[0] == is_debris, colour


def test_the_skimage_ihc_field_has_no_debris_and_passes(tmp_path):
    from skimage.data import immunohistochemistry

    summary, _ = _mapped(immunohistochemistry(), tmp_path, 0.5)
    assert summary.verdict == "pass" and summary.artefact_tiles["debris"] == 0


def test_pale_stroma_between_stained_nuclei_is_tissue():
    """Faint cream stroma with nuclei every ~16 µm (a pale Ki67 field): the stroma is not darker than
    the field's brightest pixels, so only nuclei were tissue; joined across gaps under 20 µm, it is."""
    field = np.full((256, 256, 3), (211, 207, 198), np.uint8)  # stroma, as measured on a pale IHC field
    yy, xx = np.mgrid[:256, :256]
    for y in range(16, 256, 32):
        for x in range(16, 256, 32):
            field[np.hypot(yy - y, xx - x) < 6] = (150, 170, 210)  # pale blue nuclei, 6 µm across at 0.5 µm/px
    assert tissue_mask(field).mean() < 0.25  # the nuclei alone
    assert tissue_mask(field, um_per_px=0.5).mean() > 0.9
    assert tissue_mask(np.full((256, 256, 3), 240, np.uint8), um_per_px=0.5).mean() == 0.0  # glass stays glass


def test_a_pale_field_whose_tissue_twice_the_light_erased_says_so(tmp_path):
    """Over-exposed, a pale IHC field turns to glass and no tile is assessed; the error says that
    most of it is clipped to white, which glass of a normal scan is not."""
    field = np.full((512, 512, 3), (211, 207, 198), np.uint8)  # a pale Ki67 field's stroma
    yy, xx = np.mgrid[:512, :512]
    field[(np.hypot(yy % 32 - 16, xx % 32 - 16) < 6)] = (150, 170, 210)  # pale nuclei every 16 µm
    assert _mapped(field, tmp_path, 0.5)[0].verdict == "pass"
    for image, clipped in (
        (exposure(field, 0.5, kind="flat", direction=1, seed=0), True),
        (np.full((512, 512, 3), 238, np.uint8), False),
    ):
        with pytest.raises(MapError, match="no tissue found") as raised:
            _mapped(image, tmp_path, 0.5, name=f"clipped{clipped}")
        assert ("clipped to pure white" in str(raised.value)) == clipped, raised.value


def test_exposure_evidence_sees_light_not_stain():
    """Clean held-out crops have no exposure evidence whatever their density; too little or too much
    light (slideiqa's gain and OpenCV's at ±1 EV) does. A tone curve (γ ½ or 2) is a stain of another
    density in one tile: no evidence there (the slide and the batch judge it)."""
    tiles = np.stack([np.asarray(Image.open(path).convert("RGB")) for path in HELDOUT[:4]])
    assert exposure_evidence(tiles).cap.max() < 0.5
    for direction in (-1, 1):
        ours = np.stack([exposure(tile, 0.5, kind="gain", direction=direction, seed=0) for tile in tiles])
        theirs = np.stack([cv2.convertScaleAbs(tile, alpha=2.0**direction) for tile in tiles])
        assert exposure_evidence(ours).cap.min() > 0.5 and exposure_evidence(theirs).cap.min() > 0.5, direction
        curve = np.stack([exposure(tile, 0.5, kind="gamma", direction=direction, seed=0) for tile in tiles])
        assert exposure_evidence(curve).cap.max() < 0.5


def test_light_that_clips_most_stain_and_most_of_the_tile_is_exposure_whatever_the_network_says():
    """Certain over-exposure floors P(exposure) as certain darkness does: no clean held-out tile shows
    it, while twice the light (ours and OpenCV's) clips most of the stain and most of the tile on the
    tiles with least glass, and those are called exposure even where the network said good."""
    tiles = np.stack([np.asarray(Image.open(path).convert("RGB")) for path in HELDOUT])
    assert not exposure_evidence(tiles).floor.any()
    classes = ["good", "defocus", "motion", "noise", "jpeg", "exposure"]
    called_good = np.tile(np.eye(len(classes), dtype=np.float32)[0], (len(tiles), 1))
    for bright in (
        np.stack([exposure(tile, 0.5, kind="gain", direction=1, seed=0) for tile in tiles]),
        np.stack([cv2.convertScaleAbs(tile, alpha=2.0) for tile in tiles]),
    ):
        evidence = exposure_evidence(bright)
        certain = evidence.floor > 0
        assert certain.sum() >= 4, evidence.floor.round(3)
        judged = judge_exposure(called_good, classes, evidence)
        assert (judged[certain, classes.index("exposure")] > 0.99).all()
        assert (judged[~certain, 0] == 1.0).all()  # elsewhere the cap only lowers what the network said


@pytest.mark.parametrize("direction", [-1, 1])
def test_a_field_exposed_wrongly_throughout_still_fails(tmp_path, tumour_field, direction):
    """±1 EV of gain over the whole field (OpenCV's, not slideiqa's code): it is its own reference,
    and what its tiles show — a white point no light leaves, stain clipped to white — flags them."""
    field = cv2.convertScaleAbs(tumour_field, alpha=2.0**direction)
    summary, _ = _mapped(field, tmp_path, 0.25)
    assert summary.verdict == "fail" and summary.share_per_class["exposure"] >= 0.9


@pytest.mark.parametrize("direction", [-1, 1])
def test_an_unseen_field_exposed_wrongly_throughout_still_fails(tmp_path, direction):
    """The same on dense dark tumour of a source no model here saw. Twice the gain also doubles the
    sensor's noise, which is then measured: of the brighter copy's four tiles three are called noise
    and one exposure — flagged all the same, for a defect the image really has."""
    summary, _ = _mapped(cv2.convertScaleAbs(_pixels(UNSEEN_TUMOUR), alpha=2.0**direction), tmp_path, 0.5)
    assert summary.verdict == "fail" and summary.share_below_threshold == 1.0
    shares = summary.share_per_class
    assert shares["exposure"] >= 0.9 if direction < 0 else shares["exposure"] + shares["noise"] == 1.0, shares


@pytest.mark.parametrize("corner", [0, 100])
def test_unseen_dense_tumour_and_oriented_stroma_cut_at_the_border_pass(tmp_path, corner):
    """400 px cuts of both unseen fields: 2 × 2 tiles whose last row and column hold 176 of 224 px,
    judged on their own pixels mirrored. Dense dark nuclei are no exposure error, oriented collagen
    bundles no streak."""
    for path in (UNSEEN_TUMOUR, UNSEEN_STROMA):
        summary, quality = _mapped(
            _pixels(path)[corner : corner + 400, corner : corner + 400], tmp_path, 0.5, path.stem
        )
        assert summary.verdict == "pass" and summary.share_below_threshold == 0.0, (path.name, summary)
        assert summary.tissue_tiles == 4 and np.isfinite(quality.array("score")).all()


def _cli_map(path: Path, mpp: float, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "slideiqa.cli.app", "map", str(path), "--mpp", str(mpp), "-o", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


@pytest.mark.parametrize("source", ["tumour (trained on)", "stroma (unseen)"])
def test_a_20x_scan_at_055_is_mapped_and_one_at_06_refused_in_one_line(tmp_path, tumour_field, source):
    """A field shrunk by 10 % (a 20× scanner's 0.55 µm/px) is judged at its own pixels, as the field at
    0.5 is, and its scanner's own JPEG blocks are still seen (enlarged to the model's scale, none of
    this field's compressed tiles was flagged); 0.6 is refused. On a field the model trained on, and
    on one of a source no model here saw."""
    at_half = (
        Image.fromarray(tumour_field).resize((500, 500), Image.Resampling.LANCZOS)
        if source.startswith("tumour")
        else Image.open(UNSEEN_STROMA).convert("RGB")
    )
    half = np.asarray(at_half)
    coarser = np.asarray(at_half.resize((455, 455), Image.Resampling.LANCZOS))
    Image.fromarray(coarser).save(tmp_path / "coarser.png")
    reference, _ = _mapped(half, tmp_path, 0.5, "reference")
    run = _cli_map(tmp_path / "coarser.png", 0.55, tmp_path / "coarser.quality.zarr")
    assert run.returncode == 0, run.stderr[-2000:]
    summary, _ = _mapped(tmp_path / "coarser.png", tmp_path, 0.55, "coarser")
    assert summary.verdict == reference.verdict == "pass"
    assert abs(summary.mean_score - reference.mean_score) < 0.05
    Image.fromarray(coarser).save(tmp_path / "compressed.jpg", quality=15)
    compressed, _ = _mapped(tmp_path / "compressed.jpg", tmp_path, 0.55, "compressed")
    assert compressed.verdict == "fail" and compressed.share_per_class["jpeg"] >= 0.5
    refused = _cli_map(tmp_path / "coarser.png", 0.6, tmp_path / "refused.quality.zarr")
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 1 and len(lines) == 1 and "more than 10% coarser" in lines[0]
    assert "coarser.png" in lines[0] and not (tmp_path / "refused.quality.zarr").exists()
