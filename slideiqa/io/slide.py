"""Opening slides of any kind behind one small interface.

Three readers, tried in this order:

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

import functools
import hashlib
import os
import threading
import warnings
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

from slideiqa.errors import SlideIQAError
from slideiqa.io.formats import is_field_name
from slideiqa.io.scaled_decode import ScaledDecodeError, ScaledJpegReader, open_scaled_reader

#: The most bytes one decode may produce: a tile or strip larger than this, or a plain image
#: larger than this decoded, is refused with an error instead of taking the machine's memory.
READ_BUDGET_BYTES = 1 << 30
Image.MAX_IMAGE_PIXELS = READ_BUDGET_BYTES // 3  # Pillow's own guard, at the same size
#: Side in level pixels below which an undecodable part of a thumbnail is not split further.
SMALLEST_GAP = 256
_UNIT_TO_UM = {"m": 1e6, "mm": 1e3, "cm": 1e4, "µm": 1.0, "um": 1.0, "nm": 1e-3}


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


# -- OpenSlide --------------------------------------------------------------------------------------
class _OpenSlideReader:
    def __init__(self, handle) -> None:
        self.handle = handle

    def read_region(self, location, level, size):
        region = self.handle.read_region(location, level, size)
        # OpenSlide returns RGBA, transparent outside the scanned area: composite it onto white glass.
        # Most regions are opaque throughout and need only their colour channels: checking costs a
        # fifth of compositing (0.14 against 0.65 ms a 224 px tile, measured). Only the alpha band
        # is looked at: Image.getextrema() scans all four (with the conversion, 0.18 against 0.33 ms).
        if region.getchannel(3).getextrema()[0] == 255:
            return np.asarray(region.convert("RGB"))
        white = Image.new("RGBA", region.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, region).convert("RGB"))

    def close(self) -> None:
        self.handle.close()


#: Coarser than this is no microscope pixel: writers put 72 dpi (352 µm/px) in files that have no size.
MAX_PLAUSIBLE_MPP = 50.0


def _plausible(mpp: tuple[float | None, float | None] | None) -> tuple[float, float] | None:
    if mpp is None or mpp[0] is None or not 0 < mpp[0] < MAX_PLAUSIBLE_MPP:
        return None
    return float(mpp[0]), float(mpp[1] or mpp[0])


def _float(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


#: One tile cache for every OpenSlide handle of a process. Each handle's own cache is 32 MiB, and a
#: batch worker keeps eight slides open: 256 MiB of cached tiles, most of them read once.
SHARED_TILE_CACHE_BYTES = 128 << 20


@functools.lru_cache(maxsize=1)
def _shared_tile_cache():
    import openslide

    return openslide.OpenSlideCache(SHARED_TILE_CACHE_BYTES)


def _open_with_openslide(path: Path) -> Slide | None:
    import openslide

    if openslide.OpenSlide.detect_format(str(path)) is None:
        return None
    try:
        handle = openslide.OpenSlide(str(path))
    except openslide.OpenSlideError as error:
        raise SlideError(f"{path}: OpenSlide cannot open it ({error})") from None
    handle.set_cache(_shared_tile_cache())
    properties = handle.properties
    mpp_x, mpp_y = _float(properties.get("openslide.mpp-x")), _float(properties.get("openslide.mpp-y"))
    info = SlideInfo(
        path=str(path),
        reader="openslide",
        vendor=properties.get("openslide.vendor", "unknown"),
        level_dimensions=[(int(w), int(h)) for w, h in handle.level_dimensions],
        level_downsamples=[float(d) for d in handle.level_downsamples],
        mpp=_plausible((mpp_x, mpp_y)),
        objective_power=_float(properties.get("openslide.objective-power")),
        associated_images=sorted(handle.associated_images),
        scanner=_first(
            properties,
            "aperio.ScanScope ID",
            "hamamatsu.Product",
            "leica.device-model",
            "philips.DICOM_MANUFACTURER",
            "tiff.Model",
            "tiff.Make",
        ),
        acquired=" ".join(filter(None, (properties.get("aperio.Date"), properties.get("aperio.Time"))))
        or _first(properties, "tiff.DateTime", "philips.DICOM_ACQUISITION_DATETIME"),
        tile_size=_pair(
            properties.get("openslide.level[0].tile-width"), properties.get("openslide.level[0].tile-height")
        ),
        compression=_tiff_compression(path),
    )
    slide = Slide(path, _OpenSlideReader(handle), info)
    # Decode one pixel now: a file whose header parses but whose tiles are corrupt fails here, at open.
    slide.read_region((0, 0), 0, (1, 1))
    return slide


def _first(properties, *names: str) -> str | None:
    """The first of ``names`` that the slide's properties hold, stripped; None if none does."""
    for name in names:
        value = str(properties.get(name) or "").strip()
        if value:
            return value
    return None


