"""The quality map on disk: a Zarr v3 group that is itself a valid OME-NGFF 0.5 image, in micrometres.

Layout of ``<slide>.quality.zarr``::

    zarr.json        ome: the score image (NGFF multiscales); attributes["slideiqa"]: layout version,
                     slideiqa version, model card, slide (path, size, checksum, µm/px), tile grid,
                     settings, options, status ("running" → "complete"), verdict history, timing
    0                float32 (y, x)      score = P(good); NaN on background
    labels/class/0   uint8   (y, x)      NGFF image-label: 0 = background, k = class k-1 of the model
                                         card + 1, 254 = pen (tissue under pen ink, from the thumbnail),
                                         253 = edge (tissue across a coverslip or slide edge, likewise),
                                         252 = fold (folded tissue), 251 = bubble (tissue under an air
                                         bubble), both from the thumbnail too, 250 = debris (tissue
                                         with dark colourless particles, found in the tile),
                                         255 = unreadable (tissue whose pixels cannot be decoded)
    probs/0          float32 (c, y, x)   NGFF image: class probabilities; NaN on background
    tissue/0         float32 (y, x)      NGFF image: tissue fraction of each tile
    tone/0           float32 (c, y, x)   NGFF image: each assessed tile's tone (glass level, stain
                                         density, white point: ``slide_tone.TONE_FEATURES``), against
                                         which the finished map judges every tile by its slide's;
                                         NaN where no tile was read or a measurement has too little
                                         glass or stain (a debris tile's tone is kept but not judged).
                                         Maps made before tones were judged have none.
    cells/0          float32 (y, x)      NGFF image, with a model that has a cell head: P(good) of every
                                         cell (16 µm for the default model; k × k cells per tile)
    cells/labels/class/0 uint8 (y, x)    its NGFF image-label: the cell's most likely class, with the
                                         same values and colours as the tiles' (a tile's fixed label
                                         on all of its cells)
    cell_probs/0     float32 (c, y, x)   NGFF image: the cells' class probabilities, judged with their
                                         tile against the slide's tone when the map is finished (cell
                                         score and label follow from them). Maps made before have none.
    progress         uint8   (block rows, block cols)   1 = block written completely

The root is the score image and the class labels sit in its ``labels/`` group, where the NGFF spec
puts them, so a viewer (napari-ome-zarr, ``ome_zarr info``, ome-zarr-models' validator) that opens the
map finds the score and its labels together. Every image's scale is the tile (or cell) size in µm,
so it overlays the slide in physical units; cell (k·r, k·c) is the top-left cell of tile (r, c).
:data:`ARRAY_PATHS` is the one place that says where an array lives; nothing outside this module
opens the map's Zarr groups.

Blocks of tiles are the unit of work, of writing and of resuming: a block covers exactly one chunk of
every array, it is written whole by one writer, and its ``progress`` flag is set only after its data.
A run killed at any moment therefore leaves only whole blocks, and the next run redoes the rest.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, cast

import numpy as np
import zarr

from slideiqa.artefacts.registry import ARTEFACTS
from slideiqa.errors import SlideIQAError
from slideiqa.io.grid import TileGrid
from slideiqa.measure.slide_tone import TONE_FEATURES
from slideiqa.outputs.palette import class_colour
from slideiqa.outputs.summary import MapSummary, VerdictRecord
from slideiqa.settings.options import MapOptions

NGFF_VERSION = "0.5"
#: Where each of a map's arrays lives in the group (its name in the API → its Zarr path).
ARRAY_PATHS = {
    "score": "0",
    "label": "labels/class/0",
    "probs": "probs/0",
    "tissue": "tissue/0",
    "tone": "tone/0",
    "cell_score": "cells/0",
    "cell_label": "cells/labels/class/0",
    "cell_probs": "cell_probs/0",
}
#: The arrays every map has; the cell arrays only a map made with a cell head.
ARRAYS = ("score", "label", "probs", "tissue", "tone")
CELL_ARRAYS = ("cell_score", "cell_label", "cell_probs")
TONE_CHANNELS = len(TONE_FEATURES)
FORMAT = "slideiqa-quality-map"
#: Version of the group layout above. Maps of layout 1 (score, label, probs and tissue side by side,
#: no NGFF root) must be made again.
LAYOUT = 2
STATUS_RUNNING, STATUS_COMPLETE = "running", "complete"
BACKGROUND = 0
#: Label of a tissue tile whose pixels the slide file cannot give (a corrupt tile or strip): its
#: score and probabilities are NaN. Fixed, whatever the number of classes.
UNREADABLE = 255
UNREADABLE_CLASS = "unreadable"
#: Labels given by slideiqa itself rather than by the model, whatever the model's classes — each
#: preparation artefact's (:mod:`slideiqa.artefacts.registry`) and unreadable tiles': such a tile
#: has no score (NaN) and counts against the verdict.
FIXED_LABELS = {artefact.name: artefact.label for artefact in ARTEFACTS} | {UNREADABLE_CLASS: UNREADABLE}


class MapError(SlideIQAError):
    """A quality map cannot be created, resumed or opened; the message names the path and the cause."""


def label_entries(classes: list[str]) -> list[tuple[int, str, list[int]]]:
    """(label value, class name, RGBA) of every value a map's ``label`` array can hold: background,
    the model's classes, then slideiqa's fixed labels. The one place that says what a label value means."""
    return (
        [(BACKGROUND, "background", [0, 0, 0, 0])]
        + [(i + 1, name, class_colour(name, i)) for i, name in enumerate(classes)]
        + [(value, name, class_colour(name, 0)) for name, value in FIXED_LABELS.items()]
    )


def _ngff_image(name: str, axes: list[str], scale_um: float, translation_um: float) -> dict[str, Any]:
    """NGFF 0.5 ``ome`` attributes of a one-level image: y/x in micrometres, c as a channel axis."""
    axes_meta = [
        {"name": a, "type": "channel"} if a == "c" else {"name": a, "type": "space", "unit": "micrometer"} for a in axes
    ]
    scale = [1.0 if a == "c" else scale_um for a in axes]
    translation = [0.0 if a == "c" else translation_um for a in axes]
    return {
        "version": NGFF_VERSION,
        "multiscales": [
            {
                "name": name,
                "axes": axes_meta,
                "datasets": [
                    {
                        "path": "0",
                        "coordinateTransformations": [
                            {"type": "scale", "scale": scale},
                            {"type": "translation", "translation": translation},
                        ],
                    }
                ],
            }
        ],
    }


@dataclass(frozen=True)
class MapLayout:
    rows: int
    cols: int
    classes: list[str]
    block: int
    tile_um: float
    cells_per_side: int = 0  # cells along a tile's side (0: no cell arrays)

    @property
    def block_shape(self) -> tuple[int, int]:
        return -(-self.rows // self.block), -(-self.cols // self.block)

    def block_slices(self, block_row: int, block_col: int) -> tuple[slice, slice]:
        y0, x0 = block_row * self.block, block_col * self.block
        return slice(y0, min(y0 + self.block, self.rows)), slice(x0, min(x0 + self.block, self.cols))


def _array(root: zarr.Group, path: str) -> zarr.Array:
    """The array at ``path`` in a map's group; Zarr's ``group[path]`` may be a group too, which a map's
    array paths (:data:`ARRAY_PATHS`, ``progress``) never are."""
    return cast(zarr.Array, root[path])


def _metadata(node: zarr.Group | zarr.Array, key: str) -> dict[str, Any]:
    """One JSON object of a node's attributes (``slideiqa``, ``ome``), as the dictionary it always is here."""
    return cast(dict[str, Any], node.attrs[key])


