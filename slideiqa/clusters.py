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

import tomllib
from pathlib import Path
from typing import Any

from .errors import SlideIQAError

#: ``--cluster`` names and dask-jobqueue's classes for them.
JOBQUEUE_CLASSES = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster",
                    "htcondor": "HTCondorCluster"}
DEFAULT_JOBS = 1
DEFAULT_WORKER_TIMEOUT_S = 300.0
#: One single-threaded worker process per core is what slideiqa's tasks want (inference threads 1).
DEFAULT_JOB = {"cores": 1, "processes": 1, "memory": "2GB", "walltime": "04:00:00"}


class ClusterError(SlideIQAError):
    """The cluster's workers cannot be had: dask-jobqueue missing, bad job settings, no worker in time."""


def cluster_settings(path: Path | None) -> dict[str, Any]:
    """The ``[cluster]`` table of a settings file (empty without a file or a table)."""
    if path is None:
        return {}
    try:
        table = tomllib.loads(Path(path).read_text()).get("cluster", {})
    except (OSError, tomllib.TOMLDecodeError) as error:  # the map settings' loader reports these first
        raise ClusterError(f"{path}: cannot read the settings file ({error})") from None
    if not isinstance(table, dict):
        raise ClusterError(f"{path}: [cluster] must be a table of job settings")
    return dict(table)


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

    options = DEFAULT_JOB | settings
    jobs = int(options.pop("jobs", DEFAULT_JOBS))
    timeout = float(options.pop("worker_timeout_s", DEFAULT_WORKER_TIMEOUT_S))
    options.setdefault("job_name", name)
    try:
        cluster = getattr(dask_jobqueue, JOBQUEUE_CLASSES[kind])(**options)
    except (TypeError, ValueError) as error:
        raise ClusterError(f"--cluster {kind}: bad job settings ({error})") from None
    try:
        # adapt with equal bounds asks for ``jobs`` jobs. A job that ends is not seen to be submitted
        # again within a batch (measured with scancel): its blocks go to the remaining workers.
        cluster.adapt(minimum_jobs=jobs, maximum_jobs=jobs)
        client = Client(cluster)
        try:
            client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            client.close()
            raise ClusterError(f"--cluster {kind}: no worker started within {timeout:g} s (the jobs may be "
                               f"pending in the queue: see squeue/qstat; worker_timeout_s sets the wait)") from None
    except BaseException:
        cluster.close()
        raise
    return client, cluster, 1
