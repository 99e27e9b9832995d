"""The Python a user copies runs as written: the README's example and ``examples/map_sample.py``, each
in a child process on the bundled sample (a typed summary once broke both without a test noticing)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

from paths import CMU_SLIDE, ROOT


def _python(code_or_script: list[str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *code_or_script], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_the_readmes_python_example_runs_on_the_sample(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    (example,) = [block for block in blocks if "map_slide(" in block]
    slide = shutil.copy(CMU_SLIDE, tmp_path / "slide.svs")  # the map is written beside it, in tmp_path
    run = _python(["-c", example.replace('"slide.svs"', repr(str(slide)))], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    verdict, warnings = run.stdout.split(" ", 1)
    assert verdict == "pass" and "marking dye" in warnings
    assert (tmp_path / "slide.quality.zarr" / "summary.json").exists()


def test_the_map_sample_example_runs(tmp_path):
    out = tmp_path / "sample.quality.zarr"
    run = _python([str(ROOT / "examples" / "map_sample.py"), str(out)], ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"{out}: (" in run.stdout and "verdict pass, mean score 0.9" in run.stdout
    assert (out / "summary.json").exists()
