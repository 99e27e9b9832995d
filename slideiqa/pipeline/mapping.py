"""``map_slide``: a whole slide through the quality model into a resumable Zarr quality map.

Flow: open the slide → tile grid at the model's µm/px → tissue mask from a thumbnail → blocks of
tiles as Dask tasks (one task = one block = one chunk of every output array) → each finished block
written by this process as it arrives → summary, overview and regions → status "complete".

Scheduling: by default the block tasks run on a pool of threads in this process that share one
slide handle and one model (OpenSlide and ONNX Runtime release the GIL, so threads decode and infer
in parallel with no start-up or transfer cost; starting even an in-process Dask cluster took about
1 s, more than mapping the bundled sample's 56 tiles); ``workers=N`` starts a Dask ``LocalCluster`` of N worker
processes instead, and ``scheduler=ADDRESS`` uses an existing Dask distributed cluster. The tasks are
the same functions on every path.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slideiqa import __version__
from slideiqa.artefacts.registry import ARTEFACT_NAMES, ARTEFACTS, BY_NAME
from slideiqa.artefacts.thumbnail import artefact_labels
from slideiqa.cli.terminal import timestamp
from slideiqa.errors import SlideIQAError
from slideiqa.io.files import exclusive_output, write_atomically
from slideiqa.io.grid import COARSEST_RATIO, TileGrid, judging_scale, read_plan, tile_fractions
from slideiqa.io.slide import Slide, SlideError, file_checksum, open_slide
from slideiqa.measure.exposure_evidence import SATURATED
from slideiqa.measure.judgement import judgement_attributes
from slideiqa.measure.slide_tone import glass_warning, judge_slide_tone
from slideiqa.measure.tissue import tissue_mask
from slideiqa.models.card import ModelCard, checkpoint_paths
from slideiqa.models.predictor import Predictor
from slideiqa.models.zoo import resolve_model
from slideiqa.outputs.report import low_quality_regions, overview_image, summarize, summarize_cells, tile_objects
from slideiqa.outputs.store import (
    FIXED_LABELS,
    STATUS_COMPLETE,
    UNREADABLE,
    UNREADABLE_CLASS,
    MapError,
    MapLayout,
    QualityMap,
    blocks_done,
    cell_bands,
    create_map,
    is_quality_map,
    label_entries,
    open_for_update,
    open_map,
    read_array,
    read_cell_band,
    update_attributes,
    write_block,
    write_cell_probabilities,
    write_probabilities,
)
from slideiqa.pipeline.block_task import BlockResult, BlockTask, assess_block, blas_on_one_thread, worker_threads
from slideiqa.settings.options import DEFAULT_MIN_TISSUE, MapOptions

MASK_PIXELS_PER_TILE = 8
MAX_MASK_SIDE = 8192
#: How long to wait for a ``--scheduler`` before giving up with a one-line error.
SCHEDULER_TIMEOUT_S = 10
#: How long a reachable scheduler may take to have its first worker (an adaptive cluster scaling up
#: from none needs a while) before the map or batch gives up with a one-line error.
SCHEDULER_WORKER_WAIT_S = 120
#: A tissue thumbnail that needs more level pixels than this decoded (a slide without a usable
#: pyramid) is announced with an estimate of how long it takes.
SLOW_THUMBNAIL_PIXELS = 400_000_000
#: Unreadable tiles whose error is kept in the map's attributes (all are counted in the summary).
UNREADABLE_RECORDED = 100

Progress = Callable[[int, int], None]
Notice = Callable[[str], None]
log = logging.getLogger(__name__)


class MapCancelled(SlideIQAError):
    """The caller asked a running map to stop; the map stays resumable (status "running")."""


#: How tiles are read and judged (``MapSettings.judgement``): 1 is edge tiles mirrored past the slide,
#: pale stroma joined into tissue, exposure judged by evidence and the debris colour rule of stains;
#: 2 adds the JPEG step read from the tile and noise measured on its unclipped patches; 3 reads tone on
#: block means, motion on a fine band from 0.13 cycles/px, and floors P(exposure) on certain over-exposure;
#: 4 reads motion on an edge tile's own part and on bands scaled to a slightly coarser slide's µm/px.
JUDGEMENT = 4


@dataclass
class MapSettings:
    """Everything that determines a map's numbers: a map is resumed only under identical settings."""

    model_sha256: str
    slide_checksum: str
    slide_mpp: float
    tissue_mask: bool
    min_tissue: float
    block: int
    artefacts: list[str] = field(default_factory=lambda: list(ARTEFACT_NAMES))
    #: Cells per tile side of the cell arrays (0: none; the model has no cell head or was told not to).
    cells_per_side: int = 0
    #: Defect families measured rather than taken from the network (``Predictor.measured_families``).
    #: Maps made before motion was measured lack it, and are not resumed under the new judgement.
    measured_families: list[str] = field(default_factory=list)
    #: Whether each tile's tone is judged against its slide's when the map is finished
    #: (``slide_tone``; what was found goes to the attribute ``tone_context``). Maps made before that
    #: have no tones and are not resumed under it.
    tone_against_slide: bool = False
    #: Whether the cells are judged with their tile (their probabilities kept in ``cell_probs``).
    #: Maps made before keep none, and are not resumed under it.
    cells_against_slide: bool = False
    #: The version of how tiles are read and judged beyond the model and the settings above (edge
    #: tiles mirrored, pale stroma joined into tissue, the debris colour rule): a map made under an
    #: earlier one is not resumed into a mix of both. Raise :data:`JUDGEMENT` with any such change.
    judgement: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class MapResult:
    path: Path
    summary: dict[str, Any]
    resumed_blocks: int = 0
    skipped: bool = False
    timing: dict[str, float] = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        """What a person must know beyond the figures (:func:`map_warnings`), one sentence each."""
        found = self.summary.get("warnings")
        if found is None:  # a map made before its summary kept them
            found = map_warnings(self.summary, open_map(self.path).attributes)
        return [warning["message"] for warning in found]


