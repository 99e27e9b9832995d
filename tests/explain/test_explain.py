"""Explanation heatmaps: they point inside a local defect, in a tile and in a larger field."""

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from slideiqa.cli.app import app
from slideiqa.errors import SlideIQAError
from slideiqa.explain.heatmaps import (
    MAX_REGION_TILES,
    CellMaps,
    GradCam,
    explain_field,
    explain_image,
    explain_slide_region,
    explainer_for,
    explanation_picture,
)
from slideiqa.measure.noise_level import noise_sigma_patches
from slideiqa.outputs.store import open_map
from slideiqa.pipeline.mapping import map_slide
from slideiqa.synthetic.distortions import FAMILIES, distort_local, exposure

from paths import CMU_SLIDE, FIELDS, HELDOUT, SMEARS

LEFT = np.zeros((224, 224), bool)
LEFT[:, :90] = True  # 40 % of the tile


@pytest.fixture(scope="module")
def explainer():
    return GradCam()


def crops() -> list[np.ndarray]:
    return [np.asarray(Image.open(path).convert("RGB")) for path in HELDOUT]


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "motion"])
def test_the_heatmap_peaks_inside_a_local_defect(explainer, family):
    """On every held-out crop, the family's heatmap is brightest inside the distorted part and at
    least twice as bright there on average (measured: 2.3–25×)."""
    for number, crop in enumerate(crops()):
        explanation = explain_image(distort_local(crop, LEFT, family, 0.8, seed=number), explainer)
        heat = explanation.heatmaps[family]
        assert LEFT.flat[int(heat.argmax())], (family, HELDOUT[number].name)
        assert heat[LEFT].mean() >= 2 * heat[~LEFT].mean(), (family, HELDOUT[number].name)


def test_motion_is_localised_on_tissue_but_not_reliably(explainer):
    """The model's weakest family (it also flags motion least well): on the four H&E crops the
    heatmap leans to the streaked part on average; on smears it does not (measured ratios 0.8–5.5)."""
    ratios = []
    for number, crop in enumerate(crops()[:4]):
        heat = explain_image(distort_local(crop, LEFT, "motion", 0.8, seed=number), explainer).heatmaps["motion"]
        ratios.append(heat[LEFT].mean() / heat[~LEFT].mean())
    assert np.mean(ratios) >= 1.5


def test_a_clean_tile_beside_a_defective_one_stays_dark(explainer):
    """In a field of two tiles, the heatmap of a tile the model finds sharp is weighted down by its
    probability: the defocused tile carries the heat."""
    crop = crops()[2]
    blurred = distort_local(crop, np.ones((224, 224), bool), "defocus", 0.8, seed=0)
    explanation = explain_image(np.concatenate([crop, blurred], axis=1), explainer)
    heat = explanation.heatmaps["defocus"]
    assert explanation.origins == [(0, 0), (0, 224)]
    assert heat[:, 224:].mean() >= 5 * heat[:, :224].mean()
    assert explanation.where("defocus")[:, 224:].mean() > 0.5 and not explanation.where("defocus")[:, :224].any()


@pytest.fixture(scope="module")
def cell_maps():
    return CellMaps()


@pytest.mark.parametrize("family", [family for family in FAMILIES if family != "exposure"])
def test_the_cell_map_peaks_inside_a_local_defect_for_every_family(cell_maps, family):
    """The model's own cell map (the default explanation for a model with a cell head): on every
    held-out crop the family's map is brightest inside the distorted part and at least three times as
    bright there on average (measured 6–23×). Motion too, on the four H&E crops (4.5–16×), where
    Grad-CAM could not be relied on; on the smear crops the motion map does not localise (0.9–2.6×)."""
    tissue_only = crops()[:4] if family == "motion" else crops()
    for number, crop in enumerate(tissue_only):
        heat = explain_image(distort_local(crop, LEFT, family, 0.8, seed=number), cell_maps).heatmaps[family]
        assert LEFT.flat[int(heat.argmax())], (family, HELDOUT[number].name)
        assert heat[LEFT].mean() >= 3 * heat[~LEFT].mean(), (family, HELDOUT[number].name)


def test_cells_carry_exposure_only_where_their_tile_shows_its_evidence(cell_maps):
    """Exposure is the scan's, judged per tile by evidence a stain cannot imitate (exposure_evidence):
    a held-out crop given too little or too much light throughout is flagged in its cells as in the
    tile, and the same crop clean has no cell called exposure, however dense its stain."""
    for number, crop in enumerate(crops()):
        clean = explain_image(crop, cell_maps).heatmaps["exposure"]
        assert clean.max() < 0.5, HELDOUT[number].name
        for direction in (-1, 1):
            dark_or_bright = exposure(crop, 0.8, seed=number, direction=direction, kind="gain")
            heat = explain_image(dark_or_bright, cell_maps).heatmaps["exposure"]
            assert heat.mean() > 0.5, (HELDOUT[number].name, direction)


