"""Files that would take the machine's memory or hours: refused in one line, or read in bounded
memory and time. Real files written here, real processes measured for their peak memory."""

import subprocess
import sys
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from slideiqa import map_slide, open_map
from slideiqa.io.slide import READ_BUDGET_BYTES, open_slide
from slideiqa.pipeline import plan

from paths import ROOT
from slides import write_pyramidal_tiff

#: A 20000 × 20000 RGB strip decodes to 1.2 GB, just past the read budget; deflate packs it in ~1 MB.
BOMB_SIDE = 20_000


def _deflate_bomb(path) -> None:
    """One deflate strip of zeros for the whole image, compressed piece by piece (never held whole)."""
    compressor = zlib.compressobj(9)
    rows = bytes(BOMB_SIDE * 3 * 1000)
    strip = b"".join([compressor.compress(rows) for _ in range(BOMB_SIDE // 1000)] + [compressor.flush()])
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            iter([strip]),
            shape=(BOMB_SIDE, BOMB_SIDE, 3),
            dtype=np.uint8,
            compression="zlib",
            rowsperstrip=BOMB_SIDE,
            photometric="rgb",
        )


def _map_measuring_memory(*arguments) -> tuple[subprocess.CompletedProcess, float]:
    """``slideiqa map`` in a child of a fresh interpreter, and the child's peak RSS in MB."""
    probe = (
        "import resource, subprocess, sys; "
        "done = subprocess.run([sys.executable, '-m', 'slideiqa.cli.app', 'map', *sys.argv[1:]], "
        "capture_output=True, text=True); "
        "print(done.returncode); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024); "
        "sys.stderr.write(done.stderr)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, *map(str, arguments)], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    returncode, peak_mb = result.stdout.split()
    result.returncode = int(returncode)
    return result, float(peak_mb)


def _one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.slow
def test_a_deflate_bomb_is_refused_in_one_line_within_bounded_memory(tmp_path):
    bomb = tmp_path / "bomb.tif"
    _deflate_bomb(bomb)
    assert bomb.stat().st_size < 2 << 20
    out = tmp_path / "bomb.quality.zarr"
    result, peak_mb = _map_measuring_memory(bomb, "-o", out, "--mpp", "0.5")
    line = _one_line(result)
    assert "bomb.tif: one strip of this TIFF decodes to 1.1 GiB" in line and "tiled pyramidal TIFF" in line
    assert peak_mb < 600, f"peak RSS {peak_mb:.0f} MB"  # decoding the strip alone would take 1.2 GB
    assert not out.exists()


def test_a_plain_image_larger_than_the_budget_is_refused_before_decoding(tmp_path):
    huge = tmp_path / "huge.png"
    Image.new("1", (BOMB_SIDE, BOMB_SIDE)).save(huge)  # bilevel: 50 MB to write, 1.2 GB as RGB
    assert BOMB_SIDE**2 * 3 > READ_BUDGET_BYTES
    result, peak_mb = _map_measuring_memory(huge, "-o", tmp_path / "huge.quality.zarr", "--mpp", "0.5")
    assert "huge.png: a plain 20,000 × 20,000 px image decodes to 1.1 GiB" in _one_line(result)
    assert peak_mb < 600, f"peak RSS {peak_mb:.0f} MB"


def test_a_single_strip_tiff_is_decoded_once_and_maps_like_its_tiled_copy(phantom, phantom_map, tmp_path):
    """As Fiji writes: the whole image in one strip. Through the Zarr view every tile would decode
    the whole strip again (7 tiles/s for an 8k image); held after one decode, it maps like a tiled one."""
    with open_slide(phantom) as slide:
        pixels = slide.read_region((0, 0), 0, slide.dimensions)
    strip = tmp_path / "fiji.tif"
    tifffile.imwrite(
        strip,
        pixels,
        photometric="rgb",
        rowsperstrip=pixels.shape[0],
        resolution=(2e4, 2e4),
        resolutionunit="CENTIMETER",
    )
    with open_slide(strip) as slide:
        assert slide.info.reader == "tifffile" and slide._reader.hold == [True]
        np.testing.assert_array_equal(slide.read_region((100, 200), 0, (300, 300)), pixels[200:500, 100:400])
    result = map_slide(strip, tmp_path / "fiji.quality.zarr")
    quality, reference = open_map(result.path), open_map(phantom_map.path)
    both = ~np.isnan(quality.array("score")) & ~np.isnan(reference.array("score"))
    assert both.sum() >= 0.9 * (~np.isnan(reference.array("score"))).sum()
    np.testing.assert_allclose(quality.array("score")[both], reference.array("score")[both], atol=1e-5)


def test_a_slide_without_pyramid_says_how_long_its_tissue_mask_takes(phantom, tmp_path, monkeypatch):
    with open_slide(phantom) as slide:
        pixels = slide.read_region((0, 0), 0, slide.dimensions)
    flat = write_pyramidal_tiff(tmp_path / "flat.tif", pixels, mpp=0.5, levels=1, compression="zlib")
    # The real threshold is 400 Mpx (a gigapixel level); this slide's 3.2 Mpx stand in for one.
    monkeypatch.setattr(plan, "SLOW_THUMBNAIL_PIXELS", 1_000_000)
    notices: list[str] = []
    map_slide(flat, tmp_path / "flat.quality.zarr", notice=notices.append)
    assert len(notices) == 1
    assert "flat.tif: the slide has no pyramid, so its tissue mask decodes all 3 Mpx of level 0: about" in notices[0]
    notices.clear()
    map_slide(phantom, tmp_path / "pyramid.quality.zarr", notice=notices.append)  # its level 2 suffices
    assert notices == []