def map_warnings(summary: dict[str, Any], attributes: dict[str, Any]) -> list[dict[str, Any]]:
    """What a person must know beyond the figures, each as ``code`` (an artefact's name,
    ``unreadable``, ``tone``, ``dye`` or ``glass``), ``count`` (tissue tiles; 1 for the slide's glass) and
    ``message``: tissue under preparation artefacts, tissue the file could not give (the first
    decoder error, from the map's ``attributes``), tissue whose tone is unlike the rest of the
    slide's, specks of marking dye, glass that says the whole slide is exposed wrongly. Kept in ``summary.json`` and the
    batch's report, not only on the terminal, so that a lab reading the files later sees them too."""
    first_unreadable = (attributes.get("unreadable") or [{}])[0].get("error", "")
    artefacts = summary.get("artefact_tiles") or {}
    found = [
        {
            "code": name,
            "count": artefacts[name],
            "message": f"{artefacts[name]} tissue tiles {what}; they are labelled {name} in the map and count "
            f"against the verdict ({advice})",
        }
        for name, what, advice in ((a.name, a.finds, a.advice) for a in ARTEFACTS)
        if artefacts.get(name)
    ]
    count = summary.get("unreadable_tiles") or 0
    if count:
        found.append(
            {
                "code": UNREADABLE_CLASS,
                "count": count,
                "message": f"{count} tissue tiles cannot be decoded (corrupt data in the slide file); they are "
                f"labelled unreadable in the map and count against the verdict. First: {first_unreadable}",
            }
        )
    departing = (summary.get("tone") or {}).get("tiles_departing") or 0
    if departing:
        found.append(
            {
                "code": "tone",
                "count": departing,
                "message": f"{departing} tissue tiles' tone (glass level, stain density or white point) departs "
                "from the rest of the slide's; they are judged exposure unless they have a worse "
                "defect (uneven illumination or staining across the slide: check them by eye)",
            }
        )
    dye = summary.get("dye_tiles") or 0
    if dye:
        found.append(
            {
                "code": "dye",
                "count": dye,
                "message": f"{dye} tissue tiles hold specks of a green or teal marking dye (grossing ink, not a "
                "scanning defect); they are judged as usual and do not count against the verdict",
            }
        )
    glass = glass_warning((((summary.get("tone") or {}).get("reference") or {}).get("glass") or {}).get("median"))
    if glass:
        found.append(
            {
                "code": "glass",
                "count": 1,
                "message": f"the slide's {glass}, which its tiles, judged against each other, cannot show "
                "(compare it with the lab's other slides: slideiqa batch)",
            }
        )
    return found


