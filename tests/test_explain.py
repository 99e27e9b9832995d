"""Explanation heatmaps: they point inside a local defect, in a tile and in a larger field."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from slideiqa.cli import app
from slideiqa.distortions import FAMILIES, distort_local, exposure
from slideiqa.explain import CellMaps, GradCam, explain_field, explain_image, explainer_for
from slideiqa.noise_level import noise_sigma_patches

from conftest import HELDOUT

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
    assert width > 6 * 224 and height > 224  # the field and one panel per defect class
    explanation = explain_field(field)
    assert explanation.probabilities.shape == (1, len(explanation.classes)) and explanation.method == "cell map"


def test_a_cell_map_marks_little_of_a_clean_crop(cell_maps):
    """A cell map is a probability: where no class reaches CELL_WHERE_FLOOR nothing is marked, however
    small the map's maximum (a share of the maximum alone would mark a fifth of a clean field)."""
    marked = [explain_image(crop, cell_maps).where(name).mean() for crop in crops()
              for name in cell_maps.classes if name != "good"]
    assert np.mean(marked) <= 0.08


def test_a_field_mirrored_out_to_a_tile_is_explained_as_itself(tmp_path):
    # A 640 × 480 camera field at 0.045 µm/px is judged as 144 × 108 px at 2.5× (slideiqa predict),
    # mirrored out to a tile; the explanation shows the field, not its mirror images.
    field = tmp_path / "oil_field.png"
    Image.open(Path(__file__).parents[1] / "examples" / "data" / "smears" / "chula_rbc12" / "4.jpg").save(field)
    explanation = explain_field(field, mpp=0.045)
    assert explanation.image.shape == (108, 144, 3)
    assert all(heat.shape == (108, 144) for heat in explanation.heatmaps.values())
    assert explanation.probabilities.shape == (1, len(explanation.classes))
