"""Inputs a careless or hostile hand gives slideiqa: names that are addresses or log lines, a report
folder used twice, settings of the wrong kind, broken model cards, spreadsheets' CSV, races on one
output. Each case runs for real (processes, files, Chromium); each refusal is one line naming the file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from slideiqa import map_slide
from slideiqa.batch.report import ReportError, SlideRecord, write_reports
from slideiqa.batch.run import run_batch
from slideiqa.models.card import ModelCard, ModelError, load_card
from slideiqa.models.zoo import resolve_model
from slideiqa.outputs.store import open_map
from slideiqa.settings.options import SETTINGS_KEYS, SettingsError, load_mpp_table, load_settings

from paths import CMU_SLIDE, FIELDS, ROOT


def _slideiqa(*arguments: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    """The command line as a user runs it, its output going to a pipe (plain, timestamped lines)."""
    return subprocess.run(
        [sys.executable, "-m", "slideiqa.cli.app", *arguments], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def _one_error_line(run: subprocess.CompletedProcess, *words: str) -> str:
    """The run failed with exactly one ``error:`` line on stderr, holding ``words``; no traceback."""
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 1, run.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr[-2000:]
    assert "Traceback" not in run.stderr and all(word in lines[0] for word in words), lines[0]
    return lines[0]


# -- 1. the report's links: never a script, always the right file ---------------------------------------


@pytest.mark.gui
def test_report_links_run_no_script_and_open_names_with_hash_and_question_mark(tmp_path, browser):
    from selenium.webdriver.common.by import By

    evil, odd = tmp_path / "javascript:document.title='pwned';0", tmp_path / "scans #3?"
    for folder, name in ((evil, "a.svs"), (odd, "b#1?.svs")):
        folder.mkdir()
        shutil.copy(CMU_SLIDE, folder / name)
    out = tmp_path / "qc"
    run_batch([evil, odd], out, workers=1)
    page = (out / "report.html").resolve().as_uri()
    browser.get(page)
    hrefs = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "a")]
    assert hrefs and all(href.startswith("file://") for href in hrefs)  # resolved against the page
    written = (out / "report.html").read_text()
    assert 'href="javascript' not in written and 'href="./' in written

    row = next(
        row
        for row in browser.find_elements(By.CSS_SELECTOR, "#slides tbody tr")
        if "javascript:" in row.find_element(By.CSS_SELECTOR, ".path").text
    )
    row.find_element(By.CSS_SELECTOR, "td.picture a").click()  # the thumbnail of the slide named like a script
    assert "pwned" not in browser.title  # no script ran: the browser opened the overview instead
    assert browser.current_url == (out / evil.name / "a.quality.zarr" / "overview.png").as_uri().replace("'", "%27")

    for a_map in (out / evil.name / "a.quality.zarr", out / odd.name / "b#1?.quality.zarr"):
        browser.get(page)
        link = next(
            a
            for a in browser.find_elements(By.LINK_TEXT, "summary")
            if a.get_attribute("href").startswith(a_map.as_uri().replace("'", "%27"))
        )
        link.click()
        shown = json.loads(browser.find_element(By.TAG_NAME, "body").text)
        assert shown == json.loads((a_map / "summary.json").read_text())


# -- 2. a second batch into the same folder ----------------------------------------------------------


@pytest.mark.slow
def test_a_second_batch_into_a_folder_lists_every_slide_mapped_there(tmp_path, monkeypatch):
    first, second = tmp_path / "week1", tmp_path / "week2"
    for folder in (first, second):
        folder.mkdir()
        shutil.copy(CMU_SLIDE, folder / f"{folder.name}.svs")
    out = tmp_path / "cohort"
    assert run_batch([first], out, workers=1).exit_code == 0
    (tmp_path / "week0").mkdir()
    shutil.copy(CMU_SLIDE, tmp_path / "week0" / "loose.svs")
    map_slide(tmp_path / "week0" / "loose.svs", out / "loose.quality.zarr")  # mapped into OUT by hand
    result = run_batch([second], out, workers=1)
    assert [Path(r.slide).name for r in result.records] == ["week2.svs"]  # this batch's own slides
    rows = {Path(row["slide"]).name: row for row in json.loads((out / "report.json").read_text())["slides"]}
    assert set(rows) == {"week1.svs", "week2.svs", "loose.svs"}
    assert rows["week1.svs"]["earlier"] and rows["loose.svs"]["earlier"] and not rows["week2.svs"]["earlier"]
    assert all(row["verdict"] for row in rows.values())
    assert "3 slides" in (out / "report.html").read_text() and "from earlier runs" in (out / "report.html").read_text()
    assert len((out / "report.csv").read_text().splitlines()) == 1 + 3

    shutil.rmtree(out / "week1")  # a map removed by hand: its row goes, and the batch says so
    result = run_batch([second], out, workers=1)
    rows = [Path(row["slide"]).name for row in json.loads((out / "report.json").read_text())["slides"]]
    assert sorted(rows) == ["loose.svs", "week2.svs"]
    assert any("week1.svs" in warning and "gone" in warning for warning in result.warnings)

    moved = tmp_path / "archive" / "cohort"  # the folder moved, then given again by a relative path
    moved.parent.mkdir()
    out.rename(moved)
    monkeypatch.chdir(moved.parent)
    result = run_batch([second], Path("cohort"), workers=1)
    rows = json.loads((moved / "report.json").read_text())["slides"]
    assert sorted(Path(row["slide"]).name for row in rows) == ["loose.svs", "week2.svs"] and not result.warnings
    assert all(Path(row["map"]).is_absolute() and Path(row["map"]).exists() for row in rows)


def test_a_report_file_slideiqa_did_not_write_is_never_overwritten(tmp_path):
    slides = tmp_path / "slides"
    slides.mkdir()
    shutil.copy(CMU_SLIDE, slides / "a.svs")
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.csv").write_text("patient,diagnosis\n17,benign\n")
    with pytest.raises(ReportError, match=r"report\.csv: exists and is not a slideiqa batch report"):
        run_batch([slides], out, workers=1)
    assert (out / "report.csv").read_text() == "patient,diagnosis\n17,benign\n"
    assert not (out / "slides").exists()  # refused before any slide was mapped
    _one_error_line(_slideiqa("batch", str(slides), "-o", str(out)), str(out / "report.csv"))


# -- 3. settings of the wrong kind --------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, key",
    [
        ('find_artefacts = "no"', "find_artefacts"),
        ('use_tissue_mask = "false"', "use_tissue_mask"),
        ('cells = "0"', "cells"),
        ('threshold = "high"', "threshold"),
        ("block = 4.0", "block"),
        ("batch_size = true", "batch_size"),
        ('device = "gpu"', "device"),
    ],
)
def test_a_setting_of_the_wrong_kind_is_one_line_naming_the_file_and_key(tmp_path, line, key):
    path = tmp_path / "lab.toml"
    path.write_text(f"[map]\n{line}\n")
    with pytest.raises(SettingsError) as raised:
        load_settings(path)
    assert str(raised.value).startswith(f"{path}: {key} must be ")


def test_string_switches_through_the_command_line_are_refused_before_any_output(tmp_path):
    settings_file = tmp_path / "lab.toml"
    settings_file.write_text('find_artefacts = "no"\n')
    out = tmp_path / "cmu.quality.zarr"
    _one_error_line(
        _slideiqa("map", str(CMU_SLIDE), "-o", str(out), "--settings", str(settings_file)),
        str(settings_file),
        "find_artefacts",
        "true or false",
    )
    assert not out.exists()


def test_a_key_set_at_the_top_and_under_map_is_refused_not_half_ignored(tmp_path):
    path = tmp_path / "lab.toml"
    path.write_text("threshold = 0.7\n[map]\nthreshold = 0.6\nblock = 8\n")
    with pytest.raises(SettingsError, match="threshold set both at the top level and under"):
        load_settings(path)
    path.write_text("threshold = 0.7\n[map]\nblock = 8\n")
    assert (load_settings(path).threshold, load_settings(path).block) == (0.7, 8)


TOML_VALUES = st.one_of(
    st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=8), st.lists(st.integers(), max_size=2)
)


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if value != value
            else ("inf" if value == float("inf") else "-inf" if value == -float("inf") else repr(value))
        )
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    return repr(value)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.dictionaries(st.sampled_from([*SETTINGS_KEYS, "thresold", "a\nb", "[x]"]), TOML_VALUES, max_size=4),
    under_map=st.booleans(),
    noise=st.text(max_size=12),
)
def test_no_settings_file_gives_a_traceback(tmp_path, values, under_map, noise):
    path = tmp_path / "lab.toml"
    body = "".join(f"{json.dumps(key)} = {_toml(value)}\n" for key, value in values.items())
    path.write_text(("[map]\n" if under_map else "") + body + noise)
    try:
        options = load_settings(path)
    except SettingsError as error:
        message = str(error)
        assert message.startswith(f"{path}: ") and "\n" not in message
        return
    for key, value in values.items():  # accepted: every value is the option's own kind
        assert (
            type(getattr(options, key)) is type(value)
            or (isinstance(value, int) and key in ("mpp", "threshold", "max_bad_share", "min_tissue"))
            or (isinstance(value, list) and key == "artefacts" and getattr(options, key) == tuple(value))
        )  # a whole number where a number is meant; a list of names kept as the frozen options' tuple


# -- 4. tracebacks that are now one line -----------------------------------------------------------------


def test_a_huge_block_is_refused_before_any_map_exists(tmp_path):
    settings_file = tmp_path / "lab.toml"
    settings_file.write_text("[map]\nblock = 100000000\n")
    out = tmp_path / "cmu.quality.zarr"
    _one_error_line(
        _slideiqa("map", str(CMU_SLIDE), "-o", str(out), "--settings", str(settings_file)), "block", "between 1 and 256"
    )
    assert list(tmp_path.iterdir()) == [settings_file]


@pytest.mark.parametrize(
    "cluster_line, words",
    [
        ("worker_timeout_s = -5", ("worker_timeout_s", "positive")),
        ("jobs = -1", ("jobs", "whole number")),
        ('cores = "8"', ("cores", "whole number")),
    ],
)
def test_bad_cluster_settings_are_one_line_and_never_wait(tmp_path, cluster_line, words):
    settings_file = tmp_path / "lab.toml"
    settings_file.write_text(f"[cluster]\n{cluster_line}\n")
    started = time.monotonic()
    run = _slideiqa(
        "batch",
        str(CMU_SLIDE),
        "-o",
        str(tmp_path / "out"),
        "--cluster",
        "slurm",
        "--settings",
        str(settings_file),
        timeout=120,
    )
    _one_error_line(run, str(settings_file), *words)
    assert time.monotonic() - started < 60 and not (tmp_path / "out").exists()


@pytest.fixture
def model_copy(tmp_path) -> Path:
    """The default model's files, copied to be edited as a person might."""
    stem = resolve_model("default")
    for suffix in (".json", ".safetensors", ".onnx"):
        shutil.copy(f"{stem}{suffix}", tmp_path / f"edited{suffix}")
    return tmp_path / "edited.json"


