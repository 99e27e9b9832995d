"""The files a finished map writes beside its arrays, one writer each, and which of them a map's
options ask for.

Each writer reads a :class:`FinishedMap` — the map's score and label arrays (read once, by the
caller), its summary and what the plan knows — and writes one file whole (``write_atomically``), so
that a reader never sees half of it. ``summary.json`` is written last: a file with a verdict is on
disk only once the others are.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from slideiqa.io.files import write_atomically
from slideiqa.io.grid import TileGrid
from slideiqa.outputs.report import low_quality_regions, overview_image, tile_objects
from slideiqa.outputs.store import UNREADABLE_CLASS, label_entries, read_array
from slideiqa.outputs.summary import MapSummary
from slideiqa.settings.options import MapOptions


@dataclass(frozen=True)
class FinishedMap:
    """What the writers read: where the map is, its grid and classes, the thumbnail its tissue was
    found on, the summary, and its score and label arrays."""

    out: Path
    root: zarr.Group
    grid: TileGrid
    classes: list[str]
    options: MapOptions
    thumbnail: np.ndarray
    summary: MapSummary
    score: np.ndarray
    label: np.ndarray

    @property
    def colours(self) -> dict[str, list[int]]:
        return {name: rgba for _, name, rgba in label_entries(self.classes)}


Writer = Callable[[FinishedMap], None]


def write_overview(finished: FinishedMap) -> None:
    """``overview.png``: where (each tile's P(good)) and why (its most likely class), over the thumbnail."""
    summary, grid, thumbnail, threshold = (
        finished.summary,
        finished.grid,
        finished.thumbnail,
        finished.options.threshold,
    )
    mean = "–" if summary.mean_score is None else f"{summary.mean_score:.2f}"
    lost = summary.artefact_tiles | {UNREADABLE_CLASS: summary.unreadable_tiles}
    lost_text = ", ".join(f"{name} {count}" for name, count in lost.items() if count)
    title = (
        f"{Path(summary.slide).name}: {summary.verdict}; mean score {mean}, "
        f"{summary.share_below_threshold:.0%} of tissue below {threshold}"
        + (f" or lost ({lost_text} tiles)" if lost_text else "")
    )
    step_thumbnail = grid.step * thumbnail.shape[1] / grid.width
    um_per_px = grid.width * grid.slide_mpp / thumbnail.shape[1]
    entries = label_entries(finished.classes)
    picture = io.BytesIO()
    overview_image(
        thumbnail, finished.score, finished.label, step_thumbnail, threshold, title, entries, um_per_px
    ).save(picture, "PNG")
    write_atomically(finished.out / "overview.png", picture.getvalue())


def write_regions(finished: FinishedMap) -> None:
    """``regions.geojson``: the low-quality regions as QuPath annotations."""
    grid = finished.grid
    regions = low_quality_regions(
        finished.score,
        finished.label,
        finished.classes,
        finished.options.threshold,
        grid.step,
        finished.colours,
        grid.tile_um,
    )
    write_atomically(finished.out / "regions.geojson", json.dumps(regions) + "\n")


def write_tiles(finished: FinishedMap) -> None:
    """``tiles.geojson``: every tissue tile as a QuPath tile object with its measurements."""
    tiles = tile_objects(
        finished.score,
        finished.label,
        read_array(finished.root, "probs"),
        read_array(finished.root, "tissue"),
        finished.classes,
        finished.grid.step,
        finished.colours,
    )
    write_atomically(finished.out / "tiles.geojson", json.dumps(tiles) + "\n")


def write_summary(finished: FinishedMap) -> None:
    """``summary.json``: the verdict and the figures behind it."""
    write_atomically(finished.out / "summary.json", json.dumps(finished.summary.to_dict(), indent=2) + "\n")


def writers_for(options: MapOptions) -> list[Writer]:
    """The writers a map's options ask for, in the order they run (the summary last)."""
    return [write_overview, write_regions, *([write_tiles] if options.tile_geojson else []), write_summary]
