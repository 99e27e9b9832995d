"""Opening slides of any kind behind one small interface: :class:`Slide`, and :func:`open_slide`.

Three readers (``io/backends/``, their order in ``io/backends/registry.py``):

* **OpenSlide** for every format it knows (Aperio SVS, Hamamatsu NDPI/VMS, MIRAX, Leica SCN, Ventana
  BIF, Philips TIFF, DICOM WSI, generic tiled TIFF).
* **tifffile** for OME-TIFF and pyramidal TIFFs OpenSlide does not open (strip-based, SubIFD pyramids,
  unusual compression); regions are read through tifffile's Zarr view, so only the touched tiles or
  strips are decoded.
* **Pillow** for plain field images (PNG, JPEG, small TIFF): a cytology or smear field is a one-level slide.

Every reader returns uint8 RGB regions addressed in level-0 coordinates, as OpenSlide does, and knows
its pixel size in µm/px when the file says it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from slideiqa.errors import SlideIQAError
from slideiqa.io.formats import is_field_name
from slideiqa.io.scaled_decode import ScaledDecodeError, ScaledJpegReader, open_scaled_reader

#: The most bytes one decode may produce: a tile or strip larger than this, or a plain image
#: larger than this decoded, is refused with an error instead of taking the machine's memory.
READ_BUDGET_BYTES = 1 << 30
Image.MAX_IMAGE_PIXELS = READ_BUDGET_BYTES // 3  # Pillow's own guard, at the same size
#: Side in level pixels below which an undecodable part of a thumbnail is not split further.
SMALLEST_GAP = 256


class SlideError(SlideIQAError):
    """A slide cannot be opened or read; the message names the file and the cause."""


class UnreadableRegion(SlideError):
    """One region of an otherwise readable slide cannot be decoded (a corrupt tile or strip): the
    rest of the slide can still be read, so a map records the region as unreadable and goes on."""


@dataclass
class SlideInfo:
    """What ``slideiqa info`` prints and what a quality map records about its slide."""

    path: str
    reader: str
    vendor: str
    level_dimensions: list[tuple[int, int]]
    level_downsamples: list[float]
    mpp: tuple[float, float] | None
    objective_power: float | None
    associated_images: list[str] = field(default_factory=list)
    #: The scanner's name or model, when the file says it.
    scanner: str | None = None
    #: When it was scanned, as the file writes it.
    acquired: str | None = None
    #: Width and height of the stored tiles of level 0 (None for strips or plain images).
    tile_size: tuple[int, int] | None = None
    #: How level 0 is compressed (JPEG, JPEG 2000, LZW, PNG…).
    compression: str | None = None

    @property
    def size_mm(self) -> tuple[float, float] | None:
        """Level 0's width and height on the glass, in mm (None without a pixel size)."""
        if self.mpp is None:
            return None
        (width, height), (mpp_x, mpp_y) = self.level_dimensions[0], self.mpp
        return width * mpp_x / 1000, height * mpp_y / 1000

    def to_dict(self) -> dict:
        return asdict(self) | {"size_mm": self.size_mm}


class Reader(Protocol):
    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray: ...
    def close(self) -> None: ...