def is_quality_map(path: Path) -> bool:
    try:
        attributes = cast(dict[str, Any], zarr.open_group(str(path), mode="r").attrs.get("slideiqa", {}))
        return attributes.get("format") == FORMAT
    except Exception:
        return False


def _remove_map(path: Path) -> None:
    """Delete a map so that a kill half-way never leaves something that passes for one: it is
    renamed away first (atomic), then deleted."""
    if not is_quality_map(path):
        raise MapError(f"{path}: exists and is not a slideiqa quality map; refusing to overwrite it")
    doomed = path.with_name(f".{path.name}.deleting-{_owner_tag()}")
    path.rename(doomed)
    shutil.rmtree(doomed)


def create_map(path: Path, layout: MapLayout, attributes: dict[str, Any], replace: bool = False) -> zarr.Group:
    """A new, empty map (status running). An existing map is replaced only with ``replace``: without
    it, a map that another run put at ``path`` meanwhile is left alone and this run loses the race.

    The map is built in a hidden sibling folder and renamed into place when whole, so a run killed
    (or a disk filled) during creation leaves nothing under ``path`` — only a hidden leftover that the
    next creation clears away — and a rerun, with or without ``--overwrite``, is never blocked."""
    _clear_leftovers(path)
    building = path.with_name(f".{path.name}.creating-{_owner_tag()}")
    try:
        _build_map(building, layout, attributes)
        if replace and path.exists():
            _remove_map(path)
        building.rename(path)
    except OSError as error:
        _remove_half_built(building)
        if error.errno in (errno.EEXIST, errno.ENOTEMPTY):  # a rename race lost to a run started at the same time
            raise MapError(
                f"{path}: another run created this map at the same moment; let it finish, then "
                "run again to check or resume it"
            ) from None
        raise MapError(f"{path}: cannot create the map here ({error.strerror or type(error).__name__})") from None
    except BaseException:
        _remove_half_built(building)
        raise
    return zarr.open_group(str(path), mode="r+")