@pytest.mark.parametrize(
    "change, words",
    [
        ({"input_size": 10**9}, ("input_size", "whole number")),
        ({"cell_px": 0}, ("cell_px", "divide")),
        ({"classes": "good,defocus"}, ("classes", "list")),
        ({"std": [0, 1, 1]}, ("std", "positive")),
    ],
)
def test_a_broken_model_card_is_one_line_naming_it(model_copy, change, words):
    card = json.loads(model_copy.read_text()) | change
    model_copy.write_text(json.dumps(card))
    run = _slideiqa("predict", "--model", str(model_copy), "--mpp", "0.5", str(FIELDS / "ihc_colon.png"))
    _one_error_line(run, str(model_copy), *words)
    assert run.stdout == ""


def test_a_card_whose_classes_do_not_match_its_graph_is_refused(model_copy):
    card = json.loads(model_copy.read_text())
    card["classes"] = [*card["classes"], "fold"]  # seven names for six outputs: every column would be mislabelled
    model_copy.write_text(json.dumps(card))
    run = _slideiqa("predict", "--model", str(model_copy), "--mpp", "0.5", str(FIELDS / "ihc_colon.png"))
    _one_error_line(run, "does not fit its model card", "['N', 7]")
    assert run.stdout == ""


CARD_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    changes=st.dictionaries(st.sampled_from(sorted(ModelCard.__dataclass_fields__)), CARD_VALUES, max_size=3),
    whole=st.one_of(st.none(), CARD_VALUES),
)
def test_no_model_card_gives_a_traceback(tmp_path, changes, whole):
    path = tmp_path / "model.json"
    valid = {"architecture": "iqanet", "classes": ["good", "defocus"], "cell_hidden": 16, "cell_px": 32}
    path.write_text(json.dumps(valid | changes if whole is None else whole))
    try:
        card = load_card(path)
    except ModelError as error:
        assert str(error).startswith(f"{path}: ") and "\n" not in str(error)
        return
    assert card.good_class in card.classes and 1 <= card.input_size <= 4096 and card.mpp > 0


