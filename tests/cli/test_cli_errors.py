"""Bad input on the command line: one line naming the thing and the cause, non-zero exit."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import slideiqa
from slideiqa.models.zoo import resolve_model

from paths import CMU_SLIDE
from support import one_error_line as _one_error_line
from support import run_command as _run
from support import skip_unless_available


def _subprocess(module, *args):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True, timeout=300)


def test_version():
    result = _subprocess("slideiqa.cli.app", "--version")
    assert result.returncode == 0 and result.stdout.strip() == f"slideiqa {slideiqa.__version__}"


def test_folder_with_no_images(tmp_path):
    (tmp_path / "good").mkdir()
    _one_error_line(
        _run("slideiqa_training", "train", tmp_path, "-o", tmp_path / "m"), str(tmp_path), "no images found"
    )
    _one_error_line(
        _run("slideiqa_training", "build-dataset", "defects", tmp_path / "good", "-o", tmp_path / "d"),
        "no images found",
    )


def test_explain_refuses_a_field_too_small_to_mirror_out_to_a_tile(tmp_path):
    small = tmp_path / "small.png"
    Image.fromarray(np.full((80, 80, 3), 200, np.uint8)).save(small)
    _one_error_line(_run("slideiqa.cli.app", "explain", small), "small.png", "smaller than the 100 px")
    assert not (tmp_path / "small.explain.png").exists()
    _one_error_line(_run("slideiqa.cli.app", "explain", tmp_path / "missing.png"), "missing.png")


def test_predict_refuses_a_slide_file_and_names_the_command_that_judges_it(tmp_path, tumour_field):
    """A slide, however small, is judged tile by tile on its tissue by ``map``: averaged over its tiles,
    glass and all, ``predict`` gave the clean sample 0.59 and called it good."""
    from slides import write_pyramidal_tiff

    pyramid = write_pyramidal_tiff(tmp_path / "small_pyramid.tif", tumour_field[:600, :600], mpp=0.5, levels=2)
    for slide, kind in ((CMU_SLIDE, "aperio"), (pyramid, "2 levels")):
        _one_error_line(
            _run("slideiqa.cli.app", "predict", slide),
            slide.name,
            kind,
            f"not a field image: judge its tissue tile by tile with slideiqa map {slide}",
        )
    field = tmp_path / "field.png"
    Image.fromarray(tumour_field[:600, :600]).save(field)
    both = _run("slideiqa.cli.app", "predict", "--mpp", "0.5", CMU_SLIDE, field)
    assert both.returncode == 1 and str(field) in both.stdout and str(CMU_SLIDE) not in both.stdout


def test_unreadable_image(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    _one_error_line(_run("slideiqa.cli.app", "predict", bad), "bad.png", "not a slide or image")
    _one_error_line(
        _run("slideiqa_training", "build-dataset", "defects", bad, "-o", tmp_path / "d"),
        "bad.png",
        "not a slide or image",
    )


def test_unknown_architecture(tmp_path):
    for label in ("good", "bad"):
        (tmp_path / label).mkdir()
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / label / "a.png")
    _one_error_line(
        _run("slideiqa_training", "train", tmp_path, "-o", tmp_path / "m", "--arch", "alexnet"),
        "unknown architecture 'alexnet'",
    )


def test_unknown_model_and_mismatched_card(tmp_path):
    field = tmp_path / "field.png"
    Image.fromarray(np.full((224, 224, 3), 128, np.uint8)).save(field)
    _one_error_line(_run("slideiqa.cli.app", "predict", field, "--model", "nonexistent"), "unknown model 'nonexistent'")
    from slideiqa.models import ModelCard, build_model, save_checkpoint

    save_checkpoint(build_model("iqanet", 3), ModelCard("iqanet", ["good", "a", "b"]), tmp_path / "m")
    card = (tmp_path / "m.json").read_text().replace('"a", ', "").replace('"weights_sha256": "', '"weights_sha256": "0')
    (tmp_path / "m.json").write_text(card)
    _one_error_line(
        _run("slideiqa.cli.app", "predict", field, "--model", tmp_path / "m.json"), "m.json", "SHA-256 differs"
    )


def test_bad_option_values_are_usage_errors_without_traceback(tmp_path):
    for module, *args in (
        ("slideiqa.cli.app", "map", tmp_path / "slide.svs", "--workers", "abc"),
        ("slideiqa_training", "train", tmp_path, "-o", tmp_path / "m", "--label-smoothing", 2),
    ):
        result = _run(module, *args)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr and "Invalid value" in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    result = _subprocess("slideiqa.cli.app", "--debug", "predict", tmp_path / "missing.png")
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


SAMPLE = CMU_SLIDE


def test_environment_errors_are_one_line_and_leave_nothing(tmp_path):
    regular = tmp_path / "a-file"
    regular.write_text("not a folder")
    out = tmp_path / "out.quality.zarr"
    _one_error_line(
        _run("slideiqa.cli.app", "map", SAMPLE, "-o", regular / "x.quality.zarr"),
        str(regular / "x.quality.zarr"),
        "Not a directory",
    )
    _one_error_line(
        _run("slideiqa.cli.app", "map", SAMPLE, "-o", out, "--mpp", "nan"), "--mpp must be a positive number"
    )
    _one_error_line(
        _run("slideiqa.cli.app", "map", SAMPLE, "-o", out, "--artefacts", "pen,ink"),
        "--artefacts must name artefacts among edge, pen, bubble, fold, debris; got 'ink'",
    )
    stem = tmp_path / "model"
    for suffix in (".safetensors", ".onnx"):
        shutil.copy(resolve_model("default").with_suffix(suffix), stem.with_suffix(suffix))
    card = json.loads(resolve_model("default").with_suffix(".json").read_text()) | {"tile_size": 0}
    stem.with_suffix(".json").write_text(json.dumps(card))
    _one_error_line(
        _run("slideiqa.cli.app", "map", SAMPLE, "-o", out, "--model", stem),
        "model.json",
        "tile_size must be a whole number of pixels from 1 to 4096, got 0",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "model.json", "model.onnx", "model.safetensors"]


@pytest.mark.slow
def test_unreachable_scheduler_fails_in_one_line_before_any_output(tmp_path):
    out = tmp_path / "out.quality.zarr"
    _one_error_line(
        _run("slideiqa.cli.app", "map", SAMPLE, "-o", out, "--scheduler", "tcp://127.0.0.1:9"),
        "tcp://127.0.0.1:9: cannot reach the Dask scheduler within 10 s",
    )
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.fixture
def small_filesystem(tmp_path):
    """A real 1 MiB tmpfs (needs root and permission to mount; skipped otherwise)."""
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    if (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True
        ).returncode
        != 0
    ):
        skip_unless_available("tmpfs", "cannot mount a tmpfs here (needs root and mount permission)")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_full_and_read_only_filesystems_fail_in_one_line_and_block_nothing(small_filesystem, tmp_path):
    out = small_filesystem / "cmu.quality.zarr"
    (small_filesystem / "filler").write_bytes(bytes(1018 << 10))  # leaves a few KiB: the store does not fit
    _one_error_line(_run("slideiqa.cli.app", "map", SAMPLE, "-o", out), str(out), "No space left on device")
    assert sorted(p.name for p in small_filesystem.iterdir()) == ["filler"]
    (small_filesystem / "filler").unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(small_filesystem)], check=True)
    _one_error_line(_run("slideiqa.cli.app", "map", SAMPLE, "-o", out), str(out), "Read-only file system")
    subprocess.run(["mount", "-o", "remount,rw", str(small_filesystem)], check=True)
    done = _run("slideiqa.cli.app", "map", SAMPLE, "-o", out)
    assert done.returncode == 0, done.stderr