#: How long to keep removing a half-built store whose last writes may still land.
SETTLE_S, SETTLE_POLL_S = 2.0, 0.02


def _remove_half_built(path: Path) -> None:
    """Remove a store whose creation failed. Zarr issues some writes concurrently: when one fails
    (a full disk), the others may still be landing, and a file created after the removal began keeps
    the folder (seen in CI as a leftover beside a map that was never made). So remove until the folder
    has stayed gone for two polls, or SETTLE_S has passed."""
    deadline, absent = time.monotonic() + SETTLE_S, 0
    while absent < 2 and time.monotonic() < deadline:
        shutil.rmtree(path, ignore_errors=True)
        absent = absent + 1 if not path.exists() else 0
        time.sleep(SETTLE_POLL_S)


def _owner_tag() -> str:
    """Host, process and a random part: names a hidden working folder by the run that owns it."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _owner_gone(tag: str) -> bool:
    """Whether the run that named a working folder ``tag`` has ended. Runs on other hosts (a shared
    filesystem) cannot be asked, so their folders are kept."""
    host, _, pid = tag.rpartition("-")[0].rpartition("-")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _clear_leftovers(path: Path) -> None:
    """Hidden folders of creations and removals left beside ``path`` by runs that were killed
    (those of runs still working are theirs)."""
    for kind in ("creating", "deleting"):
        prefix = f".{path.name}.{kind}-"
        for leftover in path.parent.glob(prefix + "*"):
            if _owner_gone(leftover.name[len(prefix) :]):
                shutil.rmtree(leftover, ignore_errors=True)


def _build_map(path: Path, layout: MapLayout, attributes: dict[str, Any]) -> None:
    # Tiles are centred on their grid cells: NGFF places pixel centres at translation + index × scale.
    translation = layout.tile_um / 2
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    chunks2d = (layout.block, layout.block)
    specs = {
        "score": (["y", "x"], (layout.rows, layout.cols), "float32", np.nan),
        "probs": (["c", "y", "x"], (len(layout.classes), layout.rows, layout.cols), "float32", np.nan),
        "label": (["y", "x"], (layout.rows, layout.cols), "uint8", BACKGROUND),
        "tissue": (["y", "x"], (layout.rows, layout.cols), "float32", 0.0),
        "tone": (["c", "y", "x"], (TONE_CHANNELS, layout.rows, layout.cols), "float32", np.nan),
    }
    labels = root.create_group("labels")
    labels.attrs["ome"] = {"version": NGFF_VERSION, "labels": ["class"]}
    for name, (axes, shape, dtype, fill) in specs.items():
        group_path = ARRAY_PATHS[name].rpartition("/")[0]
        group = root.require_group(group_path) if group_path else root
        group.attrs["ome"] = _ngff_image("class" if name == "label" else name, axes, layout.tile_um, translation)
        chunks = (shape[0], *chunks2d) if axes[0] == "c" else chunks2d
        group.create_array("0", shape=shape, chunks=chunks, dtype=dtype, fill_value=fill, dimension_names=axes)
    entries = label_entries(layout.classes)
    _add_image_label(cast(zarr.Group, root["labels/class"]), entries)
    if layout.cells_per_side:
        _build_cell_image(root, layout, entries)
    root.create_array("progress", shape=layout.block_shape, chunks=(1, 1), dtype="uint8", fill_value=0)
    root.attrs["slideiqa"] = {"format": FORMAT, "layout": LAYOUT, "status": STATUS_RUNNING, **attributes}


def _add_image_label(group: zarr.Group, entries: list[tuple[int, str, list[int]]]) -> None:
    """NGFF image-label metadata (each value's colour and class) on a labels image whose source image
    is two levels up."""
    group.attrs["ome"] = _metadata(group, "ome") | {
        "image-label": {
            "version": NGFF_VERSION,
            "colors": [{"label-value": value, "rgba": rgba} for value, _, rgba in entries],
            "properties": [{"label-value": value, "class": name} for value, name, _ in entries],
            "source": {"image": "../../"},
        }
    }


def _build_cell_image(root: zarr.Group, layout: MapLayout, entries: list[tuple[int, str, list[int]]]) -> None:
    """The cell image (P(good) per cell) and its class labels: chunks of one block's cells, so that a
    block is still one chunk of every array; cell centres at half a cell from the tile's corner."""
    k = layout.cells_per_side
    cell_um = layout.tile_um / k
    shape = (layout.rows * k, layout.cols * k)
    chunks = (layout.block * k, layout.block * k)
    image = root.require_group("cells")
    image.attrs["ome"] = _ngff_image("cells", ["y", "x"], cell_um, cell_um / 2)
    image.create_array("0", shape=shape, chunks=chunks, dtype="float32", fill_value=np.nan, dimension_names=["y", "x"])
    image.require_group("labels").attrs["ome"] = {"version": NGFF_VERSION, "labels": ["class"]}
    labels = image.require_group("labels/class")
    labels.attrs["ome"] = _ngff_image("class", ["y", "x"], cell_um, cell_um / 2)
    labels.create_array(
        "0", shape=shape, chunks=chunks, dtype="uint8", fill_value=BACKGROUND, dimension_names=["y", "x"]
    )
    _add_image_label(labels, entries)
    probabilities = root.require_group(ARRAY_PATHS["cell_probs"].rpartition("/")[0])
    probabilities.attrs["ome"] = _ngff_image("cell_probs", ["c", "y", "x"], cell_um, cell_um / 2)
    probabilities.create_array(
        "0",
        shape=(len(layout.classes), *shape),
        chunks=(len(layout.classes), *chunks),
        dtype="float32",
        fill_value=np.nan,
        dimension_names=["c", "y", "x"],
    )


def _most_likely_label(probabilities: np.ndarray, fixed: np.ndarray | None = None) -> np.ndarray:
    """Label values of (c, …) probabilities: the most likely class + 1, background where NaN, and a
    fixed label (:data:`FIXED_LABELS`) wherever ``fixed`` has one."""
    assessed = ~np.isnan(probabilities[0])
    label = np.where(assessed, np.nan_to_num(probabilities).argmax(axis=0) + 1, BACKGROUND).astype(np.uint8)
    return label if fixed is None else np.where(fixed > 0, fixed, label).astype(np.uint8)


def write_block(
    root: zarr.Group,
    layout: MapLayout,
    block_row: int,
    block_col: int,
    probabilities: np.ndarray,
    tissue: np.ndarray,
    good_index: int,
    fixed: np.ndarray | None = None,
    cell_probabilities: np.ndarray | None = None,
    tone: np.ndarray | None = None,
) -> None:
    """Write one block's arrays, then mark it done. ``probabilities`` is (c, h, w), NaN off tissue;
    ``fixed`` (h, w) holds a fixed label (:data:`FIXED_LABELS`) where slideiqa decided, 0 elsewhere;
    ``cell_probabilities`` (c, h·k, w·k) those of the k × k cells of every tile, in a map with cell
    arrays (NaN if None); ``tone`` (3, h, w) the tiles' tone measurements (NaN if None)."""
    rows, cols = layout.block_slices(block_row, block_col)
    write_probabilities(root, rows, cols, probabilities, good_index, fixed)
    _array(root, ARRAY_PATHS["tissue"])[rows, cols] = tissue
    if tone is None:
        tone = np.full((TONE_CHANNELS, *probabilities.shape[1:]), np.nan, np.float32)
    _array(root, ARRAY_PATHS["tone"])[:, rows, cols] = tone
    k = layout.cells_per_side
    if k:
        if cell_probabilities is None:
            cell_probabilities = np.full(
                (len(layout.classes), probabilities.shape[1] * k, probabilities.shape[2] * k), np.nan, np.float32
            )
        write_cell_probabilities(
            root,
            slice(rows.start * k, rows.stop * k),
            slice(cols.start * k, cols.stop * k),
            cell_probabilities,
            good_index,
            fixed,
        )
    _array(root, "progress")[block_row, block_col] = 1


def write_probabilities(
    root: zarr.Group,
    rows: slice,
    cols: slice,
    probabilities: np.ndarray,
    good_index: int,
    fixed: np.ndarray | None = None,
) -> None:
    """The tiles' probabilities, and the score and label that follow from them, over ``rows`` ×
    ``cols`` (whole chunks, or the whole map: one writer at a time)."""
    _array(root, ARRAY_PATHS["probs"])[:, rows, cols] = probabilities
    _array(root, ARRAY_PATHS["score"])[rows, cols] = probabilities[good_index]
    _array(root, ARRAY_PATHS["label"])[rows, cols] = _most_likely_label(probabilities, fixed)


def write_cell_probabilities(
    root: zarr.Group,
    rows: slice,
    cols: slice,
    probabilities: np.ndarray,
    good_index: int,
    tile_fixed: np.ndarray | None = None,
) -> None:
    """The cells' probabilities, and the cell score and label that follow from them, over cell
    ``rows`` × ``cols`` (whole chunks, or the whole map: one writer at a time); ``tile_fixed`` (the
    tiles' fixed labels, :func:`write_block`) goes on all of each tile's cells."""
    _array(root, ARRAY_PATHS["cell_probs"])[:, rows, cols] = probabilities
    _array(root, ARRAY_PATHS["cell_score"])[rows, cols] = probabilities[good_index]
    fixed = None
    if tile_fixed is not None:
        k = probabilities.shape[1] // tile_fixed.shape[0]
        fixed = np.kron(tile_fixed, np.ones((k, k), tile_fixed.dtype))
    _array(root, ARRAY_PATHS["cell_label"])[rows, cols] = _most_likely_label(probabilities, fixed)


def cell_bands(root: zarr.Group) -> Iterator[tuple[slice, slice]]:
    """(tile rows, cell rows) of each band of one block's height: whole chunks of the cell arrays,
    for going through a large slide's cells without holding them all."""
    k = _array(root, ARRAY_PATHS["cell_score"]).shape[0] // _array(root, ARRAY_PATHS["score"]).shape[0]
    block = _array(root, ARRAY_PATHS["cell_score"]).chunks[0] // k
    for start in range(0, _array(root, ARRAY_PATHS["score"]).shape[0], block):
        yield slice(start, start + block), slice(start * k, (start + block) * k)


def read_cell_band(root: zarr.Group, rows: slice) -> np.ndarray:
    """The cells' probabilities (c, rows, all columns) of a band of :func:`cell_bands`."""
    return np.asarray(_array(root, ARRAY_PATHS["cell_probs"])[:, rows, :])


def blocks_done(root: zarr.Group) -> np.ndarray:
    return np.asarray(_array(root, "progress")[...], dtype=bool)


def read_array(root: zarr.Group, name: str) -> np.ndarray:
    """One of the map's arrays (:data:`ARRAYS`), whole, from an open group."""
    if name not in ARRAY_PATHS:
        raise KeyError(f"no array {name!r}; a quality map has {', '.join(ARRAY_PATHS)}")
    if name in CELL_ARRAYS and ARRAY_PATHS["cell_score"] not in root:
        raise KeyError(f"this map has no {name!r} array (it was made without a cell head)")
    if ARRAY_PATHS[name] not in root:
        raise KeyError(f"this map has no {name!r} array (it was made by an older slideiqa)")
    return np.asarray(_array(root, ARRAY_PATHS[name])[...])


def open_for_update(path: Path) -> zarr.Group:
    """A map's group opened for writing (to resume it or to update its attributes)."""
    return zarr.open_group(str(path), mode="r+")


def update_attributes(root: zarr.Group, remove: tuple[str, ...] = (), **changes: Any) -> None:
    attributes = _metadata(root, "slideiqa") | changes
    root.attrs["slideiqa"] = {key: value for key, value in attributes.items() if key not in remove}


#: Unreadable tiles whose decoder errors a map keeps (their count is kept whatever it is).
UNREADABLE_RECORDED = 100


@dataclass(frozen=True)
class BlockNotes:
    """What the written blocks of a map noted beside their arrays: tiles holding marking dye (per
    block, so that a block written again is not counted twice), tiles the scaled decoder handed to
    the general reader, and the first unreadable tiles with their errors."""

    dye_tiles_by_block: dict[str, int]
    decode_fallback_tiles: int
    unreadable: list[dict[str, Any]]

    @property
    def dye_tiles(self) -> int:
        return sum(self.dye_tiles_by_block.values())

    @property
    def first_unreadable_error(self) -> str:
        return self.unreadable[0].get("error", "") if self.unreadable else ""


def block_notes(root: zarr.Group) -> BlockNotes:
    attributes = _metadata(root, "slideiqa")
    return BlockNotes(
        dict(attributes.get("dye_tiles_by_block") or {}),
        int(attributes.get("decode_fallback_tiles", 0)),
        list(attributes.get("unreadable") or []),
    )


def note_block(
    root: zarr.Group, block: tuple[int, int], dye_tiles: int, decode_fallbacks: int, unreadable: list[dict[str, Any]]
) -> None:
    """Add one block's notes (:class:`BlockNotes`) to the map's, before the block counts as done, so
    that a resumed map still knows them."""
    notes = block_notes(root)
    changes: dict[str, Any] = {}
    if dye_tiles:
        changes["dye_tiles_by_block"] = notes.dye_tiles_by_block | {f"{block[0]},{block[1]}": dye_tiles}
    if decode_fallbacks:
        changes["decode_fallback_tiles"] = notes.decode_fallback_tiles + decode_fallbacks
    room = UNREADABLE_RECORDED - len(notes.unreadable)
    if unreadable and room > 0:
        changes["unreadable"] = notes.unreadable + unreadable[:room]
    if changes:
        update_attributes(root, **changes)


@dataclass(frozen=True)
class MappedSlide:
    """The slide a map was made of, as the map recorded it: where it was, its checksum (None in maps
    made before checksums), the µm/px the map was laid with, and level 0's size in pixels."""

    path: Path
    checksum: str | None
    mpp: float
    dimensions: tuple[int, int]

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> MappedSlide:
        width, height = record.get("dimensions") or (0, 0)
        return cls(
            Path(record.get("path", "")), record.get("checksum"), float(record["mpp"]), (int(width), int(height))
        )


@dataclass
class QualityMap:
    """A map read back: its arrays (lazily, as Zarr arrays) and its metadata — read through the
    properties below, the one place that knows how the map's attributes are laid out."""

    path: Path
    group: zarr.Group

    @property
    def attributes(self) -> dict[str, Any]:
        return dict(_metadata(self.group, "slideiqa"))

    @property
    def classes(self) -> list[str]:
        return list(self.attributes["model"]["classes"])

    @property
    def slide(self) -> MappedSlide:
        return MappedSlide.from_dict(self.attributes["slide"])

    @property
    def grid(self) -> TileGrid:
        recorded = self.attributes["grid"]
        return TileGrid(**{name: recorded[name] for name in ("width", "height", "slide_mpp", "model_mpp", "tile_size")})

    @property
    def options(self) -> MapOptions:
        """The options the map was made with (a map of an older slideiqa lacks some: their defaults)."""
        known = {option.name for option in fields(MapOptions)}
        recorded = {name: value for name, value in (self.attributes.get("options") or {}).items() if name in known}
        return MapOptions(**recorded)

    @property
    def artefacts_searched(self) -> list[str]:
        """The preparation artefacts the map looked for (none in a map made without)."""
        return list((self.attributes.get("settings") or {}).get("artefacts") or [])

    @property
    def fingerprint(self) -> dict[str, Any]:
        """The settings that made the map's numbers, as recorded (a map is resumed only under the same;
        maps made before cell arrays existed have none)."""
        return {"cells_per_side": 0} | (self.attributes.get("settings") or {})

    @property
    def verdicts(self) -> list[VerdictRecord]:
        """Every verdict the map was given, oldest first (a rerun under another rule adds one)."""
        return [VerdictRecord.from_dict(verdict) for verdict in self.attributes.get("verdicts") or []]

    @property
    def notes(self) -> BlockNotes:
        return block_notes(self.group)

    @property
    def saved_summary(self) -> MapSummary | None:
        """The summary kept in the attributes, if any: also that of a map whose files were not all
        written (``summary`` reads only a complete map's)."""
        saved = self.attributes.get("summary")
        return None if saved is None else MapSummary.from_dict(saved)

    @property
    def complete(self) -> bool:
        return self.attributes.get("status") == STATUS_COMPLETE

    @property
    def tile_um(self) -> float:
        return float(self.attributes["grid"]["tile_um"])

    @property
    def cells_per_side(self) -> int:
        """Cells along a tile's side in the cell arrays; 0 for a map without them."""
        return int((self.attributes.get("settings") or {}).get("cells_per_side", 0))

    @property
    def cell_um(self) -> float | None:
        return self.tile_um / self.cells_per_side if self.cells_per_side else None

    def array(self, name: str) -> np.ndarray:
        return read_array(self.group, name)

    @property
    def image_label(self) -> dict[str, Any]:
        """The NGFF image-label metadata of the class labels: colour and class name of every value."""
        labels = cast(zarr.Group, self.group[ARRAY_PATHS["label"].rpartition("/")[0]])
        return dict(_metadata(labels, "ome")["image-label"])

    def lazy_array(self, name: str) -> zarr.Array:
        """One of the map's arrays as a Zarr array, read chunk by chunk as it is indexed."""
        return _array(self.group, ARRAY_PATHS[name])

    @property
    def summary(self) -> MapSummary | None:
        """A complete map's summary (``summary.json``, or the copy in its attributes where a process
        was stopped before it wrote the file); None for a map still being written or interrupted,
        whatever files lie beside it, since its figures are not the slide's."""
        if not self.complete:
            return None
        path = self.path / "summary.json"
        return MapSummary.from_dict(json.loads(path.read_text())) if path.exists() else self.saved_summary


def open_map(path: str | Path) -> QualityMap:
    """Open a quality map written by :func:`slideiqa.map_slide`."""
    path = Path(path)
    if not path.exists():
        raise MapError(f"{path}: no such quality map")
    if not is_quality_map(path):
        raise MapError(f"{path}: not a slideiqa quality map")
    group = zarr.open_group(str(path), mode="r")
    layout = _metadata(group, "slideiqa").get("layout", 1)
    if layout != LAYOUT:
        raise MapError(
            f"{path}: a quality map of an older slideiqa (layout {layout}, "
            f"this version reads layout {LAYOUT}); map the slide again with --overwrite"
        )
    return QualityMap(path, group)
