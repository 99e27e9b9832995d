"""Running a map's plan: blocks with nothing to assess written at once, the others run as block
tasks on a client and written by this process, one whole chunk at a time, as they arrive."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slideiqa import __version__
from slideiqa.artefacts.registry import BY_NAME, tile_artefacts
from slideiqa.cli.terminal import timestamp
from slideiqa.errors import SlideIQAError
from slideiqa.io.slide import SlideError
from slideiqa.measure.judgement import judgement_attributes
from slideiqa.models.card import checkpoint_paths
from slideiqa.outputs.store import (
    UNREADABLE,
    MapLayout,
    blocks_done,
    create_map,
    note_block,
    open_for_update,
    update_attributes,
    write_block,
)
from slideiqa.pipeline.block_task import BlockResult, BlockTask, assess_block
from slideiqa.pipeline.plan import MapPlan, Progress


class MapCancelled(SlideIQAError):
    """The caller asked a running map to stop; the map stays resumable (status "running")."""


def open_output(plan: MapPlan):
    """The Zarr group to write into: a new map (status running), or the partial one to resume."""
    if plan.existing is not None:
        return open_for_update(plan.out)
    return create_map(
        plan.out,
        plan.layout,
        {
            "version": __version__,
            "model": plan.card.to_dict()
            | {"checkpoint": str(plan.checkpoint), **judgement_attributes(plan.card.classes, plan.card.mpp)},
            "slide": plan.slide_attributes,
            "grid": plan.grid.to_dict(),
            "settings": plan.settings.to_dict(),
            "options": plan.options.to_dict(),
            "started": timestamp(),
        },
        replace=plan.options.overwrite,
    )


def run_blocks(
    plan: MapPlan, root, client, threads: int | None, progress: Progress | None, should_stop: Callable[[], bool] | None
) -> tuple[int, int, int, float]:
    """Write blocks with nothing to assess at once and run the others as tasks on ``client``.
    Returns (blocks resumed, tiles done before this run, tiles to assess, seconds computing)."""
    layout, card, options = plan.layout, plan.card, plan.options
    tissue, fixed, to_assess = plan.found.tissue, plan.found.fixed, plan.to_assess
    done = blocks_done(root)
    resumed = int(done.sum())
    pending = []
    for br, bc in np.ndindex(*layout.block_shape):
        if done[br, bc]:
            continue
        rows, cols = layout.block_slices(br, bc)
        if not to_assess[rows, cols].any():  # nothing to assess: write the block now
            empty = np.full((len(card.classes), rows.stop - rows.start, cols.stop - cols.start), np.nan, np.float32)
            write_block(root, layout, br, bc, empty, tissue[rows, cols], card.good_index, fixed[rows, cols])
        else:
            pending.append((br, bc))
    total = int(to_assess.sum())
    finished = total - sum(int(to_assess[layout.block_slices(br, bc)].sum()) for br, bc in pending)
    if progress:
        progress(finished, total)
    compute_started = time.perf_counter()
    if pending:
        tensors = str(checkpoint_paths(plan.checkpoint)[0].resolve())
        run = BlockRun(
            plan.out, root, layout, card.good_index, tissue, fixed, to_assess, progress, should_stop, finished, total
        )
        tasks = [
            BlockTask(
                str(plan.slide_path),
                tensors,
                options.device,
                plan.grid,
                block,
                layout.block,
                options.batch_size,
                tile_artefacts=tuple(artefact.name for artefact in tile_artefacts(plan.settings.artefacts)),
                with_cells=layout.cells_per_side > 0,
            )
            for block in pending
        ]
        run.execute(client, tasks, threads)
    return resumed, finished, total, time.perf_counter() - compute_started


@dataclass
class BlockRun:
    """Submits a slide's pending blocks to a Dask client and writes each one as it arrives."""

    path: Path
    root: Any
    layout: MapLayout
    good_index: int
    tissue: np.ndarray
    fixed: np.ndarray
    to_assess: np.ndarray
    progress: Progress | None
    should_stop: Callable[[], bool] | None
    finished: int
    total: int

    def _write(self, result: BlockResult, block: tuple[int, int]) -> None:
        """The block's arrays (unreadable tiles and those a tile artefact holds labelled so), and its unreadable tiles' errors
        (before the block counts as done, so a resumed map still knows them)."""
        rows, cols = self.layout.block_slices(*block)
        fixed = self.fixed[rows, cols].copy()
        for tile in result.unreadable:
            fixed[tile.row - rows.start, tile.col - cols.start] = UNREADABLE
        for name, cells in result.labelled.items():
            for row, col in cells:
                fixed[row - rows.start, col - cols.start] = BY_NAME[name].label
        note_block(
            self.root,
            block,
            len(result.dye),
            result.decode_fallbacks,
            [{"row": t.row, "col": t.col, "error": t.error} for t in result.unreadable],
        )
        write_block(
            self.root,
            self.layout,
            *block,
            result.probabilities,
            self.tissue[rows, cols],
            self.good_index,
            fixed,
            result.cell_probabilities,
            result.tone,
        )

    def execute(self, client, tasks: list[BlockTask], threads: int | None) -> None:
        from dataclasses import replace

        if hasattr(client, "as_completed"):
            as_completed = client.as_completed
        else:
            from distributed import as_completed

        futures: dict[Any, tuple[int, int]] = {}
        try:
            for task in tasks:
                assess = self.to_assess[self.layout.block_slices(*task.block)]
                futures[client.submit(assess_block, replace(task, threads=threads), assess, pure=False)] = task.block
            for future in as_completed(futures):
                block = futures[future]
                try:
                    result: BlockResult = future.result()
                except SlideError as error:
                    update_attributes(self.root, status="failed", error=str(error))
                    raise
                self._write(result, block)
                self.finished += int(self.to_assess[self.layout.block_slices(*block)].sum())
                if self.progress:
                    self.progress(self.finished, self.total)
                if self.should_stop and self.should_stop():
                    raise MapCancelled(
                        f"{self.path}: stopped on request after {self.finished} of "
                        f"{self.total} tiles; run again to resume"
                    )
        finally:
            # Whatever ends the loop early (cancel, error), no orphan task keeps a shared cluster busy;
            # a client that is itself gone must not hide the error that ended the loop.
            with contextlib.suppress(Exception):
                client.cancel([f for f in futures if not f.done()])
