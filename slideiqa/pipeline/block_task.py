"""What one Dask task does: assess one block of tiles of one slide.

Task functions live here, in an importable module, so that every worker process keeps its slide
handles and its loaded model between tasks (the caches below). A task receives only small things —
paths, the grid, the block index and the block's tissue fractions — and returns the block's class
probabilities and the tiles it could not decode: never a pickled slide handle or model.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import threading
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from slideiqa.artefacts.registry import tile_artefacts
from slideiqa.io.grid import TileGrid, read_plan, read_tile
from slideiqa.io.slide import Slide, UnreadableRegion, open_slide
from slideiqa.measure.slide_tone import TONE_FEATURES, tone_features
from slideiqa.models.predictor import Predictor


@dataclass(frozen=True)
class BlockTask:
    """One block of one slide: ``block`` is its (row, column) among blocks of ``block_tiles`` tiles a side."""

    slide_path: str
    model: str
    device: str
    grid: TileGrid
    block: tuple[int, int]
    block_tiles: int
    batch_size: int
    threads: int | None = None
    #: The tile artefacts (``artefacts.registry``, scale "tile") looked for in each tile as it is assessed.
    tile_artefacts: tuple[str, ...] = tuple(artefact.name for artefact in tile_artefacts())
    with_cells: bool = False  # also the cell head's probabilities (the model has one)

    @property
    def tile_rows(self) -> tuple[int, int]:
        start = self.block[0] * self.block_tiles
        return start, min(start + self.block_tiles, self.grid.shape[0])

    @property
    def tile_cols(self) -> tuple[int, int]:
        start = self.block[1] * self.block_tiles
        return start, min(start + self.block_tiles, self.grid.shape[1])


@dataclass(frozen=True)
class UnreadableTile:
    """A tile whose pixels cannot be decoded (a corrupt tile or strip in the file), by grid cell."""

    row: int
    col: int
    error: str


@dataclass
class BlockResult:
    """(classes, rows, cols) probabilities, NaN where nothing was assessed, the unreadable tiles, the
    (row, col) grid cells of the tiles each tile artefact labelled (not assessed), how many tiles the scaled JPEG
    decoder handed to the general reader, and with a cell head the (classes, rows·k, cols·k)
    probabilities of the k × k cells of every tile (NaN where their tile was not assessed)."""

    probabilities: np.ndarray
    unreadable: list[UnreadableTile]
    decode_fallbacks: int = 0
    #: Per tile artefact, the (row, col) grid cells of the tiles it labelled.
    labelled: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    #: Tissue tiles holding specks of marking dye: judged as usual, named in a warning.
    dye: list[tuple[int, int]] = field(default_factory=list)
    cell_probabilities: np.ndarray | None = None
    #: (3, rows, cols) tone measurements of the assessed tiles (``slide_tone``), NaN elsewhere
    tone: np.ndarray | None = None


_cache_lock = threading.Lock()


def _file_identity(path: str) -> tuple[str, int, int]:
    """A file as it is now: a slide or model rewritten under the same name is a new cache entry."""
    status = os.stat(path)
    return path, status.st_mtime_ns, status.st_size


#: As many as a batch maps at once (``slideiqa.batch.run.MAX_SLIDES_IN_FLIGHT``): blocks of those slides
#: interleave on every worker, and a smaller cache would reopen slides task after task.
SLIDE_CACHE_SIZE = 8


@lru_cache(maxsize=SLIDE_CACHE_SIZE)
def _open_slide(identity: tuple[str, int, int]) -> Slide:
    return open_slide(identity[0])


@lru_cache(maxsize=2)
def _load_predictor(identity: tuple[str, int, int], device: str, threads: int | None) -> Predictor:
    return Predictor(identity[0], device=device, threads=threads)


def _cached_slide(path: str) -> Slide:
    """One open handle per slide per process (OpenSlide keeps its own tile cache inside)."""
    with _cache_lock:
        return _open_slide(_file_identity(path))


def _cached_predictor(model: str, device: str, threads: int | None) -> Predictor:
    """One model per process, shared by its threads; the lock stops two threads loading (and
    exporting) it at once. ``model`` is a checkpoint path (``.safetensors``)."""
    with _cache_lock:
        return _load_predictor(_file_identity(model), device, threads)


#: glibc ``mallopt`` parameters (``M_MMAP_THRESHOLD``, ``M_TRIM_THRESHOLD``) for Dask worker processes.
_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD = -3, -1
#: Buffers up to this size come from the heap, and this much free heap is kept before it is trimmed.
WORKER_MMAP_THRESHOLD_BYTES, WORKER_TRIM_THRESHOLD_BYTES = 32 * 2**20, 64 * 2**20
_tuned = False


def blas_on_one_thread():
    """A limit of one BLAS thread (threadpoolctl), process-wide until its ``restore_original_limits()``.

    A map already runs a thread per core, and the measurements' matrix products (the JPEG step's block
    coefficients) would each start BLAS threads of their own that busy-wait for work between calls:
    measured with the block tasks of ``map_speed.py``'s slide on two threads, 7.0 CPU-ms a tile with
    OpenBLAS's own threads against 6.5 with one."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def tune_worker_process() -> None:
    """Undo two Dask worker defaults that cost slideiqa's tasks CPU, once per worker process; a no-op
    outside a Dask worker (the in-process ``map``).

    - Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also freezes glibc's
      mmap threshold at 128 KiB: every batch of tiles (~5 MB) is then mapped and unmapped afresh and
      its pages faulted in again. Measured on four 8192² slides in one worker: 4.1 s of system time
      against 0.3 s with the thresholds here, for ~30 MB more peak memory.
    - Dask's profiler samples every thread's stack every 10 ms to draw the dashboard's profile; it
      takes the GIL from the task thread each time.
    - BLAS's own threads (:func:`blas_on_one_thread`): the workers share the cores out already.
    """
    global _tuned
    if _tuned:
        return
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return
    _tuned = True
    blas_on_one_thread()
    profiler = getattr(worker, "periodic_callbacks", {}).get("profile")
    if profiler is not None:
        profiler.stop()
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallopt(_M_MMAP_THRESHOLD, WORKER_MMAP_THRESHOLD_BYTES)
        libc.mallopt(_M_TRIM_THRESHOLD, WORKER_TRIM_THRESHOLD_BYTES)


