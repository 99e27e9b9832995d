"""OME-TIFF and pyramidal TIFFs OpenSlide does not open (strip-based, SubIFD pyramids, unusual
compression), read through tifffile's Zarr view so that only the touched tiles or strips are decoded;
and the first look at a TIFF that tells OME-TIFF and a file cut short apart."""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import numpy as np

from slideiqa.io.slide import (
    READ_BUDGET_BYTES,
    Slide,
    SlideError,
    SlideInfo,
    beyond_budget,
    gigabytes,
    on_glass,
    plausible_mpp,
    positive_float,
)

_UNIT_TO_UM = {"m": 1e6, "mm": 1e3, "cm": 1e4, "µm": 1.0, "um": 1.0, "nm": 1e-3}


def tiff_compression(path: Path) -> str | None:
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

        return on_glass((x0, y0), size, bounds, pixels)

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
            raise beyond_budget(
                path,
                f"one {kind} of this TIFF decodes to {gigabytes(chunk_bytes)} "
                f"({page.chunks[1]:,} × {page.chunks[0]:,} px)",
            )


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
        size = positive_float(pixels.get(f"PhysicalSize{axis}"))
        unit = pixels.get(f"PhysicalSize{axis}Unit", "µm")
        values.append(None if size is None or unit not in _UNIT_TO_UM else size * _UNIT_TO_UM[unit])
    return plausible_mpp((values[0], values[1]))


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
    return plausible_mpp((values[0], values[1]))


def open_with_tifffile(path: Path) -> Slide | None:
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


def inspect_tiff(path: Path) -> bool:
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
