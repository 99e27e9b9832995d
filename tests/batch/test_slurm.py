"""slideiqa batch on a real SLURM cluster through dask-jobqueue: workers are SLURM jobs, one of them is
cancelled with scancel mid-batch, and the maps still equal a local run's. Needs SLURM running
(``examples/slurm/single_node.sh start``, which ``.ci/run`` does where it can); skipped otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slideiqa.batch.run import MapOptions, run_batch
from slideiqa.io.slide import open_slide
from slideiqa.outputs.store import ARRAYS, CELL_ARRAYS, blocks_done, is_quality_map, open_map

from paths import CMU_SLIDE, FIELDS
from slides import mosaic_slide
from support import skip_unless_available, slideiqa_process

pytestmark = pytest.mark.slurm
BLOCK = 4


def _slurm_running() -> bool:
    if not shutil.which("sinfo") or not shutil.which("scancel"):
        return False
    states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30).stdout
    return any(state.strip().rstrip("*") in ("idle", "mixed", "allocated") for state in states.split())


@pytest.fixture(scope="module")
def slurm():
    if not _slurm_running():
        skip_unless_available("slurm", "no SLURM cluster running here (root: examples/slurm/single_node.sh start)")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    images = [
        np.asarray(Image.open(FIELDS / name).convert("RGB")) for name in ("he_tumour_target.png", "ihc_colon.png")
    ]
    with open_slide(CMU_SLIDE) as cmu:
        images.append(cmu.read_region((650, 250), 0, (896, 1792)))
    root = tmp_path_factory.mktemp("slurm") / "cohort"
    root.mkdir()
    for seed in range(4):
        mosaic_slide(root / f"case{seed}.tif", images, 16, 224, seed=seed, defocus_share=0.25 * (seed % 2))
    return root


def _settings(path: Path, job_name: str, **cluster: object) -> Path:
    """A lab's settings file: small blocks (several tasks per slide) and the SLURM job settings."""
    lines = [
        "[map]",
        f"block = {BLOCK}",
        "[cluster]",
        f'job_name = "{job_name}"',
        f'log_directory = "{path.parent / "jobs"}"',
    ]
    lines += [f"{key} = {value!r}".replace("'", '"') for key, value in cluster.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _jobs(name: str) -> list[str]:
    listed = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True, timeout=30)
    return sorted(listed.stdout.split(), key=int)


def _blocks_written(out: Path) -> int:
    """Blocks written so far in every map under ``out``; 0 while a map is being renamed into place
    (the walk then meets a folder that has just gone), and the caller asks again."""
    done = 0
    try:
        for candidate in out.rglob("*.quality.zarr"):
            if is_quality_map(candidate):
                done += int(blocks_done(open_map(candidate).group).sum())
    except FileNotFoundError:
        return 0
    return done


@pytest.mark.slow
def test_batch_runs_on_slurm_jobs_survives_scancel_and_matches_a_local_run(slurm, cohort, tmp_path):
    reference = run_batch([cohort], tmp_path / "local", workers=1, options=MapOptions(block=BLOCK))
    assert not reference.failed

    name = f"slideiqa-test-{os.getpid()}"
    settings = _settings(
        tmp_path / "lab.toml",
        name,
        jobs=2,
        cores=1,
        processes=1,
        memory="1500MB",
        walltime="00:20:00",
        worker_timeout_s=120,
    )
    out = tmp_path / "slurm"
    command = [
        sys.executable,
        "-m",
        "slideiqa.cli.app",
        "batch",
        str(cohort),
        "-o",
        str(out),
        "--cluster",
        "slurm",
        "--settings",
        str(settings),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while _blocks_written(out) < 2 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        jobs = _jobs(name)
        assert process.poll() is None and len(jobs) == 2, "the batch should be running on two SLURM jobs now"
        subprocess.run(["scancel", jobs[0]], check=True, timeout=30)
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
        subprocess.run(["scancel", "-n", name], timeout=30, check=False)
    assert process.returncode == 0, stdout + stderr
    for record in reference.records:
        relative = Path(record.map).relative_to(tmp_path / "local")
        mine, theirs = open_map(out / relative), open_map(record.map)
        assert mine.complete
        for array in ARRAYS + CELL_ARRAYS:
            np.testing.assert_allclose(mine.array(array), theirs.array(array), atol=1e-6, err_msg=f"{relative} {array}")


@pytest.mark.slow
def test_a_cluster_whose_jobs_never_start_fails_clearly_within_its_timeout(slurm, cohort, tmp_path):
    name = f"slideiqa-pending-{os.getpid()}"
    settings = _settings(
        tmp_path / "lab.toml", name, jobs=1, worker_timeout_s=5, job_extra_directives=["--begin=now+1hour"]
    )
    out = tmp_path / "never"
    started = time.monotonic()
    result = slideiqa_process("batch", cohort, "-o", out, "--cluster", "slurm", "--settings", settings, timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: --cluster slurm: no worker started within 5 s (the jobs may be pending in the queue: see "
        "squeue/qstat; worker_timeout_s sets the wait)"
    ]
    assert elapsed < 60 and not out.exists()
    time.sleep(1)
    assert _jobs(name) == []  # its pending job was cancelled, not left in the queue


def test_a_job_the_scheduler_refuses_is_one_line_with_its_reason_not_a_wait(slurm, cohort, tmp_path):
    """sbatch refuses an unknown partition at once; dask-jobqueue only logs that from a background
    task (a tornado traceback), so the batch would wait out worker_timeout_s. It must say why, now."""
    settings = _settings(
        tmp_path / "lab.toml",
        f"slideiqa-refused-{os.getpid()}",
        jobs=1,
        worker_timeout_s=120,
        queue="no-such-partition",
    )
    out = tmp_path / "refused"
    started = time.monotonic()
    result = slideiqa_process("batch", cohort, "-o", out, "--cluster", "slurm", "--settings", settings, timeout=120)
    assert result.returncode == 1 and time.monotonic() - started < 60
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert (
        lines[0].startswith("error: --cluster slurm: the scheduler refused the job (sbatch: error: invalid partition")
        and "no-such-partition" in lines[0]
    )
    assert not out.exists()