def _pair(width: str | None, height: str | None) -> tuple[int, int] | None:
    if width is None or height is None:
        return None
    try:
        return int(width), int(height)
    except ValueError:
        return None


def _tiff_compression(path: Path) -> str | None:
    """Level 0's compression, read from the TIFF header (OpenSlide does not say it); None when the
    file is not a TIFF (e.g. MIRAX, DICOM folders) or the header cannot be read."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tiff:
            return _compression_name(tiff.pages[0])
    except Exception:  # not a TIFF: nothing to say, and nothing wrong
        return None


def _compression_name(page) -> str:
    return {
        "JPEG": "JPEG",
        "APERIO_JP2000_RGB": "JPEG 2000",
        "APERIO_JP2000_YCBC": "JPEG 2000",
        "JPEG2000": "JPEG 2000",
        "ADOBE_DEFLATE": "deflate",
        "DEFLATE": "deflate",
        "NONE": "none",
    }.get(page.compression.name, page.compression.name)


def _tiff_page_facts(page) -> dict:
    """Scanner, date, tile size and compression of a TIFF page, where its tags say them."""

    def tag(name: str) -> str | None:
        value = page.tags.get(name)
        return str(value.value).strip() or None if value is not None else None

    return {
        "scanner": " ".join(filter(None, (tag("Make"), tag("Model")))) or None,
        "acquired": tag("DateTime"),
        "tile_size": (int(page.tilewidth), int(page.tilelength)) if page.is_tiled else None,
        "compression": _compression_name(page),
    }


def _on_glass(
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


# -- tifffile ---------------------------------------------------------------------------------------
class _TiffReader:
    """Regions of a tifffile series through its Zarr view: only the touched tiles or strips are decoded.

    Axes other than Y, X and samples/channels (pages, time, z) are read at index 0: the first plane.
    A strip-based level small enough to hold (as Fiji and ImageJ write them, often one strip for the
    whole image) is decoded once, on first use, and kept: through the Zarr view every tile read would
    decode the whole strip again.
    """

    def __init__(self, tiff, levels: list, axes: str) -> None:
        import zarr

        self.tiff = tiff
        self.axes = axes
        self.kept_axes = "".join(a for a in axes if a in "YXSC")
        self.arrays = [zarr.open_array(tiff.aszarr(series=0, level=i), mode="r") for i in range(len(levels))]
        self.held: list[np.ndarray | None] = [None] * len(levels)
        self.hold = [not level.keyframe.is_tiled and _plane_bytes(level) <= READ_BUDGET_BYTES for level in levels]
        self._hold_lock = threading.Lock()
        x = axes.index("X")
        self.downsamples = [levels[0].shape[x] / level.shape[x] for level in levels]
        self.dtype = self.arrays[0].dtype

    def _level(self, level: int) -> tuple[Any, str]:
        """The level's first plane as an array and its axes: held in memory, or the Zarr view."""
        if not self.hold[level]:
            return self.arrays[level], self.axes
        with self._hold_lock:  # one decode of the strips, however many threads ask at once
            if self.held[level] is None:
                first_plane = tuple(slice(None) if a in "YXSC" else 0 for a in self.axes)
                self.held[level] = np.asarray(self.arrays[level][first_plane])
        return self.held[level], self.kept_axes

    def read_region(self, location, level, size):
        (array, axes), downsample = self._level(level), self.downsamples[level]
        x0, y0 = int(round(location[0] / downsample)), int(round(location[1] / downsample))
        width, height = size
        bounds = array.shape[axes.index("X")], array.shape[axes.index("Y")]

        def pixels(ys: slice, xs: slice) -> np.ndarray:
            index = tuple(ys if a == "Y" else xs if a == "X" else slice(None) if a in "SC" else 0 for a in axes)
            return _to_rgb(np.asarray(array[index]), self.kept_axes)

        return _on_glass((x0, y0), size, bounds, pixels)

    def close(self) -> None:
        self.tiff.close()


def _plane_bytes(level) -> int:
    """Decoded bytes of a level's first plane (Y, X and samples or channels)."""
    return int(np.prod([n for n, a in zip(level.shape, level.axes) if a in "YXSC"])) * level.dtype.itemsize