def test_a_spreadsheets_mpp_table_is_read_as_meant(tmp_path):
    table = tmp_path / "slides.csv"
    table.write_bytes("\ufeffSlide;MPP\r\na.svs;0,25\r\n\r\nb.svs;0,5\r\n".encode())  # Excel in a decimal-comma locale
    assert dict(load_mpp_table(table)) == {"a.svs": 0.25, "b.svs": 0.5}
    table.write_bytes("\ufeffslide,mpp\r\na.svs,0.25\r\n".encode())  # Excel's CSV UTF-8
    assert dict(load_mpp_table(table)) == {"a.svs": 0.25}
    table.write_text("slide\tmpp\na.svs\t0.3\n")
    assert dict(load_mpp_table(table)) == {"a.svs": 0.3}
    table.write_bytes("slide,mpp\nä.svs,0.3\n".encode("latin-1"))
    with pytest.raises(SettingsError, match="not UTF-8 text"):
        load_mpp_table(table)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.one_of(
        st.text(max_size=80),
        st.lists(st.lists(st.text(max_size=6), max_size=3), max_size=4).map(
            lambda rows: "\n".join(",".join(row) for row in [["slide", "mpp"], *rows])
        ),
    ),
    bom=st.booleans(),
)
def test_no_mpp_table_gives_a_traceback(tmp_path, text, bom):
    path = tmp_path / "slides.csv"
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8", "surrogatepass"))
    try:
        table = load_mpp_table(path)
    except SettingsError as error:
        assert str(error).startswith(f"{path}") and "\n" not in str(error)
        return
    assert all(np.isfinite(value) and value > 0 for value in table.values())


