"""``map_slide``: a whole slide through the quality model into a resumable Zarr quality map.

Flow, one module a stage:

1. **plan** (:mod:`slideiqa.pipeline.plan`): open the slide → tile grid at the model's µm/px →
   tissue mask and preparation artefacts from one thumbnail → the settings that make the map's
   numbers, and the existing map to resume, if any;
2. **execute** (:mod:`slideiqa.pipeline.execute`): blocks of tiles as tasks (one task = one block =
   one chunk of every output array, :mod:`slideiqa.pipeline.block_task`), each finished block
   written by this process as it arrives;
3. **finish** (:mod:`slideiqa.pipeline.finish`): each tile's tone against its slide's → status
   "complete" with the summary → overview, regions and ``summary.json``.

Scheduling (:mod:`slideiqa.execution.local`): by default the block tasks run on a pool of threads in
this process that share one slide handle and one model (OpenSlide and ONNX Runtime release the GIL,
so threads decode and infer in parallel with no start-up or transfer cost); ``workers=N`` starts a
Dask ``LocalCluster`` of N worker processes instead, and ``scheduler=ADDRESS`` uses an existing Dask
distributed cluster. The tasks are the same functions on every path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slideiqa.execution.local import start_client
from slideiqa.io.files import exclusive_output
from slideiqa.pipeline.execute import open_output, run_blocks
from slideiqa.pipeline.finish import MapResult, finish_map, report_complete
from slideiqa.pipeline.plan import Notice, Progress, output_path, plan_map
from slideiqa.settings.options import MapOptions


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
    should know while it runs (a slow tissue mask; default: the plan module's log). ``should_stop()`` is polled as blocks finish;
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
            return report_complete(plan)
        # The cluster first: an unreachable scheduler must fail before any output exists.
        own_client, cluster, own_threads = (
            (None, None, None) if client is not None else start_client(workers, scheduler)
        )
        try:
            root = open_output(plan)
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