def default_output(slide_path: Path) -> Path:
    return slide_path.with_name(slide_path.stem + ".quality.zarr")


def output_path(slide_path: str | Path, out: str | Path | None) -> Path:
    """Where a map goes: ``out``, or beside the slide."""
    return Path(out) if out else default_output(Path(slide_path).resolve())


def slide_pixel_size(slide: Slide, mpp: float | None) -> float:
    if mpp is not None:
        if not math.isfinite(mpp) or mpp <= 0:
            raise SlideError(f"{slide.path}: --mpp must be a positive number, got {mpp}")
        return float(mpp)
    if slide.mpp is None:
        raise SlideError(f"{slide.path}: pixel size unknown (no µm/px in its metadata); pass it with --mpp")
    return slide.mpp


def slide_grid(slide: Slide, mpp: float | None, card: ModelCard) -> TileGrid:
    """The grid a map lays on ``slide`` for a model with ``card`` (``mpp`` overriding the file's), or
    a one-line error for a slide too coarse to judge."""
    slide_mpp = slide_pixel_size(slide, mpp)
    if slide_mpp > card.mpp * COARSEST_RATIO:
        raise MapError(
            f"{slide.path}: {slide_mpp:g} µm/px is more than {COARSEST_RATIO - 1:.0%} coarser than the "
            f"{card.mpp:g} µm/px the model was trained for; enlarged tiles would look blurred, so it "
            "cannot judge this slide"
        )
    return TileGrid(
        slide.dimensions[0], slide.dimensions[1], slide_mpp, judging_scale(slide_mpp, card.mpp), card.tile_size
    )


@dataclass
class TissueMap:
    """What the thumbnail says of each tile: its tissue fraction, and the label slideiqa gives it
    itself (a thumbnail artefact's label, ``artefacts.registry``; 0 elsewhere)."""

    thumbnail: np.ndarray
    tissue: np.ndarray
    fixed: np.ndarray


def tissue_map(
    slide: Slide,
    grid: TileGrid,
    notice: Notice | None = None,
    artefacts: tuple[str, ...] | list[str] = ARTEFACT_NAMES,
    min_tissue: float = DEFAULT_MIN_TISSUE,
) -> TissueMap:
    """Tissue fractions and the tiles under preparation artefacts (pen ink, folds, bubbles, coverslip
    edges: ``artefacts.thumbnail``; those of ``artefacts``) from one thumbnail, sized so every tile spans several mask pixels.
    Where the thumbnail could not be decoded, whether there is tissue is unknown: those tiles get
    fraction 1, so that they are read (and found unreadable, or assessed) instead of silently taken
    for glass. A slide without a pyramid level near the thumbnail's size must be decoded whole for
    it; ``notice`` is then told how long that will take."""
    rows, cols = grid.shape
    side = int(min(MAX_MASK_SIDE, max(256, MASK_PIXELS_PER_TILE * max(rows, cols))))
    gaps: list[tuple[int, int, int, int]] = []
    thumbnail = slide.thumbnail(side, gaps=gaps, progress=_slow_thumbnail_notice(slide, side, notice))
    um_per_px = grid.width * grid.slide_mpp / thumbnail.shape[1]
    stained = tissue_mask(thumbnail, um_per_px=um_per_px)
    if artefacts:
        fractions, fixed = artefact_labels(thumbnail, stained, grid, um_per_px, min_tissue, artefacts)
    else:
        fractions, fixed = tile_fractions(stained, grid), np.zeros(grid.shape, np.uint8)
    if gaps:
        unknown = np.zeros(thumbnail.shape[:2], bool)
        for x0, y0, x1, y1 in gaps:
            unknown[y0:y1, x0:x1] = True
        fractions[tile_fractions(unknown, grid) > 0] = 1.0
    return TissueMap(thumbnail, fractions, fixed)


#: Share of a slide without tissue clipped to pure white beyond which the error asks about exposure.
CLIPPED_WHITE_SHARE = 0.5


def no_tissue_message(slide_path: Path, min_tissue: float, thumbnail: np.ndarray) -> str:
    """The one-line error of a slide with no tissue tile. Twice the light turns pale tissue (a faint
    IHC counterstain) into glass, so where most of the slide is clipped to pure white the message
    says so: the scan may hold tissue that its exposure erased."""
    message = f"{slide_path}: no tissue found (no tile ≥ {min_tissue:.0%} tissue)"
    white = float((thumbnail.min(axis=-1) >= SATURATED).mean())
    if white > CLIPPED_WHITE_SHARE:
        message += (
            f"; {white:.0%} of it is clipped to pure white, as an over-exposed scan is: if the glass "
            "holds tissue, check the scanner's exposure and rescan"
        )
    return message + "; use --no-tissue-mask to assess every tile"