def assess_block(task: BlockTask, assess: np.ndarray) -> BlockResult:
    """Probabilities of a block's tiles where ``assess`` is True, and the tiles that cannot be read.

    Tiles are read and classified ``batch_size`` at a time, so memory holds one batch of pixels. A
    tile that cannot be decoded is recorded and skipped, so one corrupt tile costs that tile only. A
    tile holding a tile artefact (``task.tile_artefacts``: debris) is recorded, and its probabilities
    left NaN: the model was never taught what a speck of dirt looks like.
    """
    tune_worker_process()
    slide = _cached_slide(task.slide_path)
    predictor = _cached_predictor(task.model, task.device, task.threads)
    plan = read_plan(slide, task.grid)
    (r0, r1), (c0, c1) = task.tile_rows, task.tile_cols
    classes = len(predictor.classes)
    k = predictor.card.cells_per_side if task.with_cells else 0  # cells along a tile's side
    tones = np.full((len(TONE_FEATURES), r1 - r0, c1 - c0), np.nan, np.float32)
    cells_out = np.full((classes, (r1 - r0) * k, (c1 - c0) * k), np.nan, np.float32) if k else None
    result = BlockResult(
        np.full((classes, r1 - r0, c1 - c0), np.nan, np.float32), [], cell_probabilities=cells_out, tone=tones
    )
    positions = [(r, c) for r in range(r1 - r0) for c in range(c1 - c0) if assess[r, c]]
    for start in range(0, len(positions), task.batch_size):
        batch, tiles = [], []
        for r, c in positions[start : start + task.batch_size]:
            try:
                pixels, fell_back = read_tile(slide, task.grid, plan, r0 + r, c0 + c)
            except UnreadableRegion as error:
                result.unreadable.append(UnreadableTile(r0 + r, c0 + c, str(error)))
                continue
            tiles.append(pixels)
            result.decode_fallbacks += fell_back
            batch.append((r, c))
        if not batch:
            continue
        pixels = np.stack(tiles)
        judged_mpp = task.grid.model_mpp  # the model's, or a slightly coarser slide's own (grid.judging_scale)
        if k:
            probabilities, cell_probabilities = predictor.predict_with_cells(pixels, judged_mpp, plan.native)
        else:
            probabilities, cell_probabilities = predictor.predict(pixels, judged_mpp, plan.native), None
        claimed, dyed = np.zeros(len(batch), bool), np.zeros(len(batch), bool)
        for artefact in tile_artefacts(task.tile_artefacts):  # the lowest claim first: it keeps its tiles
            # Searched as at the model's scale even on a slide judged at its own slightly coarser
            # pixels: told 0.55, debris's particle sizes in pixels shrank and clean DAB was called
            # debris (benchmarks/README.md, A 20x scanner's 0.55 um/px).
            found, specks = artefact.find_in_tiles(pixels, predictor.card.mpp, probabilities, predictor.classes)
            found = np.asarray(found, bool) & ~claimed
            claimed |= found
            dyed |= np.asarray(specks, bool)
            result.labelled.setdefault(artefact.name, []).extend(
                (r0 + r, c0 + c) for (r, c), holds in zip(batch, found) if holds
            )
            probabilities[found] = np.nan  # labelled with the artefact, not judged by the model
            if cell_probabilities is not None:
                cell_probabilities[found] = np.nan
        result.dye += [(r0 + r, c0 + c) for (r, c), speck in zip(batch, dyed) if speck]
        tone = tone_features(pixels)
        for index, ((r, c), p) in enumerate(zip(batch, probabilities)):
            result.probabilities[:, r, c] = p
            tones[:, r, c] = tone[index]
            if cell_probabilities is not None and cells_out is not None:
                cells_out[:, r * k : (r + 1) * k, c * k : (c + 1) * k] = cell_probabilities[index].transpose(2, 0, 1)
    return result


def worker_threads(workers: int) -> int:
    """Inference threads per worker: the machine's cores shared out, at least one."""
    return max(1, (os.cpu_count() or 1) // max(workers, 1))
