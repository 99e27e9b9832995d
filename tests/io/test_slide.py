"""Slide readers on real files: OpenSlide formats, tifffile pyramids and OME-TIFF, plain fields, broken files."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from slideiqa.io.slide import SlideError, open_slide

from paths import CMU_SLIDE, FIELDS, FIXTURES
from slides import truncated_copy, write_pyramidal_tiff


@pytest.fixture(scope="module")
def tumour():
    return np.asarray(Image.open(FIELDS / "he_tumour_target.png").convert("RGB"))


def test_real_aperio_svs():
    with open_slide(CMU_SLIDE) as slide:
        assert slide.info.reader == "openslide" and slide.info.vendor == "aperio"
        assert slide.dimensions == (2220, 2967)
        assert slide.mpp == pytest.approx(0.499)
        assert slide.info.objective_power == 20
        assert slide.info.associated_images == ["label", "macro", "thumbnail"]
        region = slide.read_region((1000, 1000), 0, (64, 48))
        assert region.shape == (48, 64, 3) and region.dtype == np.uint8 and region.std() > 10


def test_multilevel_generic_tiff_and_dicom():
    with open_slide(FIXTURES / "boxes.tiff") as slide:
        assert slide.info.level_dimensions == [(300, 250), (150, 125), (75, 62), (37, 31)]
        assert slide.best_level_for_downsample(3.0) == 1
        assert slide.best_level_for_downsample(0.5) == 0
        assert slide.mpp is None  # 72 dpi in the file is no microscope pixel size
    with open_slide(FIXTURES / "boxes_0.dcm") as slide:
        assert slide.info.vendor == "dicom" and slide.dimensions == (16, 16)


@pytest.mark.parametrize("ome", [False, True])
def test_tifffile_written_pyramids_with_known_pixel_size(tmp_path, tumour, ome):
    path = write_pyramidal_tiff(tmp_path / ("slide.ome.tif" if ome else "slide.tif"), tumour, mpp=0.25, ome=ome)
    with open_slide(path) as slide:
        assert slide.info.reader == ("tifffile" if ome else "openslide")
        assert slide.info.level_dimensions == [(1000, 1000), (500, 500), (250, 250)]
        assert slide.mpp == pytest.approx(0.25)
        region = slide.read_region((100, 200), 0, (50, 40))
        assert np.abs(region.astype(int) - tumour[200:240, 100:150]).mean() < 4  # JPEG tiles
        beyond = slide.read_region((990, 990), 0, (20, 20))
        assert (beyond[12:, 12:] == 255).all()  # past the edge reads as glass
        assert slide.thumbnail(100).shape == (100, 100, 3)


def test_the_reader_registry_tries_tifffile_first_for_ome_tiff_only(tmp_path, tumour):
    """OME-TIFF keeps its pyramid where OpenSlide does not look: the registry puts tifffile first for
    it, and keeps its own order (OpenSlide, then tifffile) for everything else."""
    from slideiqa.io.backends.registry import BACKENDS, backends_for

    ome = write_pyramidal_tiff(tmp_path / "slide.ome.tif", tumour, mpp=0.25, ome=True)
    plain = write_pyramidal_tiff(tmp_path / "slide.tif", tumour, mpp=0.25)
    assert [backend.name for backend in BACKENDS] == ["openslide", "tifffile"]
    assert [backend.name for backend in backends_for(ome)] == ["tifffile", "openslide"]
    assert [backend.name for backend in backends_for(plain)] == ["openslide", "tifffile"]
    assert [backend.name for backend in backends_for(CMU_SLIDE)] == ["openslide", "tifffile"]
    with pytest.raises(SlideError, match="truncated"):  # a TIFF cut short is refused before any reader
        backends_for(truncated_copy(plain, tmp_path / "cut.tif", 0.6))


def test_plain_field_image_is_a_one_level_slide():
    with open_slide(FIELDS / "ihc_colon.png") as slide:
        assert slide.info.reader == "pillow" and slide.dimensions == (512, 512) and slide.level_count == 1
        assert slide.mpp is None


@pytest.mark.parametrize(
    "name, cause",
    [
        ("unopenable.tiff", "Unsupported TIFF compression"),
        ("unreadable.svs", "cannot decode the region"),
    ],
)
def test_broken_fixtures(name, cause):
    with pytest.raises(SlideError, match=cause) as error:
        open_slide(FIXTURES / name)
    assert name in str(error.value)


def test_missing_empty_and_non_slide_files(tmp_path):
    with pytest.raises(SlideError, match="no such file"):
        open_slide(tmp_path / "missing.svs")
    (tmp_path / "empty.svs").write_bytes(b"")
    with pytest.raises(SlideError, match=r"empty\.svs: empty file"):
        open_slide(tmp_path / "empty.svs")
    (tmp_path / "notes.txt").write_text("not a slide")
    with pytest.raises(SlideError, match=r"notes\.txt: not a slide or image"):
        open_slide(tmp_path / "notes.txt")


def test_truncated_slide_fails_when_its_missing_tiles_are_read(tmp_path, tumour):
    path = write_pyramidal_tiff(tmp_path / "whole.tif", tumour, mpp=0.25, levels=1)
    cut = truncated_copy(path, tmp_path / "cut.tif", 0.6)
    with pytest.raises(SlideError, match="cut.tif"), open_slide(cut) as slide:
        slide.read_region((0, 0), 0, (1000, 1000))


def test_info_command():
    result = subprocess.run(
        [sys.executable, "-m", "slideiqa.cli.app", "info", str(CMU_SLIDE)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "aperio" in result.stdout and "0.499" in result.stdout and "2220 × 2967" in result.stdout
    assert "label, macro, thumbnail" in result.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "slideiqa.cli.app", "info", str(FIXTURES / "unopenable.tiff")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and "unopenable.tiff" in bad.stderr