def _slow_thumbnail_notice(slide: Slide, side: int, notice: Notice | None) -> Progress | None:
    """A thumbnail progress callback that, after the first piece, estimates the whole decode and
    tells ``notice`` (or the log) once, when the thumbnail level is larger than SLOW_THUMBNAIL_PIXELS."""
    level = slide.thumbnail_level(side)
    level_width, level_height = slide.info.level_dimensions[level]
    if level_width * level_height <= SLOW_THUMBNAIL_PIXELS:
        return None
    tell = notice or log.warning
    started = time.perf_counter()
    told = False

    def estimate(done: int, total: int) -> None:
        nonlocal told
        if told:
            return
        told = True
        seconds = (time.perf_counter() - started) * total / max(done, 1)
        pyramid = "has no pyramid" if slide.level_count == 1 else f"has no level near {side} px across"
        tell(
            f"{slide.path}: the slide {pyramid}, so its tissue mask decodes all {total / 1e6:,.0f} Mpx of "
            f"level {level}: about {_duration(seconds)} at the rate of the first part, before tiles are mapped"
        )

    return estimate


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


class ThreadRunner:
    """Block tasks on a pool of threads in this process, with the part of a Dask client's interface
    that :class:`BlockRun` uses (``submit``, ``cancel``, ``as_completed``, ``close``)."""

    def __init__(self, threads: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="slideiqa-block")
        self._blas_limit = blas_on_one_thread()  # a thread per core already; restored on close

    def submit(self, function: Callable, *arguments: Any, pure: bool = False) -> Any:
        return self.pool.submit(function, *arguments)

    def cancel(self, futures: list) -> None:
        for future in futures:
            future.cancel()

    @staticmethod
    def as_completed(futures):
        from concurrent.futures import as_completed

        return as_completed(futures)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self._blas_limit.restore_original_limits()


def start_client(workers: int | None, scheduler: str | None, worker_wait_s: float | None = None):
    """A client to run block tasks on, the cluster it owns (None if none) and the inference threads
    each task should use (None: the engine's own choice, for a cluster of unknown machines).

    ``workers=N`` starts a Dask cluster of N single-threaded worker processes sharing the cores out
    for inference; ``scheduler`` connects to a running one; neither gives a :class:`ThreadRunner`
    with a thread per core. Dask's dashboard is served on a free port (its pages need bokeh, the
    ``dashboard`` extra). A scheduler must have a worker within ``worker_wait_s`` (default
    :data:`SCHEDULER_WORKER_WAIT_S`).
    """
    worker_wait_s = SCHEDULER_WORKER_WAIT_S if worker_wait_s is None else worker_wait_s
    if not workers and not scheduler:
        return ThreadRunner(os.cpu_count() or 1), None, 1
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=f"{SCHEDULER_TIMEOUT_S}s")
        except (OSError, TimeoutError) as error:
            raise MapError(
                f"{scheduler}: cannot reach the Dask scheduler within {SCHEDULER_TIMEOUT_S} s ({type(error).__name__})"
            ) from None
        try:  # a scheduler whose workers never come would otherwise be waited on forever
            client.wait_for_workers(1, timeout=worker_wait_s)
        except TimeoutError:
            client.close()
            raise MapError(
                f"{scheduler}: the Dask scheduler has no worker, and none joined within "
                f"{worker_wait_s:g} s; start workers (dask worker {scheduler}) and run again"
            ) from None
        return client, None, None
    # A free port always: Dask's default (8787) clashes with any other cluster on the machine, and
    # two maps started at once would both warn about it. The scheduler serves its HTTP routes with or
    # without bokeh (without, the dashboard's pages ask for it), and None would mean 8787.
    with _interrupts_ignored_by_children():
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
        )
    return Client(cluster), cluster, worker_threads(workers or 1)


