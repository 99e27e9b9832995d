"""JPEG tiles decoded at reduced size must be the image OpenSlide gives, shrunk: real files (the
bundled Aperio SVS, whose JPEG is RGB, and tifffile-written YCbCr pyramids of a 40× H&E field), read
by real OpenSlide as the reference; a map of a 40× slide by either path; and a tile the scaled decoder
will not take, read by OpenSlide instead and counted."""

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from slideiqa import map_slide, open_map
from slideiqa.io.scaled_decode import ScaledDecodeError, scale_factor
from slideiqa.io.slide import DECODER_VARIABLE, open_slide

from paths import CMU_SLIDE
from slides import tiles_over, write_pyramidal_tiff


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def _shrunk_reference(slide, location, size, factor):
    """OpenSlide's pixels from the same (factor-aligned) corner, shrunk with the map's Lanczos filter."""
    snapped = (location[0] - location[0] % factor, location[1] - location[1] % factor)
    full = slide.read_region(snapped, 0, size)
    out = (-(-size[0] // factor), -(-size[1] // factor))
    return np.asarray(Image.fromarray(full).resize(out, Image.Resampling.LANCZOS))


@pytest.fixture(scope="module")
def slide_40x(tumour_field, tmp_path_factory):
    """A 40× (0.25 µm/px) slide of the real tumour field, 2 × 2 copies, Aperio-like levels 1× and 4×:
    a 0.5 µm/px model must read level 0 and shrink it by two."""
    path = tmp_path_factory.mktemp("forty") / "forty.tif"
    return write_pyramidal_tiff(path, np.tile(tumour_field, (2, 2, 1)), mpp=0.25, levels=2, level_step=4)


@pytest.mark.parametrize("which", ["aperio_rgb", "ycbcr_40x"])
def test_full_size_decode_is_openslide_pixel_for_pixel(which, slide_40x):
    path = CMU_SLIDE if which == "aperio_rgb" else slide_40x
    with open_slide(path) as slide:
        assert 0 in slide.scaled.levels
        width, height = slide.dimensions
        # aligned, unaligned, and over the right/bottom edges (white beyond, as OpenSlide gives)
        for location in ((240, 480), (1001, 333), (width - 300, height - 200)):
            reference = slide.read_region(location, 0, (448, 448))
            assert np.array_equal(slide.read_region_scaled(location, 0, (448, 448), 1), reference), location


@pytest.mark.parametrize("which", ["aperio_rgb", "ycbcr_40x"])
def test_half_and_quarter_decode_match_openslide_shrunk(which, slide_40x):
    path = CMU_SLIDE if which == "aperio_rgb" else slide_40x
    with open_slide(path) as slide:
        for location in ((960, 720), (1001, 333)):
            for factor, floor_db in ((2, 35.0), (4, 31.0)):
                scaled = slide.read_region_scaled(location, 0, (448, 448), factor)
                assert scaled.shape == (448 // factor, 448 // factor, 3)
                psnr = _psnr(scaled, _shrunk_reference(slide, location, (448, 448), factor))
                assert psnr >= floor_db, (location, factor, psnr)


def test_scale_factor_keeps_at_least_the_model_tile():
    assert scale_factor(448, 224) == 2 and scale_factor(896, 224) == 4 and scale_factor(1792, 224) == 8
    assert scale_factor(447, 224) == 1 and scale_factor(600, 224) == 2 and scale_factor(224, 224) == 1


def _map(slide, out, monkeypatch, decoder):
    monkeypatch.setenv(DECODER_VARIABLE, decoder)
    return map_slide(slide, out, workers=1, block=4)


def test_a_40x_map_by_scaled_decode_agrees_with_the_openslide_path(slide_40x, tmp_path, monkeypatch):
    fast = _map(slide_40x, tmp_path / "fast.quality.zarr", monkeypatch, "scaled")
    general = _map(slide_40x, tmp_path / "general.quality.zarr", monkeypatch, "openslide")
    assert fast.summary.reading == {
        "level": 0,
        "read_px": 448,
        "decode_factor": 2,
        "native_pixels": False,  # shrunk: a JPEG lattice would not survive, the network's call stands
        "decoder": "scaled JPEG",
        "fallback_tiles": 0,
    }
    assert general.summary.reading["decoder"] == "openslide"
    assert general.summary.reading["decode_factor"] == 1
    a, b = open_map(fast.path).array("score"), open_map(general.path).array("score")
    assessed = ~np.isnan(b)
    assert assessed.sum() >= 20 and np.array_equal(assessed, ~np.isnan(a))
    # Tiles inside the image: the model's judgement moves by about what a one-pixel shift moves it.
    inside = np.zeros_like(assessed)
    inside[: 2000 // 448, : 2000 // 448] = True
    difference = np.abs(a - b)[assessed & inside]
    assert difference.mean() < 0.01 and difference.max() < 0.03, (difference.mean(), difference.max())
    # Tiles over the image edge (half of them beyond it, white) differ more: the general path's
    # Lanczos filter rings across the edge, the scaled decode stops at it. Still the same verdicts.
    assert np.abs(a - b)[assessed].max() < 0.2
    assert fast.summary.verdict == general.summary.verdict
    # What a lab sees does not depend on the decoder: no tile crosses the threshold, every tissue
    # tile keeps its label (debris and the slide's tone are read on block means, not single pixels).
    assert not ((a >= 0.5) != (b >= 0.5))[assessed].any()
    np.testing.assert_array_equal(open_map(fast.path).array("label"), open_map(general.path).array("label"))


def test_a_20x_map_decoded_directly_is_the_openslide_map_bit_for_bit(tmp_path, monkeypatch):
    """At the model's own scale every JPEG tile is decoded once at full size: the same pixels as
    OpenSlide's, so the same map to the last bit, edge tiles included."""
    direct = _map(CMU_SLIDE, tmp_path / "direct.quality.zarr", monkeypatch, "scaled")
    general = _map(CMU_SLIDE, tmp_path / "general.quality.zarr", monkeypatch, "openslide")
    assert direct.summary.reading == {
        "level": 0,
        "read_px": 224,
        "decode_factor": 1,
        "native_pixels": True,  # the file's own pixels: the measured JPEG step decides
        "decoder": "direct JPEG",
        "fallback_tiles": 0,
    }
    assert general.summary.reading["decoder"] == "openslide"
    fast, slow = open_map(direct.path), open_map(general.path)
    for name in ("probs", "score", "label", "tone"):
        np.testing.assert_array_equal(fast.array(name), slow.array(name), err_msg=name)
    assert direct.summary.verdict == general.summary.verdict


@pytest.mark.parametrize("which", ["aperio_rgb", "ycbcr_40x"])
def test_a_thumbnail_decoded_directly_is_the_openslide_thumbnail(which, slide_40x, monkeypatch):
    """The tissue mask's thumbnail is read in pieces by the direct decode too (nothing left in
    OpenSlide's tile cache): pieces of 1000 px, so that several tiles and pieces meet."""
    path = CMU_SLIDE if which == "aperio_rgb" else slide_40x
    with open_slide(path) as slide:
        assert slide.scaled is not None
        direct = slide.thumbnail(700, block=1000)
    monkeypatch.setenv(DECODER_VARIABLE, "openslide")
    with open_slide(path) as slide:
        assert slide.scaled is None
        np.testing.assert_array_equal(direct, slide.thumbnail(700, block=1000))


@pytest.fixture(scope="module")
def slide_20x(tumour_field, tmp_path_factory):
    """The real tumour field at the model's own 0.5 µm/px, 2 × 2 copies: read at full size."""
    path = tmp_path_factory.mktemp("twenty") / "twenty.tif"
    return write_pyramidal_tiff(path, np.tile(tumour_field, (2, 2, 1)), mpp=0.5, levels=2, level_step=4)


@pytest.mark.parametrize("scale", ["40x", "20x"])
def test_a_tile_the_scaled_decoder_rejects_is_read_by_openslide_and_counted(
    scale, slide_40x, slide_20x, tmp_path, monkeypatch
):
    """A tile with no bytes (sparse TIFFs leave out empty tiles): OpenSlide draws it as glass, the
    JPEG decoder hands it over, at ½ size or in full; the summary counts every grid tile that needed it."""
    source, factor, step = (slide_40x, 2, 448) if scale == "40x" else (slide_20x, 1, 224)
    broken = tmp_path / "sparse.tif"
    broken.write_bytes(source.read_bytes())
    with tifffile.TiffFile(broken) as tiff:
        page = tiff.pages[0]
        counts = page.tags["TileByteCounts"]
        per_row = -(-page.imagewidth // page.tilewidth)
        index = 2 * per_row + 3
        box = (
            (index % per_row) * 256,
            (index // per_row) * 256,
            (index % per_row + 1) * 256,
            (index // per_row + 1) * 256,
        )
        width = 8 if tiff.is_bigtiff else 4
        offset, byteorder = counts.valueoffset + index * width, "little" if tiff.byteorder == "<" else "big"
    with open(broken, "r+b") as handle:
        handle.seek(offset)
        handle.write((0).to_bytes(width, byteorder))
    with open_slide(broken) as slide:
        with pytest.raises(ScaledDecodeError, match="is empty"):
            slide.read_region_scaled((box[0], box[1]), 0, (256, 256), factor)
        assert slide.read_region((box[0], box[1]), 0, (256, 256)).min() == 255  # glass, by OpenSlide
    result = _map(broken, tmp_path / "sparse.quality.zarr", monkeypatch, "scaled")
    stored = open_map(result.path)
    assessed = ~np.isnan(stored.array("score"))
    assert result.summary.reading["decode_factor"] == factor
    over = tiles_over(box, step, assessed.shape) & assessed
    assert over.sum() >= 1
    assert result.summary.reading["fallback_tiles"] == int(over.sum())
    assert json.loads((result.path / "summary.json").read_text())["reading"]["fallback_tiles"] == int(over.sum())


def test_the_tile_cache_drops_the_least_recently_used_past_its_bounds():
    from slideiqa.io.scaled_decode import TileCache

    cache, decoded = TileCache(max_bytes=3 * 100, max_tiles=10), []

    def tile(key):
        def decode():
            decoded.append(key)
            return np.full(100, key, np.uint8)

        return cache.get((key,), decode)

    for key in (1, 2, 3, 1, 4):  # 1 used again before 4 comes: 2 is the least recently used
        tile(key)
    assert cache.nbytes == 300 and decoded == [1, 2, 3, 4]
    tile(1), tile(3), tile(4)
    assert decoded == [1, 2, 3, 4]
    tile(2)
    assert decoded == [1, 2, 3, 4, 2] and cache.nbytes == 300
    few = TileCache(max_bytes=10**6, max_tiles=2)
    for key in range(5):
        few.get((key,), lambda key=key: np.zeros(10, np.uint8))
    assert few.nbytes == 20


def test_one_cache_for_every_open_slide_keeps_each_slides_own_pixels(slide_40x, slide_20x):
    """The decoded tiles of all open slides share one bounded cache (a batch worker keeps eight open);
    tiles at the same place of different slides never stand in for each other."""
    from slideiqa.io import scaled_decode

    with open_slide(slide_20x) as a, open_slide(CMU_SLIDE) as b, open_slide(slide_40x) as c:
        for slide in (a, b, c):
            for y in range(0, 1400, 224):
                for x in range(0, 1400, 224):
                    slide.read_region_scaled((x, y), 0, (224, 224), 1)
            assert scaled_decode._TILES.nbytes <= scaled_decode.CACHE_BYTES
        for slide in (a, b, c):
            np.testing.assert_array_equal(
                slide.read_region_scaled((448, 448), 0, (224, 224), 1), slide.read_region((448, 448), 0, (224, 224))
            )
