"""Single fields: judged at the model's scale, or, where a camera field at 1000× is smaller than a tile
at that scale, magnified as little as a tile allows, up to 2.5×, and mirrored out to a tile where it
is still smaller."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from skimage.filters import gaussian

from slideiqa.pipeline.fields import at_judging_scale, judging_mpp, mirrored_to_tile

from paths import SMEARS

CHULA = SMEARS / "chula_rbc12"
#: The Chula camera's µm/px, from red-cell size (training/sources.toml).
CHULA_MPP = 0.13


def test_the_judging_scale_is_the_models_unless_the_field_would_be_smaller_than_a_tile():
    assert judging_mpp((4000, 3000, 3), 0.25, 0.5, 224) == 0.5
    assert judging_mpp((480, 640, 3), CHULA_MPP, 0.5, 224) == pytest.approx(CHULA_MPP * 480 / 224)
    # Smaller than a tile even at its own scale: judged there, mirrored out to a tile.
    assert judging_mpp((100, 100, 3), 0.5, 0.5, 224) == 0.5
    # BCCD's fields would need 5.2×: judged 2.5× magnified, mirrored out to a tile.
    assert judging_mpp((480, 640, 3), 0.045, 0.5, 224) == pytest.approx(0.2)


def test_a_field_is_judged_on_its_own_pixels_only_where_it_is_not_resized():
    """Only a field judged as the file holds it still shows a scanner's JPEG lattice where there was
    one, so only there does the measured step decide P(jpeg)."""
    field = np.random.default_rng(1).integers(0, 256, (600, 800, 3), dtype=np.uint8)
    as_it_is = at_judging_scale(field, 0.5, 0.5, "field", 224)
    assert as_it_is.native and as_it_is.pixels is field and as_it_is.mpp == 0.5
    shrunk = at_judging_scale(field, 0.25, 0.5, "field", 224)
    assert not shrunk.native and shrunk.pixels.shape == (300, 400, 3) and shrunk.mpp == 0.5


def test_a_small_field_is_mirrored_out_to_a_tile_without_a_new_edge():
    field = np.random.default_rng(0).integers(0, 256, (43, 58, 3), dtype=np.uint8)
    tile = mirrored_to_tile(field, 224)
    assert tile.shape == (224, 224, 3)
    assert (tile[:43, :58] == field).all()  # the field itself keeps the corner (and its 8 px grid)
    assert (tile[43:86, :58] == field[::-1]).all() and (tile[:43, 58:116] == field[:, ::-1]).all()
    assert (tile[86:129, :58] == field).all()  # mirrored again and again
    large = np.arange(300 * 224 * 3, dtype=np.uint32).reshape(300, 224, 3)
    assert np.array_equal(mirrored_to_tile(large, 224), large)  # a tile or more: as it is


def _predict(*arguments) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "slideiqa.cli.app", "predict", *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_sharp_camera_field_at_1000x_passes_and_a_defocused_one_is_flagged(tmp_path):
    field = CHULA / "4.jpg"
    image = np.asarray(Image.open(field).convert("RGB"))
    # 1 µm of Gaussian defocus, the floor, at the camera's own scale.
    blurred = gaussian(image, sigma=(1.0 / CHULA_MPP, 1.0 / CHULA_MPP, 0), preserve_range=True)
    Image.fromarray(np.clip(np.rint(blurred), 0, 255).astype(np.uint8)).save(tmp_path / "defocused.png")
    result = _predict(field, tmp_path / "defocused.png", "--mpp", CHULA_MPP, "--format", "json")
    assert result.returncode == 0, result.stderr
    sharp, defocused = json.loads(result.stdout)
    assert sharp["judged_mpp"] == pytest.approx(CHULA_MPP * 480 / 224, rel=0.01)
    assert sharp["tiles"] == 2
    assert sharp["score"] >= 0.5
    assert defocused["score"] < 0.5 and defocused["class"] == "defocus"
    assert "judged 1.8× magnified" in result.stderr


def test_a_field_beyond_the_measured_magnification_is_judged_at_it_mirrored(tmp_path):
    # A BCCD-like camera field: 640 × 480 at 0.045 µm/px would need 5.2× magnified to fill a tile;
    # at 2.5× (0.2 µm/px) it is 144 × 108 px, mirrored out to one tile.
    image = np.asarray(Image.open(CHULA / "4.jpg").convert("RGB"))
    Image.fromarray(image).save(tmp_path / "oil_field.png")
    blurred = gaussian(image, sigma=(1.0 / 0.045, 1.0 / 0.045, 0), preserve_range=True)  # 1 µm
    Image.fromarray(np.clip(np.rint(blurred), 0, 255).astype(np.uint8)).save(tmp_path / "defocused.png")
    result = _predict(tmp_path / "oil_field.png", tmp_path / "defocused.png", "--mpp", 0.045, "--format", "json")
    assert result.returncode == 0, result.stderr
    sharp, defocused = json.loads(result.stdout)
    assert sharp["judged_mpp"] == pytest.approx(0.2) and sharp["mirrored"] and sharp["tiles"] == 1
    assert sharp["score"] >= 0.5
    assert defocused["score"] < 0.5 and defocused["class"] == "defocus"
    assert "oil_field.png: smaller than one tile at 0.2 µm/px (2.5× the model's scale); mirrored" in result.stderr


def test_a_field_smaller_than_the_model_is_measured_on_is_refused(tmp_path):
    # 300 × 200 px at 0.045 µm/px is 68 × 45 px even 2.5× magnified: too little to judge.
    field = tmp_path / "tiny_field.png"
    Image.open(CHULA / "4.jpg").crop((0, 0, 300, 200)).save(field)
    result = _predict(field, "--mpp", 0.045)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "tiny_field.png" in lines[0] and "smaller than the 100 px" in lines[0]
    assert result.stdout == ""