@contextlib.contextmanager
def _interrupts_ignored_by_children():
    """Start worker processes with SIGINT ignored (children keep an ignored signal across exec, and
    Python installs its KeyboardInterrupt handler only where SIGINT is at its default).

    Ctrl-C in a terminal reaches the whole foreground process group; worker processes that took it
    died mid-task and left the driver waiting on a cluster that kept restarting them, for minutes.
    Only the driver must hear Ctrl-C: it cancels the work and closes the cluster itself. Where
    signals cannot be set (a thread other than the main one, e.g. napari's), nothing changes."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _prepare_output(out: Path, settings: MapSettings, overwrite: bool) -> QualityMap | None:
    """The existing map to resume (or to report as complete), or None to start a new one."""
    if overwrite and out.is_symlink():
        raise MapError(
            f"{out}: is a symbolic link (to {os.readlink(out)}); to replace the map, give its own path "
            "with --overwrite, or remove the link"
        )
    if not out.exists() or overwrite:
        if out.exists() and not is_quality_map(out):
            raise MapError(f"{out}: exists and is not a slideiqa quality map; refusing to overwrite it")
        return None
    if not is_quality_map(out):
        raise MapError(f"{out}: exists and is not a slideiqa quality map; refusing to overwrite it")
    existing = open_map(out)
    # Maps made before cell arrays existed have no such setting: they have none.
    stored = {"cells_per_side": 0} | (existing.attributes.get("settings") or {})
    if stored != settings.to_dict():
        raise MapError(
            f"{out}: an existing map {_difference(stored, settings.to_dict())}; use --overwrite to replace it"
        )
    return existing


def _difference(stored: dict[str, Any], wanted: dict[str, Any]) -> str:
    """What makes an existing map not this run's, in words: the slide, the model, how slideiqa
    judges, or a setting."""
    if stored.get("slide_checksum") != wanted["slide_checksum"]:
        return "of this slide as it was before: the slide file has changed since"
    if stored.get("model_sha256") != wanted["model_sha256"]:
        return "made with another model"
    if stored.get("judgement", 0) != wanted["judgement"]:
        return "made by an earlier slideiqa, which judged tiles differently (README: what changed)"
    changed = sorted(key for key in wanted if stored.get(key) != wanted[key])
    return f"made with other settings ({', '.join(changed)})"


@dataclass
class MapPlan:
    """What a map will be, decided before any task runs: the model, the grid, the tissue and fixed
    labels from the thumbnail, the settings that make its numbers, and the existing map, if any."""

    slide_path: Path
    out: Path
    options: MapOptions
    checkpoint: Path
    card: Any
    grid: TileGrid
    found: TissueMap
    to_assess: np.ndarray
    settings: MapSettings
    slide_attributes: dict[str, Any]
    existing: QualityMap | None

    @property
    def layout(self) -> MapLayout:
        return MapLayout(
            *self.grid.shape, self.card.classes, self.options.block, self.grid.tile_um, self.settings.cells_per_side
        )


def plan_map(
    slide_path: str | Path, out: str | Path | None, options: MapOptions, notice: Notice | None = None
) -> MapPlan:
    """Open the model and the slide, lay the grid, find tissue and ink, and check any existing map:
    everything that can fail on bad input fails here, before any output exists."""
    out = output_path(slide_path, out)
    slide_path = Path(slide_path).resolve()  # workers, possibly on other machines, get absolute paths
    checkpoint = resolve_model(options.model)
    # Loading once here checks the checkpoint against its card and prepares the ONNX graph, so
    # that a bad model fails before any output exists and workers only read the cached graph.
    predictor = Predictor(checkpoint, device=options.device)
    card = predictor.card
    with open_slide(slide_path) as slide:
        grid = slide_grid(slide, options.mpp, card)
        found = tissue_map(slide, grid, notice, artefacts=options.artefacts_searched, min_tissue=options.min_tissue)
        info, reading = slide.info, read_plan(slide, grid)
    tissue, fixed = found.tissue, found.fixed
    to_assess = (tissue >= options.min_tissue if options.use_tissue_mask else np.ones_like(tissue, bool)) & (fixed == 0)
    if not to_assess.any() and not fixed.any():
        raise MapError(no_tissue_message(slide_path, options.min_tissue, found.thumbnail))
    checksum = file_checksum(slide_path)
    settings = MapSettings(
        card.weights_sha256,
        checksum,
        grid.slide_mpp,
        options.use_tissue_mask,
        options.min_tissue if options.use_tissue_mask else 0.0,
        options.block,
        list(options.artefacts_searched),
        card.cells_per_side if options.cells else 0,
        predictor.measured_families,
        tone_against_slide={"good", "exposure"} <= set(card.classes),
        cells_against_slide=bool(options.cells and card.cells_per_side),
        judgement=JUDGEMENT,
    )
    slide_attributes = {
        "path": str(slide_path),
        "size_bytes": slide_path.stat().st_size,
        "checksum": checksum,
        "mpp": grid.slide_mpp,
        "mpp_from": "option" if options.mpp is not None else "metadata",
        "dimensions": list(info.level_dimensions[0]),
        "vendor": info.vendor,
        "reading": {
            "level": reading.level,
            "read_px": reading.read_size,
            "decode_factor": reading.decode_factor,
            "decoder": reading.decoder or info.reader,
        },
    }
    existing = _prepare_output(out, settings, options.overwrite)
    return MapPlan(
        slide_path, out, options, checkpoint, card, grid, found, to_assess, settings, slide_attributes, existing
    )


def map_slide(
    slide_path: str | Path,
    out: str | Path | None = None,
    options: MapOptions | None = None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: Progress | None = None,
    notice: Notice | None = None,
    should_stop: Callable[[], bool] | None = None,
    client: Any = None,
    inference_threads: int | None = None,
    **changes: Any,
) -> MapResult:
    """Map the quality of every tissue tile of a slide; see the module docstring for the flow.

    ``options`` (:class:`~slideiqa.settings.options.MapOptions`) holds every choice about the map; keyword
    ``changes`` (``mpp=0.25``, ``block=4``, …) are applied to them, for short calls from Python.
    ``progress(done, total)`` is called as tiles finish; ``notice(message)`` hears what a person
    should know while it runs (a slow tissue mask; default: this module's log). ``should_stop()`` is polled as blocks finish;
    when it returns True the pending tasks are cancelled and :class:`MapCancelled` is raised, leaving
    a resumable map. ``client`` is a Dask client to run on instead of creating one (several maps can then
    share one cluster, as ``slideiqa batch`` does); it is not closed here. ``inference_threads`` sets
    each task's inference threads on such a client (default: the inference engine's own choice).
    """
    started = time.perf_counter()
    options = (options or MapOptions()).updated(**changes)
    with exclusive_output(output_path(slide_path, out)):  # one run writes a map at a time
        plan = plan_map(slide_path, out, options, notice)
        if plan.existing is not None and plan.existing.complete:
            return _report_complete(plan)
        # The cluster first: an unreachable scheduler must fail before any output exists.
        own_client, cluster, own_threads = (
            (None, None, None) if client is not None else start_client(workers, scheduler)
        )
        try:
            root = _open_output(plan)
            resumed, finished, total, compute_s = run_blocks(
                plan,
                root,
                client or own_client,
                inference_threads if client is not None else own_threads,
                progress,
                should_stop,
            )
        finally:
            if own_client is not None:
                own_client.close()
            if cluster is not None:
                cluster.close()
        return finish_map(plan, root, started, compute_s, assessed_now=total - finished, resumed=resumed)


def _report_complete(plan: MapPlan) -> MapResult:
    """A complete map with the same settings: its numbers stand; the verdict is recomputed, since
    threshold and rule may differ from last time, and every change of verdict rule is kept."""
    existing, options = plan.existing, plan.options
    assert existing is not None  # only a complete map found on disk is reported again
    score, label = existing.array("score"), existing.array("label")
    summary = (
        (existing.summary or {})
        | summarize(score, label, plan.card.classes, options.threshold, options.max_bad_share)
        | _slide_facts(plan, existing.array("tissue"))
    )
    summary |= _cell_summary(plan, existing.group)
    _write_reports(plan, existing.group, summary, score, label)
    if existing.attributes.get("summary") != summary:  # readers of the attributes see the new rule too
        update_attributes(
            open_for_update(plan.out),
            summary=summary,
            options=options.to_dict(),
            verdicts=_verdict_history(existing.attributes, summary),
        )
    return MapResult(plan.out, summary, skipped=True)


def _cell_summary(plan: MapPlan, root) -> dict[str, Any]:
    """``{"cells": ...}`` (``report.summarize_cells``) for a map with cell arrays, at this run's threshold."""
    if not plan.layout.cells_per_side:
        return {}
    return {
        "cells": summarize_cells(
            read_array(root, "cell_score"),
            read_array(root, "cell_label"),
            plan.card.classes,
            plan.options.threshold,
            plan.grid.tile_um / plan.layout.cells_per_side,
        )
    }


