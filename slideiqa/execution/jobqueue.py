"""Batch workers started as jobs of a cluster's scheduler (SLURM, PBS, SGE, LSF, HTCondor) through
dask-jobqueue, for ``slideiqa batch --cluster slurm``.

The job settings come from the ``[cluster]`` table of the settings file (``--settings``), passed to
dask-jobqueue's cluster class as they are (``cores``, ``processes``, ``memory``, ``walltime``,
``queue``, ``account``, ``job_extra_directives``…), plus two of slideiqa's own: ``jobs`` (how many
jobs to ask for; a job that ends — cancelled, pre-empted, out of walltime — loses its worker, whose
slide or blocks Dask runs again on the others) and
``worker_timeout_s`` (how long to wait for the first worker before giving up with a clear error,
rather than waiting forever on a job that never leaves the queue).
"""

from __future__ import annotations

import contextlib
import logging
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from slideiqa.errors import SlideIQAError
from slideiqa.settings.values import is_number, is_whole

#: ``--cluster`` names and dask-jobqueue's classes for them.
JOBQUEUE_CLASSES = {
    "slurm": "SLURMCluster",
    "pbs": "PBSCluster",
    "sge": "SGECluster",
    "lsf": "LSFCluster",
    "htcondor": "HTCondorCluster",
}
DEFAULT_JOBS = 1
DEFAULT_WORKER_TIMEOUT_S = 300.0
#: One single-threaded worker process per core is what slideiqa's tasks want (inference threads 1).
DEFAULT_JOB: dict[str, Any] = {"cores": 1, "processes": 1, "memory": "2GB", "walltime": "04:00:00"}


class ClusterError(SlideIQAError):
    """The cluster's workers cannot be had: dask-jobqueue missing, bad job settings, no worker in time."""


#: Job settings whose kind slideiqa checks before any job is asked for (the others go to dask-jobqueue
#: as they are, which refuses unknown names): a positive whole number, a positive number, or text.
WHOLE_SETTINGS = ("jobs", "cores", "processes")
POSITIVE_SETTINGS = ("worker_timeout_s",)
TEXT_SETTINGS = ("memory", "walltime", "queue", "account", "project", "job_name", "interface", "local_directory")
#: More jobs than this is taken for a typo (each job is a whole node's worth of workers).
MAX_JOBS = 10_000


def cluster_settings(path: Path | None) -> dict[str, Any]:
    """The ``[cluster]`` table of a settings file (empty without a file or a table), its values
    checked: a negative timeout or job count, or a number given as text, is one line naming the key."""
    if path is None:
        return {}
    try:
        table = tomllib.loads(Path(path).read_text()).get("cluster", {})
    except (
        OSError,
        UnicodeDecodeError,
        tomllib.TOMLDecodeError,
    ) as error:  # the map settings' loader reports these first
        raise ClusterError(f"{path}: cannot read the settings file ({error})") from None
    if not isinstance(table, dict):
        raise ClusterError(f"{path}: [cluster] must be a table of job settings")
    for key, value in table.items():
        problem = _setting_problem(key, value)
        if problem:
            raise ClusterError(f"{path}: [cluster] {key} {problem}")
    return dict(table)


def _setting_problem(key: str, value: Any) -> str | None:
    if key in WHOLE_SETTINGS and not (is_whole(value) and 1 <= value <= MAX_JOBS):
        return f"must be a whole number from 1 to {MAX_JOBS}, got {value!r}"
    if key in POSITIVE_SETTINGS and not (is_number(value) and value > 0):
        return f"must be a positive number of seconds, got {value!r}"
    if key in TEXT_SETTINGS and not isinstance(value, str):
        return f"must be text, got {value!r}"
    return None


def _refusal(message: str) -> str:
    """The line of a failed submit command's output that says why (``sbatch: error: invalid partition``)."""
    lines = [line.strip() for line in message.split("stderr:", 1)[-1].splitlines() if line.strip()]
    return next((line for line in lines if "error" in line.lower()), lines[0] if lines else message.strip())