def test_the_explanation_method_follows_the_model(tmp_path):
    """auto: the cell map for a model with a cell head (the default), Grad-CAM for one without."""
    from slideiqa.models.checkpoint import load_checkpoint, save_checkpoint
    from slideiqa.models.zoo import resolve_model

    assert isinstance(explainer_for("default"), CellMaps)
    assert isinstance(explainer_for("default", method="gradcam"), GradCam)
    network, card = load_checkpoint(resolve_model("default"))
    network.cell_head, card.cell_hidden, card.cell_px = None, 0, 0
    save_checkpoint(network, card, tmp_path / "tiles-only")
    assert isinstance(explainer_for(tmp_path / "tiles-only.safetensors"), GradCam)
    with pytest.raises(ValueError, match="unknown explanation method"):
        explainer_for("default", method="lime")


def test_the_noise_map_is_the_measurement_per_patch():
    rng = np.random.default_rng(0)
    tile = np.full((224, 224, 3), 150.0)
    tile[:, 112:] += rng.normal(0, 15, (224, 112, 3))
    sigma = noise_sigma_patches(np.clip(tile, 0, 255).astype(np.uint8))
    assert sigma.shape == (14, 14)
    # A patch's 64 coefficients give its σ to about ±30 %; all of them stay above the 9.8 step.
    assert np.all(sigma[:, :6] < 1) and abs(np.median(sigma[:, 8:]) - 15) < 1.5 and sigma[:, 8:].min() > 9.8


def test_explain_command_writes_the_picture(tmp_path):
    field = tmp_path / "field.png"
    crop = crops()[0]
    Image.fromarray(distort_local(crop, LEFT, "defocus", 0.8, seed=0)).save(field)
    result = CliRunner().invoke(app, ["explain", str(field)])
    assert result.exit_code == 0, result.output
    picture = tmp_path / "field.explain.png"
    assert picture.exists() and "defocus" in result.output
    width, height = Image.open(picture).size
    # the field and one panel per defect class, three to a row, each at the field's own size
    assert width == 12 + 3 * (224 + 12) and height > 2 * 224
    explanation = explain_field(field)
    assert explanation.probabilities.shape == (1, len(explanation.classes)) and explanation.method == "cell map"


def test_a_cell_map_marks_little_of_a_clean_crop(cell_maps):
    """A cell map is a probability: where no class reaches CELL_WHERE_FLOOR nothing is marked, however
    small the map's maximum (a share of the maximum alone would mark a fifth of a clean field)."""
    marked = [
        explain_image(crop, cell_maps).where(name).mean()
        for crop in crops()
        for name in cell_maps.classes
        if name != "good"
    ]
    assert np.mean(marked) <= 0.08


def test_a_field_mirrored_out_to_a_tile_is_explained_as_itself(tmp_path):
    # A 640 × 480 camera field at 0.045 µm/px is judged as 144 × 108 px at 2.5× (slideiqa predict),
    # mirrored out to a tile; the explanation shows the field, not its mirror images.
    field = tmp_path / "oil_field.png"
    Image.open(SMEARS / "chula_rbc12" / "4.jpg").save(field)
    explanation = explain_field(field, mpp=0.045)
    assert explanation.image.shape == (108, 144, 3)
    assert all(heat.shape == (108, 144) for heat in explanation.heatmaps.values())
    assert explanation.probabilities.shape == (1, len(explanation.classes))