def _verdict_history(attributes: dict[str, Any], summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The map's earlier verdicts, newest last, with this one added: a rerun under another threshold
    changes the verdict openly, never by silently rewriting it."""
    history = list(attributes.get("verdicts") or [])
    verdict = {
        key: summary.get(key)
        for key in ("verdict", "verdict_rule", "threshold", "max_bad_share", "share_below_threshold")
    }
    if not history or {**history[-1], "at": None} != {**verdict, "at": None}:
        history.append(verdict | {"at": timestamp()})
    return history


def _open_output(plan: MapPlan):
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
                find_debris="debris" in plan.settings.artefacts,
                with_cells=layout.cells_per_side > 0,
            )
            for block in pending
        ]
        run.execute(client, tasks, threads)
    return resumed, finished, total, time.perf_counter() - compute_started


def finish_map(plan: MapPlan, root, started: float, compute_s: float, assessed_now: int, resumed: int) -> MapResult:
    """Each tile's tone judged against its slide's, then status "complete" with the summary in the
    map's attributes, then overview, regions and ``summary.json`` from the written arrays. The files
    come last so that no verdict is ever on disk beside a map that is not complete: a process killed
    before the status has written none (a rerun finishes the map), one killed after it leaves a
    complete map whose files a rerun writes again (``_report_complete``)."""
    tone = (
        judge_map_tone(root, plan.card.classes, plan.card.good_index, plan.settings.cells_against_slide)
        if plan.settings.tone_against_slide
        else None
    )
    score, label = read_array(root, "score"), read_array(root, "label")
    options, card = plan.options, plan.card
    summary = summarize(score, label, card.classes, options.threshold, options.max_bad_share)
    runtime = time.perf_counter() - started
    summary |= {
        "slide": str(plan.slide_path),
        "model": card.name or str(plan.checkpoint),
        **_slide_facts(plan, read_array(root, "tissue")),
        "created": timestamp(),
        "runtime_s": runtime,
        "tiles_per_s": assessed_now / compute_s if compute_s > 0 and assessed_now else None,
        "resumed_blocks": resumed,
        "dye_tiles": sum((root.attrs["slideiqa"].get("dye_tiles_by_block") or {}).values()),
        "reading": plan.slide_attributes["reading"]
        | {"fallback_tiles": int(root.attrs["slideiqa"].get("decode_fallback_tiles", 0))},
    }
    summary |= _cell_summary(plan, root)
    if tone is not None:
        summary["tone"] = tone
    summary["warnings"] = map_warnings(summary, root.attrs["slideiqa"])
    update_attributes(
        root,
        remove=("error",),
        status=STATUS_COMPLETE,
        summary=summary,
        verdicts=_verdict_history(dict(root.attrs["slideiqa"]), summary),
        timing={"runtime_s": runtime, "compute_s": compute_s},
    )
    _write_reports(plan, root, summary, score, label)
    return MapResult(plan.out, summary, resumed, timing={"runtime_s": runtime, "compute_s": compute_s})


def judge_map_tone(root, classes: list[str], good_index: int, with_cells: bool = False) -> dict[str, Any]:
    """Every assessed tile's probabilities, and ``with_cells`` its cells', judged by the tile's tone
    against the whole slide's (``slide_tone.judge_slide_tone``), written back; what was found is kept
    in the map's attributes and returned. The cells go a band of blocks at a time (whole chunks), so
    that a large slide's cells are never all in memory. Judging is idempotent, so a finish
    interrupted half-way is simply done again."""
    probabilities, tone, label = read_array(root, "probs"), read_array(root, "tone"), read_array(root, "label")
    judged, slide = judge_slide_tone(probabilities, tone, classes)
    fixed = np.where(label >= min(FIXED_LABELS.values()), label, 0).astype(np.uint8)
    write_probabilities(root, slice(None), slice(None), judged.astype(np.float32), good_index, fixed)
    if with_cells:
        for tile_rows, cell_rows in cell_bands(root):
            cells = slide.judge_cells(read_cell_band(root, cell_rows), classes, tile_rows.start)
            write_cell_probabilities(root, cell_rows, slice(None), cells, good_index, fixed[tile_rows])
    update_attributes(root, tone_context=slide.found)
    return slide.found


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
        """The block's arrays (unreadable and debris tiles labelled so), and its unreadable tiles' errors
        (before the block counts as done, so a resumed map still knows them)."""
        rows, cols = self.layout.block_slices(*block)
        fixed = self.fixed[rows, cols].copy()
        for tile in result.unreadable:
            fixed[tile.row - rows.start, tile.col - cols.start] = UNREADABLE
        for row, col in result.debris:
            fixed[row - rows.start, col - cols.start] = BY_NAME["debris"].label
        if result.dye:  # per block, so that a block written again is not counted twice
            dye = dict(self.root.attrs["slideiqa"].get("dye_tiles_by_block") or {})
            update_attributes(self.root, dye_tiles_by_block=dye | {f"{block[0]},{block[1]}": len(result.dye)})
        if result.decode_fallbacks:
            fallbacks = int(self.root.attrs["slideiqa"].get("decode_fallback_tiles", 0)) + result.decode_fallbacks
            update_attributes(self.root, decode_fallback_tiles=fallbacks)
        if result.unreadable:
            recorded = list(self.root.attrs["slideiqa"].get("unreadable", []))
            room = UNREADABLE_RECORDED - len(recorded)
            if room > 0:
                recorded += [{"row": t.row, "col": t.col, "error": t.error} for t in result.unreadable[:room]]
                update_attributes(self.root, unreadable=recorded)
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


def _slide_facts(plan: MapPlan, tissue: np.ndarray) -> dict[str, Any]:
    """What a lab records of a mapped slide beside the verdict: size, µm/px, tissue area, provenance."""
    mpp, (width, height) = plan.grid.slide_mpp, plan.slide_attributes["dimensions"]
    tile_mm2 = (plan.grid.tile_um / 1000) ** 2
    return {
        "mpp": mpp,
        "mpp_from": plan.slide_attributes["mpp_from"],
        "dimensions_px": [width, height],
        "size_mm": [round(width * mpp / 1000, 3), round(height * mpp / 1000, 3)],
        "tissue_area_mm2": round(float(np.nansum(tissue)) * tile_mm2, 4),
        "tile_um": plan.grid.tile_um,
        "slideiqa_version": __version__,
    }


def _write_reports(plan: MapPlan, root, summary: dict[str, Any], score: np.ndarray, label: np.ndarray) -> None:
    """overview.png, regions.geojson (and tiles.geojson when asked for) and summary.json of a map whose
    ``score`` and ``label`` arrays the caller has read already."""
    out, grid, classes, threshold = plan.out, plan.grid, plan.card.classes, plan.options.threshold
    thumbnail = plan.found.thumbnail
    step_thumbnail = grid.step * thumbnail.shape[1] / grid.width
    mean = "–" if summary["mean_score"] is None else f"{summary['mean_score']:.2f}"
    lost = summary["artefact_tiles"] | {UNREADABLE_CLASS: summary["unreadable_tiles"]}
    lost_text = ", ".join(f"{name} {count}" for name, count in lost.items() if count)
    title = (
        f"{Path(summary['slide']).name}: {summary['verdict']}; mean score {mean}, "
        f"{summary['share_below_threshold']:.0%} of tissue below {threshold}"
        + (f" or lost ({lost_text} tiles)" if lost_text else "")
    )
    entries = label_entries(classes)
    colours = {name: rgba for _, name, rgba in entries}
    um_per_px = grid.width * grid.slide_mpp / thumbnail.shape[1]
    picture = io.BytesIO()
    overview_image(thumbnail, score, label, step_thumbnail, threshold, title, entries, um_per_px).save(picture, "PNG")
    write_atomically(out / "overview.png", picture.getvalue())
    regions = low_quality_regions(score, label, classes, threshold, grid.step, colours, grid.tile_um)
    write_atomically(out / "regions.geojson", json.dumps(regions) + "\n")
    if plan.options.tile_geojson:
        tiles = tile_objects(
            score, label, read_array(root, "probs"), read_array(root, "tissue"), classes, grid.step, colours
        )
        write_atomically(out / "tiles.geojson", json.dumps(tiles) + "\n")
    write_atomically(out / "summary.json", json.dumps(summary, indent=2) + "\n")