class Slide:
    """An open slide: levels, pixel size, and region reads in level-0 coordinates."""

    def __init__(self, path: Path, reader: Reader, info: SlideInfo) -> None:
        self.path = path
        self._reader = reader
        self.info = info
        #: Opens a fresh reader of the same file (set by :func:`open_slide`); see :meth:`read_region`.
        self._reopen: Callable[[], Reader] | None = None
        #: Reduced-size JPEG decode of the levels it covers (set by :func:`open_slide`), else None.
        self.scaled: ScaledJpegReader | None = None

    # -- geometry ---------------------------------------------------------------------------------
    @property
    def dimensions(self) -> tuple[int, int]:
        return self.info.level_dimensions[0]

    @property
    def level_count(self) -> int:
        return len(self.info.level_dimensions)

    @property
    def mpp(self) -> float | None:
        """Level-0 µm per pixel (the mean of x and y), or None when the file does not say."""
        return None if self.info.mpp is None else float(np.mean(self.info.mpp))

    def best_level_for_downsample(self, downsample: float) -> int:
        """The smallest level that is still at least as fine as ``downsample`` (so we only ever
        shrink when resizing, never enlarge)."""
        candidates = [i for i, d in enumerate(self.info.level_downsamples) if d <= downsample * 1.001]
        return max(candidates, key=lambda i: self.info.level_downsamples[i]) if candidates else 0

    # -- pixels ---------------------------------------------------------------------------------
    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """(height, width, 3) uint8 RGB; ``location`` in level-0 pixels, ``size`` in level pixels.
        Outside the image is white, as glass.

        A failed decode is retried once on a freshly opened handle: OpenSlide's errors are sticky
        (after one corrupt tile every later read on that handle fails, clean ones too), and a slide
        handle is shared by threads, so a failure may be another thread's corrupt tile. Only a region
        that fails on a fresh handle too is :class:`UnreadableRegion`; the fresh handle then replaces
        the shared one (the old one is closed when its last reader lets go of it).
        """
        reader = self._reader
        try:
            return reader.read_region(location, level, size)
        except SlideError:
            raise
        except Exception as error:  # corrupt tiles surface only when decoded
            if self._reopen is None:
                raise self._unreadable(location, level, size, error) from None
        fresh = self._reopen()
        try:
            pixels = fresh.read_region(location, level, size)
        except Exception as error:
            fresh.close()  # poisoned by this region, and no other thread has seen it
            raise self._unreadable(location, level, size, error) from None
        self._reader = fresh
        return pixels

    def read_region_scaled(
        self, location: tuple[int, int], level: int, size: tuple[int, int], factor: int
    ) -> np.ndarray:
        """:meth:`read_region` shrunk ``factor`` times inside the JPEG decoder (``ceil(size / factor)``
        pixels); :class:`~slideiqa.io.scaled_decode.ScaledDecodeError` where a tile will not decode
        that way, and the caller reads the region by :meth:`read_region` instead."""
        if self.scaled is None or level not in self.scaled.levels:
            raise ScaledDecodeError(f"{self.path}: level {level} has no scaled JPEG decode")
        downsample = self.info.level_downsamples[level]
        x, y = round(location[0] / downsample), round(location[1] / downsample)
        return self.scaled.read_region(x, y, size[0], size[1], level, factor)

    def read_region_direct(
        self, location: tuple[int, int], level: int, size: tuple[int, int], factor: int = 1
    ) -> tuple[np.ndarray, bool]:
        """:meth:`read_region_scaled` where the level's JPEG tiles can be decoded directly (at full size
        the same pixels as :meth:`read_region`, each file tile decoded once and nothing kept in
        OpenSlide's tile cache), else :meth:`read_region`; and whether a tile the decoder rejected
        sent the region to the general reader. A level without direct decode is read in full."""
        if self.scaled is not None and level in self.scaled.levels:
            try:
                return self.read_region_scaled(location, level, size, factor), False
            except ScaledDecodeError:
                return self.read_region(location, level, size), True
        return self.read_region(location, level, size), False

    def _unreadable(
        self, location: tuple[int, int], level: int, size: tuple[int, int], error: Exception
    ) -> UnreadableRegion:
        downsample = self.info.level_downsamples[level]
        width, height = round(size[0] * downsample), round(size[1] * downsample)
        return UnreadableRegion(
            f"{self.path}: cannot decode the region x {location[0]}–{location[0] + width}, "
            f"y {location[1]}–{location[1] + height} (level-0 px, read at level {level}): {error}"
        )

    def thumbnail_level(self, max_size: int) -> int:
        """The level :meth:`thumbnail` reads: the coarsest one still at least ``max_size`` px across."""
        width, height = self.dimensions
        return self.best_level_for_downsample(max(max(width, height) / max_size, 1.0))

    def thumbnail(
        self,
        max_size: int,
        block: int = 4096,
        gaps: list[tuple[int, int, int, int]] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """The whole slide shrunk to fit ``max_size`` px, from the coarsest sufficient level.

        The level is read in ``block``-sized pieces, each shrunk before the next is read, so memory
        stays bounded even when the slide has no pyramid and the only level is gigapixel-sized. A
        piece that cannot be decoded is split down to :data:`SMALLEST_GAP` px to keep what can be
        read; what cannot is left white and, when ``gaps`` is given, appended to it as
        (x0, y0, x1, y1) thumbnail pixels, so that a caller can tell unknown from glass.
        ``progress(pixels_read, pixels_in_all)`` is called after each piece, in level pixels.
        """
        level = self.thumbnail_level(max_size)
        level_width, level_height = self.info.level_dimensions[level]
        scale = max(1.0, max(level_width, level_height) / max_size)
        out_width, out_height = max(1, round(level_width / scale)), max(1, round(level_height / scale))
        thumbnail = np.full((out_height, out_width, 3), 255, np.uint8)
        downsample = self.info.level_downsamples[level]

        def paint(left: int, top: int, right: int, bottom: int) -> None:
            y0, y1 = round(top / scale), round(bottom / scale)
            x0, x1 = round(left / scale), round(right / scale)
            if y1 <= y0 or x1 <= x0:
                return
            try:
                pixels, _ = self.read_region_direct(
                    (int(left * downsample), int(top * downsample)), level, (right - left, bottom - top)
                )
            except UnreadableRegion:
                if max(right - left, bottom - top) <= SMALLEST_GAP:
                    if gaps is not None:
                        gaps.append((x0, y0, x1, y1))
                    return
                middle_x, middle_y = (left + right) // 2, (top + bottom) // 2
                for box in (
                    (left, top, middle_x, middle_y),
                    (middle_x, top, right, middle_y),
                    (left, middle_y, middle_x, bottom),
                    (middle_x, middle_y, right, bottom),
                ):
                    if box[2] > box[0] and box[3] > box[1]:
                        paint(*box)
                return
            if (y1 - y0, x1 - x0) != pixels.shape[:2]:
                pixels = np.asarray(Image.fromarray(pixels).resize((x1 - x0, y1 - y0), Image.Resampling.BOX))
            thumbnail[y0:y1, x0:x1] = pixels

        done = 0
        for top in range(0, level_height, block):
            for left in range(0, level_width, block):
                right, bottom = min(left + block, level_width), min(top + block, level_height)
                paint(left, top, right, bottom)
                done += (right - left) * (bottom - top)
                if progress:
                    progress(done, level_width * level_height)
        return thumbnail

    def close(self) -> None:
        self._reader.close()
        if self.scaled is not None:
            self.scaled.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: Coarser than this is no microscope pixel: writers put 72 dpi (352 µm/px) in files that have no size.
MAX_PLAUSIBLE_MPP = 50.0


def plausible_mpp(mpp: tuple[float | None, float | None] | None) -> tuple[float, float] | None:
    if mpp is None or mpp[0] is None or not 0 < mpp[0] < MAX_PLAUSIBLE_MPP:
        return None
    return float(mpp[0]), float(mpp[1] or mpp[0])


def positive_float(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def on_glass(
    origin: tuple[int, int],
    size: tuple[int, int],
    bounds: tuple[int, int],
    pixels: Callable[[slice, slice], np.ndarray],
) -> np.ndarray:
    """A (height, width, 3) region at ``origin`` of an image ``bounds`` = (width, height) px large:
    what ``pixels(rows, cols)`` gives inside the image, white (glass) outside it, as OpenSlide reads
    past a slide's edge."""
    (x0, y0), (width, height) = origin, size
    out = np.full((height, width, 3), 255, np.uint8)
    xs, ys, xe, ye = max(x0, 0), max(y0, 0), min(x0 + width, bounds[0]), min(y0 + height, bounds[1])
    if xe > xs and ye > ys:
        out[ys - y0 : ye - y0, xs - x0 : xe - x0] = pixels(slice(ys, ye), slice(xs, xe))
    return out


def beyond_budget(path: Path, what: str) -> SlideError:
    return SlideError(
        f"{path}: {what}, more than the {gigabytes(READ_BUDGET_BYTES)} slideiqa decodes at once; "
        "convert it to a tiled pyramidal TIFF (e.g. vips tiffsave IN OUT --tile --pyramid "
        "--compression jpeg)"
    )


def gigabytes(count: int) -> str:
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"


#: Set to ``openslide`` to read every tile by the general path (comparisons, or a decoder in doubt).
DECODER_VARIABLE = "SLIDEIQA_DECODER"
#: Formats whose TIFF pages are their levels tile for tile, so that decoding the JPEG tiles directly
#: gives the general reader's pixels. Others place tiles themselves (Ventana's overlaps, Leica's
#: offsets, Philips' cropped levels) and are read by OpenSlide only.
DIRECT_DECODE_VENDORS = frozenset({"aperio", "generic-tiff", "tiff", "ome-tiff"})


def open_slide(path: str | Path) -> Slide:
    """Open ``path`` with the first reader that understands it (:mod:`slideiqa.io.backends.registry`);
    a clear :class:`SlideError` if none does."""
    from slideiqa.io.backends.registry import FALLBACK, backends_for  # here: the backends import this module

    path = Path(path)
    if not path.exists():
        raise SlideError(f"{path}: no such file")
    if path.is_dir():
        raise SlideError(f"{path}: is a folder, not a slide file")
    if path.stat().st_size == 0:
        raise SlideError(f"{path}: empty file (0 bytes)")
    if not is_field_name(path):
        first_error: SlideError | None = None
        for backend in backends_for(path):
            try:
                slide = backend.open(path)
            except SlideError as error:  # the other reader may still manage (unusual compression, say)
                first_error = first_error or error
                continue
            if slide is not None:
                slide._reopen = lambda open_it=backend.open: open_it(path)._reader
                if (
                    os.environ.get(DECODER_VARIABLE, "scaled") != "openslide"
                    and slide.info.vendor in DIRECT_DECODE_VENDORS
                ):
                    slide.scaled = open_scaled_reader(path, slide.info.level_dimensions)
                return slide
        if first_error is not None:
            raise first_error
    return FALLBACK(path)


def file_checksum(path: str | Path, whole_below: int = 256 << 20, blocks: int = 256, block_size: int = 1 << 20) -> str:
    """SHA-256 of the file's size and content: the whole file up to ``whole_below`` bytes, and beyond
    that ``blocks`` blocks of ``block_size`` spread evenly from the first byte to the last — 256 MiB
    read at most, a fraction of a second even for a 5 GB slide, while a slide rewritten anywhere
    but between two sampled blocks is noticed (a rewrite moves offsets and headers too)."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        if size <= whole_below:
            digest.update(handle.read())
        else:
            for offset in np.linspace(0, size - block_size, blocks).astype(np.int64):
                handle.seek(int(offset))
                digest.update(handle.read(block_size))
    return digest.hexdigest()
