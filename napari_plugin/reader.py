"""napari reader for slides (every format :func:`slideiqa.open_slide` reads) and ``*.quality.zarr`` maps.

Bad input never reaches napari as an exception: napari would answer a reader's exception with a
reader-choice dialog or a traceback. The reader instead shows one notification naming the file and
the cause, and returns napari's "read, but nothing to add" value, so the viewer stays as it was.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slideiqa.io.formats import FIELD_SUFFIXES, MAP_READER_SUFFIXES, SLIDE_SUFFIXES
from slideiqa.io.slide import Slide, file_checksum, open_slide
from slideiqa.outputs.store import QualityMap, blocks_done, open_map

from .layers import LayerData, map_layers, slide_layer
from .viewer_watch import watch_viewer

#: napari's value for "the file was read and holds no layer".
NOTHING: list[tuple[None]] = [(None,)]
#: Maps are named ``*.quality.zarr``; any other Zarr is claimed too, so that one opened with this reader
#: gets a clear "not a slideiqa quality map" rather than napari's generic failure.
MAP_SUFFIXES = MAP_READER_SUFFIXES
#: What the slideiqa readers open (``slideiqa.io.formats``); napari.yaml lists the same patterns.
READABLE_SUFFIXES = tuple(sorted(SLIDE_SUFFIXES | FIELD_SUFFIXES))

ReaderFunction = Callable[[str | list[str]], list[Any]]


def _notify(kind: str, message: str) -> None:
    from napari.utils.notifications import show_error, show_warning

    (show_error if kind == "error" else show_warning)(message)


def _single_path(path: str | list[str]) -> str:
    return path[0] if isinstance(path, list) else path


def _notifying(read: Callable[[Path], list[Any]]) -> ReaderFunction:
    """``read`` as a napari reader function: failures become one error notification, not a traceback."""

    @functools.wraps(read)
    def reader(path: str | list[str]) -> list[Any]:
        target = Path(_single_path(path))
        from napari import current_viewer

        watch_viewer(current_viewer())
        try:
            return read(target)
        except Exception as error:  # any cause: the message, not a traceback, is what the user needs
            _notify("error", f"slideiqa cannot open {target.name}: {error}")
            return NOTHING

    return reader


def _open_slide(path: Path) -> list[LayerData]:
    slide = open_slide(path)
    if slide.mpp is None:
        _notify("warning", f"{path.name}: pixel size unknown, shown in pixels; quality maps need it in µm/px")
    return [slide_layer(slide, slide.mpp)]


def find_slide(quality: QualityMap) -> Path | None:
    """The map's slide: where the map says it was, else beside the map (a folder moved as a whole);
    a file with another checksum is another slide, so it is not shown under this map."""
    mapped = quality.slide
    recorded = mapped.path
    for candidate in (recorded, quality.path.parent / recorded.name):
        if recorded.name and candidate.is_file() and mapped.checksum in (None, file_checksum(candidate)):
            return candidate
    return None


def _slide_under_map(quality: QualityMap) -> list[LayerData]:
    path = find_slide(quality)
    if path is None:
        recorded = quality.slide.path
        _notify(
            "warning",
            f"{quality.path.name}: its slide {recorded} is not found (nor beside the map); showing the map alone",
        )
        return []
    slide: Slide = open_slide(path)
    # The map's grid was laid with this µm/px (possibly given by hand): the slide must use the same.
    return [slide_layer(slide, quality.slide.mpp, quality.path)]


def _open_map(path: Path) -> list[LayerData]:
    quality = open_map(path)
    if not quality.complete:
        done = blocks_done(quality.group)
        _notify(
            "warning",
            f"{path.name}: incomplete map ({int(done.sum())} of {done.size} blocks); "
            "run it again to finish — unassessed tiles are transparent",
        )
    try:
        beneath = _slide_under_map(quality)
    except Exception as error:  # the map is still worth showing without its slide
        _notify("warning", f"{path.name}: its slide cannot be opened ({error}); showing the map alone")
        beneath = []
    return beneath + map_layers(quality)


read_slide: ReaderFunction = _notifying(_open_slide)
read_map: ReaderFunction = _notifying(_open_map)


def get_reader(path: str | list[str]) -> ReaderFunction | None:
    """napari's reader hook: a map reader for Zarr folders, a slide reader for slide files.

    Only one path at a time: a stack of slides is no single image."""
    if isinstance(path, list) and len(path) != 1:
        return None
    name = Path(_single_path(path)).name.lower().rstrip("/")
    if name.endswith(MAP_SUFFIXES):
        return read_map
    if name.endswith(READABLE_SUFFIXES):
        return read_slide
    return None