def _check_chunks_fit(path: Path, levels: list) -> None:
    """Refuse a level whose single tile or strip decodes to more than the read budget (a
    decompression bomb, or a whole gigapixel image in one strip): any read of it would have to
    decode all of it at once."""
    for level in levels:
        page = level.keyframe
        if not page.is_tiled and _plane_bytes(level) <= READ_BUDGET_BYTES:
            continue  # held whole, within the budget
        chunk_bytes = int(np.prod(page.chunks)) * page.dtype.itemsize
        if chunk_bytes > READ_BUDGET_BYTES:
            kind = "tile" if page.is_tiled else "strip"
            raise _beyond_budget(
                path,
                f"one {kind} of this TIFF decodes to {_gigabytes(chunk_bytes)} "
                f"({page.chunks[1]:,} × {page.chunks[0]:,} px)",
            )


def _beyond_budget(path: Path, what: str) -> SlideError:
    return SlideError(
        f"{path}: {what}, more than the {_gigabytes(READ_BUDGET_BYTES)} slideiqa decodes at once; "
        "convert it to a tiled pyramidal TIFF (e.g. vips tiffsave IN OUT --tile --pyramid "
        "--compression jpeg)"
    )


def _gigabytes(count: int) -> str:
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"


def _to_rgb(block: np.ndarray, axes: str) -> np.ndarray:
    """A YX, YXS or CYX block as uint8 RGB (grey repeated, extra channels dropped).

    Integer images are scaled by their type's full range and float images are taken as 0–1, the
    same for every region, so tiles of one slide are comparable."""
    if "C" in axes and "S" not in axes:
        block = np.moveaxis(block, axes.index("C"), -1)
    elif "S" not in axes:
        block = block[..., None]
    if block.dtype != np.uint8:
        peak = float(np.iinfo(block.dtype).max) if np.issubdtype(block.dtype, np.integer) else 1.0
        block = np.clip(block.astype(np.float64) / peak * 255.0, 0, 255).astype(np.uint8)
    if block.shape[-1] == 1:
        block = np.repeat(block, 3, axis=-1)
    return np.ascontiguousarray(block[..., :3])


def _ome_mpp(ome_xml: str) -> tuple[float, float] | None:
    root = ElementTree.fromstring(ome_xml)
    pixels = next((e for e in root.iter() if e.tag.endswith("}Pixels") or e.tag == "Pixels"), None)
    if pixels is None:
        return None
    values = []
    for axis in ("X", "Y"):
        size = _float(pixels.get(f"PhysicalSize{axis}"))
        unit = pixels.get(f"PhysicalSize{axis}Unit", "µm")
        values.append(None if size is None or unit not in _UNIT_TO_UM else size * _UNIT_TO_UM[unit])
    return _plausible((values[0], values[1]))


def _resolution_mpp(page) -> tuple[float, float] | None:
    """µm/px from the TIFF XResolution/YResolution tags (pixels per inch or per centimetre)."""
    tags = page.tags
    unit = tags.get("ResolutionUnit")
    unit_um = {2: 25_400.0, 3: 10_000.0}.get(int(unit.value) if unit else 2)
    values = []
    for name in ("XResolution", "YResolution"):
        tag = tags.get(name)
        if tag is None or unit_um is None:
            return None
        numerator, denominator = tag.value
        per_unit = numerator / denominator if denominator else 0
        values.append(unit_um / per_unit if per_unit > 0 else None)
    return _plausible((values[0], values[1]))


def _open_with_tifffile(path: Path) -> Slide | None:
    import tifffile

    try:
        tiff = tifffile.TiffFile(path)
    except (tifffile.TiffFileError, OSError, ValueError):
        return None
    try:
        series = tiff.series[0]
        levels = list(series.levels)
        axes = series.axes
        if "Y" not in axes or "X" not in axes:
            raise SlideError(f"{path}: TIFF with axes {series.axes} is not a 2-D image")
        if any(level.axes != axes for level in levels):
            levels = levels[:1]
        mpp = _ome_mpp(tiff.ome_metadata) if tiff.is_ome and tiff.ome_metadata else None
        mpp = mpp or _resolution_mpp(series.pages[0] if series.pages else tiff.pages[0])
        _check_chunks_fit(path, levels)
        reader = _TiffReader(tiff, levels, axes)
        width, height = (levels[0].shape[axes.index("X")], levels[0].shape[axes.index("Y")])
        info = SlideInfo(
            path=str(path),
            reader="tifffile",
            vendor="ome-tiff" if tiff.is_ome else "tiff",
            level_dimensions=[
                (int(level.shape[axes.index("X")]), int(level.shape[axes.index("Y")])) for level in levels
            ],
            level_downsamples=reader.downsamples,
            mpp=mpp,
            objective_power=None,
            **_tiff_page_facts(series.pages[0] if series.pages else tiff.pages[0]),
        )
        slide = Slide(path, reader, info)
        slide.read_region((0, 0), 0, (min(width, 16), min(height, 16)))
        return slide
    except SlideError:
        tiff.close()
        raise
    except Exception as error:
        tiff.close()
        raise SlideError(f"{path}: tifffile cannot read it ({error})") from None