# -- 5. predict scores what it can --------------------------------------------------------------------


def test_predict_scores_the_good_files_beside_a_bad_one(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = [FIELDS / "ihc_colon.png", FIELDS / "he_tumour_target.png"]
    run = _slideiqa("predict", "--mpp", "0.5", "--format", "csv", str(good[0]), str(broken), str(good[1]))
    assert run.returncode == 1
    rows = run.stdout.strip().splitlines()
    assert len(rows) == 3 and [row.split(",")[0] for row in rows[1:]] == [str(path) for path in good]
    errors = [line for line in run.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and str(broken) in errors[0] and "Traceback" not in run.stderr


# -- 6. one line per event -----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_newline_in_a_file_name_cannot_forge_a_log_line(tmp_path):
    forged = "x.svs\n2026-01-01T00:00:00+00:00   mapped ok.svs: pass"
    slide = tmp_path / f"{forged}.svs"
    shutil.copy(CMU_SLIDE, slide)
    run = _slideiqa("batch", str(slide), "-o", str(tmp_path / "out"), "--workers", "1")
    lines = (run.stdout + run.stderr).splitlines()
    assert run.returncode == 0, run.stderr[-2000:]
    assert not any(line.startswith("2026-01-01") for line in lines)
    assert any("x.svs\\n2026-01-01" in line and "mapped" in line for line in lines)
    missing = tmp_path / "gone\nerror: forged.svs"
    run = _slideiqa("map", str(missing))
    _one_error_line(run, "gone\\nerror: forged.svs")


# -- 7 and 8. races and links on one output ----------------------------------------------------------


def _lock_holder(out: Path) -> str:
    lock = out.with_name(f".{out.name}.lock")
    return lock.read_text() if lock.exists() else ""


def test_a_second_overwrite_of_a_map_being_written_is_refused_and_the_first_wins(tmp_path):
    out = tmp_path / "cmu.quality.zarr"
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "slideiqa.cli.app",
            "map",
            str(CMU_SLIDE),
            "-o",
            str(out),
            "--overwrite",
            "--min-tissue",
            "0.3",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while f"pid {first.pid}" not in _lock_holder(out):
        assert first.poll() is None and time.monotonic() < deadline, first.stderr.read() if first.poll() else "no lock"
        time.sleep(0.01)
    os.kill(first.pid, signal.SIGSTOP)  # the first run holds the map, stopped mid-way
    try:
        second = _slideiqa("map", str(CMU_SLIDE), "-o", str(out), "--overwrite", "--threshold", "0.6")
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _one_error_line(second, str(out), "another slideiqa run", f"pid {first.pid}")
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-2000:]
    written = open_map(out)
    assert written.complete and written.attributes["options"]["min_tissue"] == 0.3
    assert written.attributes["options"]["threshold"] == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no lock or hidden folder left


def test_overwriting_through_a_symbolic_link_is_refused_and_leaves_nothing_hidden(tmp_path):
    real = tmp_path / "maps" / "cmu.quality.zarr"
    real.parent.mkdir()
    map_slide(CMU_SLIDE, real)
    link = tmp_path / "latest.quality.zarr"
    link.symlink_to(real, target_is_directory=True)
    run = _slideiqa("map", str(CMU_SLIDE), "-o", str(link), "--overwrite", "--threshold", "0.6")
    _one_error_line(run, str(link), "symbolic link", str(real))
    assert link.is_symlink() and os.readlink(link) == str(real) and open_map(real).complete
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.quality.zarr", "maps"]
    assert sorted(p.name for p in real.parent.iterdir()) == ["cmu.quality.zarr"]
    again = _slideiqa("map", str(CMU_SLIDE), "-o", str(link))  # reading through the link still works
    assert again.returncode == 0 and "already complete" in again.stdout


# -- 9. µm/px table rows that match nothing ------------------------------------------------------------


def test_mpp_table_rows_matching_no_slide_and_duplicates_are_named(tmp_path):
    slides = tmp_path / "slides"
    slides.mkdir()
    image = np.asarray(Image.open(FIELDS / "he_tumour_target.png").convert("RGB"))
    tifffile.imwrite(slides / "no_mpp.tif", image, tile=(256, 256), photometric="rgb")  # states no pixel size
    table = tmp_path / "slides.csv"
    table.write_bytes("\ufeffslide;mpp\r\nno_mpp.tif;0,25\r\nno_mp.tif;0,25\r\nno_mpp.tif;0,25\r\n".encode())
    run = _slideiqa("batch", str(slides), "-o", str(tmp_path / "out"), "--mpp-table", str(table), "--workers", "1")
    assert run.returncode == 0, run.stderr[-2000:]
    warnings = [line for line in run.stderr.splitlines() if "warning:" in line]
    assert any("no_mp.tif" in line and "match no slide" in line for line in warnings), warnings
    assert any("no_mpp.tif is listed on lines 2 and 4" in line for line in warnings), warnings
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert len(report["warnings"]) == 2 and report["slides"][0]["mpp"] == 0.25


def test_html_report_of_earlier_rows_escapes_and_marks_them(tmp_path):
    records = [SlideRecord("/scans/a<b.svs", str(tmp_path / "m.quality.zarr"), "failed", error="x", earlier=True)]
    write_reports(records, tmp_path, {"model": "default", "verdict_rule": "rule"})
    page = (tmp_path / "report.html").read_text()
    assert "a&lt;b.svs" in page and "from an earlier run into this folder" in page
