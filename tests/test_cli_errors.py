"""Bad input on the command line: one line naming the thing and the cause, non-zero exit."""

import subprocess
import sys

import numpy as np
from PIL import Image

import slideiqa


def _run(module, *args):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True, timeout=300)


def _one_error_line(result, *fragments):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_version():
    result = _run("slideiqa.cli", "--version")
    assert result.returncode == 0 and result.stdout.strip() == f"slideiqa {slideiqa.__version__}"


def test_folder_with_no_images(tmp_path):
    (tmp_path / "good").mkdir()
    _one_error_line(_run("slideiqa_training", "train", tmp_path, "-o", tmp_path / "m"), str(tmp_path), "no images found")
    _one_error_line(_run("slideiqa_training", "build-dataset", "defects", tmp_path / "good", "-o", tmp_path / "d"),
                    "no images found")


def test_unreadable_image(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    _one_error_line(_run("slideiqa.cli", "predict", bad), "bad.png", "not a slide or image")
    _one_error_line(_run("slideiqa_training", "build-dataset", "defects", bad, "-o", tmp_path / "d"),
                    "bad.png", "not a slide or image")


def test_unknown_architecture(tmp_path):
    for label in ("good", "bad"):
        (tmp_path / label).mkdir()
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / label / "a.png")
    _one_error_line(_run("slideiqa_training", "train", tmp_path, "-o", tmp_path / "m", "--arch", "alexnet"),
                    "unknown architecture 'alexnet'")


def test_unknown_model_and_mismatched_card(tmp_path):
    field = tmp_path / "field.png"
    Image.fromarray(np.full((224, 224, 3), 128, np.uint8)).save(field)
    _one_error_line(_run("slideiqa.cli", "predict", field, "--model", "nonexistent"), "unknown model 'nonexistent'")
    from slideiqa.models import ModelCard, build_model, save_checkpoint

    save_checkpoint(build_model("iqanet", 3), ModelCard("iqanet", ["good", "a", "b"]), tmp_path / "m")
    card = (tmp_path / "m.json").read_text().replace('"a", ', "").replace('"weights_sha256": "', '"weights_sha256": "0')
    (tmp_path / "m.json").write_text(card)
    _one_error_line(_run("slideiqa.cli", "predict", field, "--model", tmp_path / "m.json"), "m.json", "SHA-256 differs")


def test_bad_option_values_are_usage_errors_without_traceback(tmp_path):
    for module, *args in (("slideiqa.cli", "map", tmp_path / "slide.svs", "--workers", "abc"),
                          ("slideiqa_training", "train", tmp_path, "-o", tmp_path / "m", "--label-smoothing", 2)):
        result = _run(module, *args)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr and "Invalid value" in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    result = _run("slideiqa.cli", "--debug", "predict", tmp_path / "missing.png")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_missing_or_unfitting_teacher(tmp_path):
    from slideiqa.models import ModelCard, build_model, save_checkpoint

    for label in ("bad", "good"):
        (tmp_path / label).mkdir()
        for i in range(5):
            Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(tmp_path / label / f"{i}.png")
    train = ("slideiqa_training", "train", tmp_path, "-o", tmp_path / "m", "--input-size", 32, "--epochs", 1)
    _one_error_line(_run(*train, "--teacher", tmp_path / "nowhere"), "nowhere")
    save_checkpoint(build_model("iqanet", 3), ModelCard("iqanet", ["good", "a", "b"], input_size=32), tmp_path / "t")
    _one_error_line(_run(*train, "--teacher", tmp_path / "t"), "t", "classes")
    assert not (tmp_path / "m.safetensors").exists()