# -- plain images -----------------------------------------------------------------------------------
class _ArrayReader:
    def __init__(self, pixels: np.ndarray) -> None:
        self.pixels = pixels

    def read_region(self, location, level, size):
        height, width = self.pixels.shape[:2]
        return _on_glass(location, size, (width, height), lambda ys, xs: self.pixels[ys, xs])

    def close(self) -> None:
        pass


def _open_with_pillow(path: Path) -> Slide:
    """A plain image, decoded whole (after its header says it fits the read budget)."""
    try:
        with warnings.catch_warnings():  # the budget below is the guard; Pillow's warning would be noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            decoded = image.width * image.height * 3
            if decoded > READ_BUDGET_BYTES:
                raise _beyond_budget(
                    path, f"a plain {image.width:,} × {image.height:,} px image decodes to {_gigabytes(decoded)}"
                )
            dpi = image.info.get("dpi")
            image_format = image.format
            pixels = np.asarray(image.convert("RGB"))
    except Image.DecompressionBombError:
        raise _beyond_budget(path, "a plain image this large decodes") from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise SlideError(f"{path}: not a slide or image that slideiqa can read ({error})") from None
    mpp = _plausible((25_400.0 / float(dpi[0]), 25_400.0 / float(dpi[1] or dpi[0]))) if dpi and dpi[0] else None
    info = SlideInfo(
        str(path), "pillow", "image", [(pixels.shape[1], pixels.shape[0])], [1.0], mpp, None, compression=image_format
    )
    return Slide(path, _ArrayReader(pixels), info)


def _inspect_tiff(path: Path) -> bool:
    """Whether a file is OME-TIFF; a :class:`SlideError` if it is a TIFF cut short.

    A copy interrupted part-way (the commonest broken slide) keeps its first directories, so it
    opens and then fails tile after tile; its tile offsets give it away at once: image data that
    runs past the end of the file. Files tifffile cannot parse are left to the readers."""
    import logging

    import tifffile

    size = path.stat().st_size
    quiet = logging.getLogger("tifffile")
    level, quiet.level = quiet.level, logging.CRITICAL  # it logs the broken directory chain itself
    try:
        with tifffile.TiffFile(path) as tiff:
            ends = [
                int(np.max(np.add(page.dataoffsets, page.databytecounts, dtype=np.int64)))
                for page in tiff.pages
                if getattr(page, "dataoffsets", None)
            ]
            is_ome = tiff.is_ome
    except Exception:
        return False
    finally:
        quiet.level = level
    if ends and max(ends) > size:
        raise SlideError(
            f"{path}: the file is truncated ({size:,} bytes, but its image data runs to byte "
            f"{max(ends):,}); copy it again from its source"
        )
    return is_ome


#: Set to ``openslide`` to read every tile by the general path (comparisons, or a decoder in doubt).
DECODER_VARIABLE = "SLIDEIQA_DECODER"
#: Formats whose TIFF pages are their levels tile for tile, so that decoding the JPEG tiles directly
#: gives the general reader's pixels. Others place tiles themselves (Ventana's overlaps, Leica's
#: offsets, Philips' cropped levels) and are read by OpenSlide only.
DIRECT_DECODE_VENDORS = frozenset({"aperio", "generic-tiff", "tiff", "ome-tiff"})


def open_slide(path: str | Path) -> Slide:
    """Open ``path`` with the first reader that understands it; a clear :class:`SlideError` if none does."""
    path = Path(path)
    if not path.exists():
        raise SlideError(f"{path}: no such file")
    if path.is_dir():
        raise SlideError(f"{path}: is a folder, not a slide file")
    if path.stat().st_size == 0:
        raise SlideError(f"{path}: empty file (0 bytes)")
    if not is_field_name(path):
        # OME-TIFF keeps its pyramid in SubIFDs, which OpenSlide does not see: tifffile reads it whole.
        readers = (
            (_open_with_tifffile, _open_with_openslide)
            if _inspect_tiff(path)
            else (_open_with_openslide, _open_with_tifffile)
        )
        first_error: SlideError | None = None
        for reader in readers:
            try:
                slide = reader(path)
            except SlideError as error:  # the other reader may still manage (unusual compression, say)
                first_error = first_error or error
                continue
            if slide is not None:
                slide._reopen = lambda reader=reader: reader(path)._reader
                if (
                    os.environ.get(DECODER_VARIABLE, "scaled") != "openslide"
                    and slide.info.vendor in DIRECT_DECODE_VENDORS
                ):
                    slide.scaled = open_scaled_reader(path, slide.info.level_dimensions)
                return slide
        if first_error is not None:
            raise first_error
    return _open_with_pillow(path)


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
