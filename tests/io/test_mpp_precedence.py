"""Which µm/px a slide is mapped at when several are given, through the real command line: a slide's
row in ``--mpp-table`` over ``--mpp``; ``--mpp`` over the settings file's ``mpp``; either over the
slide file's own metadata; the metadata where nothing is given. Each map records where its µm/px
came from (``slide.mpp_from``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from slideiqa import open_map

from paths import CMU_SLIDE, ROOT

OWN_MPP = 0.499  # what the sample's Aperio header states


def _slideiqa(*arguments) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "slideiqa.cli.app", *map(str, arguments)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def _slide_record(path) -> tuple[float, str]:
    slide = open_map(path).attributes["slide"]
    return slide["mpp"], slide["mpp_from"]


@pytest.mark.parametrize(
    "given, expected",
    [
        ((), (OWN_MPP, "metadata")),
        (("--settings", "lab.toml"), (0.46, "option")),
        (("--settings", "lab.toml", "--mpp", "0.45"), (0.45, "option")),
        (("--mpp", "0.45"), (0.45, "option")),
    ],
)
def test_map_takes_the_command_line_over_the_settings_file_over_the_slide(tmp_path, given, expected):
    (tmp_path / "lab.toml").write_text("[map]\nmpp = 0.46\n")
    given = [str(tmp_path / part) if part == "lab.toml" else part for part in given]
    out = tmp_path / "cmu.quality.zarr"
    _slideiqa("map", CMU_SLIDE, "-o", out, *given)
    assert _slide_record(out) == expected


@pytest.mark.slow
def test_batch_takes_a_slides_row_in_the_table_over_mpp_for_the_batch(tmp_path):
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    for name in ("named.svs", "unnamed.svs"):
        (cohort / name).write_bytes(CMU_SLIDE.read_bytes())
    table = tmp_path / "mpp.csv"
    table.write_text("slide,mpp\nnamed.svs,0.47\n")
    out = tmp_path / "out"
    _slideiqa("batch", cohort, "-o", out, "--workers", "1", "--mpp", "0.45", "--mpp-table", table)
    rows = {row["slide"].rsplit("/", 1)[-1]: row for row in json.loads((out / "report.json").read_text())["slides"]}
    assert rows["named.svs"]["mpp"] == 0.47 and rows["unnamed.svs"]["mpp"] == 0.45
    assert _slide_record(rows["named.svs"]["map"]) == (0.47, "option")
    assert _slide_record(rows["unnamed.svs"]["map"]) == (0.45, "option")
