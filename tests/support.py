"""What several test modules share beyond paths: skipping for want of a capability (or failing where
it was required), how far a degradation moved an image, and the command line run in this process or
in a child."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from slideiqa.synthetic.distortions import sharpness

from paths import ROOT

#: Capabilities whose tests must run, not skip: comma-separated in this variable (``.ci/run`` names
#: the ones it installed or started, so that a test skipped there for want of one fails instead).
REQUIRED = {name.strip() for name in os.environ.get("SLIDEIQA_REQUIRE", "").split(",") if name.strip()}


def skip_unless_available(capability: str, reason: str, module: bool = False) -> None:
    """Skip the test (``module``: the whole module) for want of ``capability`` (slurm, tmpfs, chromium,
    napari) — or fail it, where the environment says that capability was provided (``SLIDEIQA_REQUIRE``)."""
    if capability in REQUIRED:
        pytest.fail(f"{capability} was required (SLIDEIQA_REQUIRE) but is not available: {reason}")
    pytest.skip(reason, allow_module_level=module)


def degradation_strength(family: str, original: np.ndarray, degraded: np.ndarray) -> float:
    """How far a degraded image is from the original, by the measure that suits the family:
    lost Laplacian energy for blur, lost PSNR for noise and compression, moved grey levels for exposure."""
    if family in ("defocus", "motion"):
        return sharpness(original) - sharpness(degraded)
    if family in ("noise", "jpeg"):
        return -peak_signal_noise_ratio(original, degraded)
    return float(np.abs(degraded.astype(np.float64) - original).mean())


def run_command(module: str, *args) -> subprocess.CompletedProcess:
    """The command line run in this process, as a subprocess would see it (exit status, stdout, stderr):
    the same entry point (``main`` and its error handling) without paying for a new interpreter and
    its imports each time (a few tests keep a real subprocess)."""
    import contextlib
    import io
    from unittest import mock

    from slideiqa.cli import app as cli
    from slideiqa_training import cli as training_cli

    main = cli.main if module == "slideiqa.cli.app" else training_cli.main
    out, err = io.StringIO(), io.StringIO()
    argv = [module, *map(str, args)]
    with mock.patch.object(sys, "argv", list(argv)), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def one_error_line(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """The command failed with one line, ``error: …``, holding every fragment."""
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def slideiqa_process(*arguments, timeout: float = 300, **environment: str) -> subprocess.CompletedProcess:
    """``slideiqa ARGUMENTS`` in a child process whose output is a pipe (no terminal), as in a cluster
    job, run from the repository's root; ``environment`` adds to the inherited variables."""
    return subprocess.run(
        [sys.executable, "-m", "slideiqa.cli.app", *map(str, arguments)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        env=os.environ | environment,
    )