def test_a_clean_field_shows_no_heat_and_its_captions_agree_with_the_table(tmp_path, cell_maps):
    """A sharp tumour field: no class reaches the threshold in any tile, so no panel may show heat —
    the picture equals the one drawn with every heat map blank — though its cells' maps are not all
    dark (the motion panel once glowed red over a field whose table said motion 0.0000). The table
    says each class's highest tile P, in how many tiles it is found, and no area."""
    field = FIELDS / "he_tumour_target.png"
    explanation = explain_field(field, explainer=cell_maps)
    assert max(float(heat.max()) for heat in explanation.heatmaps.values()) > 0.05  # something to hide
    assert all(explanation.tiles_found_in(name) == 0 for name in explanation.heatmaps)
    blank = {name: np.zeros_like(heat) for name, heat in explanation.heatmaps.items()}
    drawn, without_heat = (
        np.asarray(explanation_picture(e, "t")) for e in (explanation, replace(explanation, heatmaps=blank))
    )
    np.testing.assert_array_equal(drawn, without_heat)
    # A lower threshold finds what the cells show, and then the heat is drawn.
    assert not np.array_equal(np.asarray(explanation_picture(explanation, "t", threshold=0.0)), without_heat)

    result = CliRunner().invoke(app, ["explain", str(field), "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 0, result.output
    rows = {line.split("\t")[0]: line.split("\t")[1:] for line in result.output.splitlines() if "\t" in line}
    tiles = len(explanation.origins)
    for name in explanation.heatmaps:
        assert rows[name] == [f"{explanation.highest(name):.4f}", f"0 of {tiles}", "–"], name


def test_the_picture_fits_a_screen_unless_asked(tmp_path):
    field = FIELDS / "he_tumour_target.png"  # 1000 px: three panels a row would be 3048 px wide
    for argv, width in (([], 2500), (["--width", "4000"], 12 + 3 * (1000 + 12))):
        out = tmp_path / f"{width}.png"
        assert CliRunner().invoke(app, ["explain", str(field), "-o", str(out), *argv]).exit_code == 0
        assert width - 2 <= Image.open(out).size[0] <= width


def test_a_slide_is_explained_a_region_at_a_time_as_the_map_reads_it(tmp_path, cell_maps):
    """The whole sample slide as one region (10 × 14 tiles): the tiles the map assesses, and their
    probabilities, are the map's own; a motion tile of the map is the one outlined as motion."""
    quality = open_map(map_slide(CMU_SLIDE, tmp_path / "cmu.quality.zarr").path)
    explanation, tiles = explain_slide_region(CMU_SLIDE, (0, 0, 2220, 2967), explainer=cell_maps)
    rows, cols = quality.array("score").shape
    assert (tiles.row0, tiles.col0, tiles.rows, tiles.cols) == (0, 0, rows, cols)
    assessed = ~np.isnan(quality.array("score")).reshape(-1)
    np.testing.assert_array_equal(explanation.assessed, assessed)
    probs = np.moveaxis(quality.array("probs"), 0, -1).reshape(-1, len(quality.classes))
    # The network and the measurements per tile alike; the map's finish then weighs each tile's tone
    # against its slide's (exposure and good move a little), which a region alone cannot.
    toned = [quality.classes.index("good"), quality.classes.index("exposure")]
    alone = [index for index in range(len(quality.classes)) if index not in toned]
    np.testing.assert_allclose(explanation.probabilities[assessed][:, alone], probs[assessed][:, alone], atol=1e-5)
    np.testing.assert_allclose(explanation.probabilities[assessed][:, toned], probs[assessed][:, toned], atol=0.01)
    motion = quality.classes.index("motion") + 1
    assert explanation.tiles_found_in("motion") == int((quality.array("label") == motion).sum()) >= 1
    # shown as far as the slide goes (2967 × 2220 px at 0.499 µm/px), not the edge tiles' mirror images
    assert explanation.image.shape[:2] == (2962, 2216)


def test_a_slide_without_a_region_or_with_a_bad_one_is_one_line(tmp_path):
    slide = str(CMU_SLIDE)
    cases = {
        (): f"not a field image: explain one region of it at a time: slideiqa explain {slide} --region X,Y,W,H",
        ("--region", "0,0,5000,100"): "region 0,0,5000,100 is not inside the slide's 2220 × 2967 level-0 px",
        ("--region", "1,2,3"): "give X,Y,W,H, four whole numbers of level-0 px",
    }
    for argv, message in cases.items():
        done = subprocess.run(
            [sys.executable, "-m", "slideiqa.cli.app", "explain", slide, "-o", str(tmp_path / "x.png"), *argv],
            capture_output=True,
            text=True,
            timeout=120,
        )
        lines = done.stderr.strip().splitlines()
        assert done.returncode in (1, 2) and message in " ".join(done.stderr.split()), (argv, done.stderr)
        assert len(lines) == 1 or done.returncode == 2, lines  # a usage error is click's own short block
    assert not (tmp_path / "x.png").exists()


def test_a_region_larger_than_a_block_is_refused(tmp_path):
    from slideiqa.explain.heatmaps import region_tiles
    from slideiqa.io.grid import TileGrid

    grid = TileGrid(100_000, 80_000, 0.25, 0.5, 224)
    assert region_tiles(grid, (0, 0, 448 * MAX_REGION_TILES, 448), "s").cols == MAX_REGION_TILES
    with pytest.raises(SlideIQAError, match=r"spans 1 × 17 tiles; explain at most 16 × 16 \(1.8 × 1.8 mm\)"):
        region_tiles(grid, (0, 0, 448 * MAX_REGION_TILES + 1, 448), "s")
