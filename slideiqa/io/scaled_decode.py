"""Reading a pyramid level's JPEG tiles directly: at full size, or at ½, ¼ or ⅛ of it inside the decoder.

At full size. OpenSlide reads a region at a time: a 224 px tile of a slide with 512 px JPEG tiles
touches up to four of them, and each region is converted from premultiplied ARGB. Decoded here, each
file tile is decoded once and cut into the grid tiles over it (the cache below), and the pixels are
OpenSlide's to the bit (the same libjpeg-turbo, the same islow IDCT and fancy upsampling; pinned by
``tests/io/test_scaled_decode.py``): 0.5–0.6 ms a tile here against 2.4–3.0 through OpenSlide, block
by block as a map reads them.

At reduced size. A 40× slide (0.25 µm/px) mapped by a 0.5 µm/px model has no pyramid level at the model's scale (the
next one is 4× coarser), so each tile is read at level 0 and shrunk by two: OpenSlide decodes four
times the pixels the model sees and an antialiasing filter then throws three quarters of them away.
libjpeg-turbo can instead run the inverse DCT at reduced size ("DCT scaling"): a 256 px tile comes
out as 128 px directly, already low-pass filtered by dropping the highest frequencies, at no extra
cost. This module reads the compressed tiles itself with tifffile (offsets, byte counts, the shared
JPEG tables of the TIFF) and decodes them scaled with simplejpeg.

Scope: tiled TIFF levels (Aperio SVS, generic pyramidal TIFF) with 8-bit 3-sample JPEG tiles, in
either photometric interpretation. Aperio stores RGB JPEG without the YCbCr transform; libjpeg would
take a 3-component stream without a marker for YCbCr, so for RGB levels an Adobe APP14 marker with
transform 0 is inserted, which is how JPEG says "these components are RGB". Any other level, or any
tile the decoder rejects, is read by the caller's general path (OpenSlide), and counted.

A region is read from the multiple of the factor at or before its corner (TIFF tile sides are
multiples of 16, so every tile then lands on whole scaled pixels): less than one scaled pixel, a
quarter of a micrometre at ½ of a 40× level, from where the general path starts.
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Scale factors libjpeg-turbo's scaled IDCT offers that slideiqa uses (power-of-two shrinks).
FACTORS = (8, 4, 2)
#: TIFF tags: compression 7 is "new-style" JPEG, photometric 2 RGB and 6 YCbCr.
JPEG, RGB, YCBCR = 7, 2, 6
#: APP14 "Adobe" segment, version 100, flags 0, transform 0 (no colour transform: components are RGB).
ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"
#: Decoded tiles kept in a process, of every file together: a map's threads each read a block row by
#: row, and a row of file tiles (eight 512 px tiles across a default block of 16 grid tiles) serves
#: two or three rows of grid tiles. Shared, so that a batch worker's open slides (eight) do not keep a cache each.
CACHE_BYTES = 48 << 20
#: ... and never more tiles than this, however small (a 40× level's tiles at ½: 25 MB).
MAX_CACHED_TILES = 512


class TileCache:
    """Decoded tiles by key, the least recently used dropped past ``max_bytes`` or ``max_tiles``;
    thread-safe. A tile is decoded outside the lock: two threads may both decode one, never wait."""

    def __init__(self, max_bytes: int, max_tiles: int) -> None:
        self.max_bytes, self.max_tiles = max_bytes, max_tiles
        self._tiles: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple, decode: Callable[[], np.ndarray]) -> np.ndarray:
        with self._lock:
            tile = self._tiles.get(key)
            if tile is not None:
                self._tiles.move_to_end(key)
                return tile
        tile = decode()
        with self._lock:
            if key not in self._tiles:
                self._tiles[key] = tile
                self._bytes += tile.nbytes
                while len(self._tiles) > 1 and (self._bytes > self.max_bytes or len(self._tiles) > self.max_tiles):
                    self._bytes -= self._tiles.popitem(last=False)[1].nbytes
        return tile

    @property
    def nbytes(self) -> int:
        return self._bytes


#: The process's decoded tiles, keyed by (reader, level, factor, tile index).
_TILES = TileCache(CACHE_BYTES, MAX_CACHED_TILES)
#: A number for each reader, never reused (an object's id is, once it is gone).
_READERS = itertools.count()


class ScaledDecodeError(Exception):
    """A tile the scaled decoder cannot decode; the caller reads the region by its general path."""


@dataclass(frozen=True)
class _LevelLayout:
    width: int
    height: int
    tile_width: int
    tile_height: int
    offsets: tuple[int, ...]
    byte_counts: tuple[int, ...]
    header: bytes  # SOI, optional APP14, and the level's shared tables, without their EOI

    @property
    def columns(self) -> int:
        return -(-self.width // self.tile_width)


def _header(page) -> bytes:
    """What goes before each tile's own segments: SOI, the Adobe marker where the JPEG is RGB, and
    the shared JPEGTables (quantisation and Huffman tables) without their SOI and EOI."""
    tables = page.jpegtables or b""
    body = tables[2:-2] if tables.startswith(b"\xff\xd8") and tables.endswith(b"\xff\xd9") else b""
    return b"\xff\xd8" + (ADOBE_RGB if page.photometric == RGB else b"") + body


def _layout(page) -> _LevelLayout | None:
    """The tile layout of a page that the scaled decoder can read, else None."""
    supported = (
        page.is_tiled
        and page.compression == JPEG
        and page.photometric in (RGB, YCBCR)
        and page.samplesperpixel == 3
        and page.bitspersample == 8
        and page.planarconfig == 1
        and page.tilewidth % max(FACTORS) == 0
        and page.tilelength % max(FACTORS) == 0
    )
    if not supported:
        return None
    return _LevelLayout(
        page.imagewidth,
        page.imagelength,
        page.tilewidth,
        page.tilelength,
        tuple(page.dataoffsets),
        tuple(page.databytecounts),
        _header(page),
    )


class ScaledJpegReader:
    """Scaled region reads of the levels of one TIFF file whose tiles are JPEG.

    ``level_dimensions`` are the slide's levels as its general reader lists them; each is matched to
    the TIFF page of the same size. Thread-safe: tiles are read with ``os.pread``.
    """

    def __init__(self, path: str | Path, level_dimensions: list[tuple[int, int]]) -> None:
        import tifffile

        self.path = Path(path)
        with tifffile.TiffFile(self.path) as tiff:
            by_size: dict[tuple[int, int], list] = {}
            for page in tiff.pages:
                if not isinstance(page, tifffile.TiffPage):  # frames only where asked for (useframes)
                    continue
                by_size.setdefault((page.imagewidth, page.imagelength), []).append(page)
            self._levels: dict[int, _LevelLayout] = {}
            for level, size in enumerate(level_dimensions):
                candidates = [layout for layout in map(_layout, by_size.get((size[0], size[1]), [])) if layout]
                if len(candidates) == 1:
                    self._levels[level] = candidates[0]
        self._fd = os.open(self.path, os.O_RDONLY)
        self._lock = threading.Lock()
        self._number = next(_READERS)

    @property
    def levels(self) -> set[int]:
        """Levels whose tiles this reader can decode."""
        return set(self._levels)

    def read_region(self, x: int, y: int, width: int, height: int, level: int, factor: int) -> np.ndarray:
        """``(ceil(height / factor), ceil(width / factor), 3)`` uint8 RGB of the level's pixels
        ``[y, y + height) × [x, x + width)`` shrunk ``factor`` times, from the multiple of ``factor``
        at or before ``(x, y)``; outside the image is white.

        Raises :class:`ScaledDecodeError` where a tile cannot be decoded (nothing is half-read).
        """
        layout = self._levels[level]
        x, y = x - x % factor, y - y % factor
        out_w, out_h = -(-width // factor), -(-height // factor)
        canvas = np.full((out_h, out_w, 3), 255, np.uint8)
        first_col, last_col = max(0, x // layout.tile_width), min(layout.columns, -(-(x + width) // layout.tile_width))
        rows = -(-layout.height // layout.tile_height)
        first_row, last_row = max(0, y // layout.tile_height), min(rows, -(-(y + height) // layout.tile_height))
        for row in range(first_row, last_row):
            for col in range(first_col, last_col):
                index = row * layout.columns + col
                tile = _TILES.get(
                    (self._number, level, factor, index), functools.partial(self._decode_tile, level, index, factor)
                )
                tx, ty = col * layout.tile_width, row * layout.tile_height
                # The tile's part inside the image (edge tiles are padded in the file) and the region.
                valid_w = -(-min(layout.tile_width, layout.width - tx) // factor)
                valid_h = -(-min(layout.tile_height, layout.height - ty) // factor)
                left, top = (tx - x) // factor, (ty - y) // factor
                src_x0, src_y0 = max(0, -left), max(0, -top)
                dst_x0, dst_y0 = max(0, left), max(0, top)
                w = min(valid_w - src_x0, out_w - dst_x0)
                h = min(valid_h - src_y0, out_h - dst_y0)
                if w > 0 and h > 0:
                    canvas[dst_y0 : dst_y0 + h, dst_x0 : dst_x0 + w] = tile[src_y0 : src_y0 + h, src_x0 : src_x0 + w]
        return canvas

    def _decode_tile(self, level: int, index: int, factor: int) -> np.ndarray:
        import simplejpeg

        layout = self._levels[level]
        if layout.byte_counts[index] == 0:
            raise ScaledDecodeError(f"{self.path}: level {level} tile {index} is empty")
        data = os.pread(self._fd, layout.byte_counts[index], layout.offsets[index])
        if not data.startswith(b"\xff\xd8"):
            raise ScaledDecodeError(f"{self.path}: level {level} tile {index} is not a JPEG stream")
        try:
            tile = simplejpeg.decode_jpeg(
                layout.header + data[2:],
                colorspace="RGB",
                min_factor=factor,
                min_width=layout.tile_width // factor,
                min_height=layout.tile_height // factor,
            )
        except ValueError as error:
            raise ScaledDecodeError(f"{self.path}: level {level} tile {index}: {error}") from None
        expected = (-(-layout.tile_height // factor), -(-layout.tile_width // factor), 3)
        if tile.shape != expected:
            raise ScaledDecodeError(f"{self.path}: level {level} tile {index} decoded as {tile.shape}, not {expected}")
        tile.setflags(write=False)
        return tile

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def open_scaled_reader(path: str | Path, level_dimensions: list[tuple[int, int]]) -> ScaledJpegReader | None:
    """A scaled reader of the file's JPEG-tiled levels, or None where there is none (not a TIFF, no
    JPEG-tiled level, or simplejpeg not installed): the general path then reads everything."""
    try:
        import simplejpeg  # noqa: F401
    except ImportError:
        return None
    try:
        reader = ScaledJpegReader(path, level_dimensions)
    except Exception:  # not a TIFF, or one tifffile cannot parse: the general reader decides
        return None
    if not reader.levels:
        reader.close()
        return None
    return reader


def scale_factor(read_size: int, tile_size: int) -> int:
    """The largest shrink in FACTORS that still leaves at least ``tile_size`` pixels of a
    ``read_size`` read (the rest is done by the antialiasing resize); 1 where none does."""
    return next((f for f in FACTORS if read_size // f >= tile_size), 1)