class _RefusedJobs(logging.Filter):
    """Hears job submissions the scheduler refused (an unknown queue or account, too much memory):
    dask-jobqueue submits in the background and only logs such a failure, through tornado, as a
    traceback, while the batch would wait for a worker that can never come. The refusal is kept for
    slideiqa's one-line error and kept out of the log."""

    def __init__(self) -> None:
        super().__init__()
        self.refusals: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        text = str(error) if error is not None else record.getMessage()
        if "Command exited with non-zero exit code" in text:
            self.refusals.append(_refusal(text))
            return False
        return True


@contextlib.contextmanager
def _hearing_refusals() -> Iterator[_RefusedJobs]:
    refused = _RefusedJobs()
    logger = logging.getLogger("tornado.application")  # where tornado logs a background task's error
    logger.addFilter(refused)
    try:
        yield refused
    finally:
        logger.removeFilter(refused)


def start_jobqueue(kind: str, settings: dict[str, Any], name: str = "slideiqa"):
    """A Dask client on workers that ``kind``'s scheduler runs as jobs, the cluster object (to close),
    and the inference threads per task (1: each worker process is one core).

    Waits for the first worker at most ``worker_timeout_s`` seconds; the jobs are cancelled when it
    does not come."""
    if kind not in JOBQUEUE_CLASSES:
        raise ClusterError(f"--cluster {kind}: unknown; known: {', '.join(JOBQUEUE_CLASSES)}")
    try:
        import dask_jobqueue
    except ImportError:
        raise ClusterError(f"--cluster {kind} needs dask-jobqueue: pip install dask-jobqueue") from None
    from distributed import Client

    for key, value in settings.items():
        problem = _setting_problem(key, value)
        if problem:
            raise ClusterError(f"--cluster {kind}: {key} {problem}")
    options = DEFAULT_JOB | settings
    jobs = int(options.pop("jobs", DEFAULT_JOBS))
    timeout = float(options.pop("worker_timeout_s", DEFAULT_WORKER_TIMEOUT_S))
    options.setdefault("job_name", name)
    try:
        cluster = getattr(dask_jobqueue, JOBQUEUE_CLASSES[kind])(**options)
    except (TypeError, ValueError) as error:
        raise ClusterError(f"--cluster {kind}: bad job settings ({error})") from None
    client = None
    try:
        with _hearing_refusals() as heard:
            # adapt with equal bounds asks for ``jobs`` jobs. A job that ends is not seen to be submitted
            # again within a batch (measured with scancel): its blocks go to the remaining workers.
            cluster.adapt(minimum_jobs=jobs, maximum_jobs=jobs)
            client = Client(cluster)
            _wait_for_a_worker(client, kind, timeout, heard)
    except BaseException:
        if client is not None:
            client.close()
        _close(cluster)
        raise
    return client, cluster, 1


def _close(cluster: Any) -> None:
    """Close a cluster whose jobs may have been refused: distributed's close asserts that every job
    object it still holds has started or failed, and a refused submission leaves one merely
    "created"; such jobs are marked failed first (they never ran)."""
    _mark_refused_jobs_failed(cluster)
    cluster.close()


def _mark_refused_jobs_failed(cluster: Any) -> None:
    # A function of its own so that no reference to a job outlives it: the cluster keeps its jobs in
    # a weak set, and a job still referenced here would stay in it through the close.
    from distributed.core import Status

    for job in list(getattr(cluster, "_created", ())):
        if job.status == Status.created:
            job.status = Status.failed


def _wait_for_a_worker(client: Any, kind: str, timeout: float, heard: _RefusedJobs) -> None:
    """Wait up to ``timeout`` s for the first worker, ending at once when the scheduler refuses the jobs."""
    deadline = time.monotonic() + timeout
    while True:
        if heard.refusals:
            raise ClusterError(
                f"--cluster {kind}: the scheduler refused the job ({heard.refusals[0]}); check the [cluster] settings"
            )
        try:
            client.wait_for_workers(1, timeout=max(0.1, min(1.0, deadline - time.monotonic())))
            return
        except TimeoutError:
            if time.monotonic() >= deadline:
                raise ClusterError(
                    f"--cluster {kind}: no worker started within {timeout:g} s (the jobs may be "
                    "pending in the queue: see squeue/qstat; worker_timeout_s sets the wait)"
                ) from None
