"""Single fields: judged at the model's scale, or, where a camera field at 1000× is smaller than a tile
at that scale, magnified as little as a tile allows."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.filters import gaussian

from slideiqa.fields import judging_mpp

SMEARS = Path(__file__).parents[1] / "examples" / "data" / "smears" / "chula_rbc12"
#: The Chula camera's µm/px, from red-cell size (training/sources.toml).
CHULA_MPP = 0.13


def test_the_judging_scale_is_the_models_unless_the_field_would_be_smaller_than_a_tile():
    assert judging_mpp((4000, 3000, 3), 0.25, 0.5, 224) == 0.5
    assert judging_mpp((480, 640, 3), CHULA_MPP, 0.5, 224) == pytest.approx(CHULA_MPP * 480 / 224)
    # Smaller than a tile even at its own scale: judged there, and refused by the tiling.
    assert judging_mpp((100, 100, 3), 0.5, 0.5, 224) == 0.5


def _predict(*arguments) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "slideiqa.cli", "predict", *map(str, arguments)],
                          capture_output=True, text=True, timeout=300)


def test_a_sharp_camera_field_at_1000x_passes_and_a_defocused_one_is_flagged(tmp_path):
    field = SMEARS / "4.jpg"
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


def test_a_field_too_small_to_judge_within_the_measured_magnification_is_refused(tmp_path):
    # A BCCD-like camera field: 640 × 480 at 0.045 µm/px would be judged 5.2× magnified.
    field = tmp_path / "oil_field.png"
    Image.open(SMEARS / "4.jpg").save(field)
    result = _predict(field, "--mpp", 0.045)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "oil_field.png" in lines[0] and "5.2× magnified" in lines[0]
    assert result.stdout == ""
