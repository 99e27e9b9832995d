"""slideiqa batch on a real LocalCluster with worker processes: discovery, isolation, faults, resume."""

import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from slideiqa.batch.discovery import DiscoveryError, discover_slides
from slideiqa.batch.report import SlideRecord, with_batch_tone, write_reports
from slideiqa.batch.run import BatchResult, MapOptions, run_batch
from slideiqa.cli.app import app
from slideiqa.io.slide import open_slide
from slideiqa.measure.slide_tone import DEPARTURE_Z, TONE_FEATURES
from slideiqa.outputs.store import FIXED_LABELS, UNREADABLE, blocks_done, open_map

from paths import CMU_SLIDE, FIELDS, FIXTURES, ROOT
from slides import mosaic_slide, truncated_copy, with_garbage_tile

ARRAYS = ("score", "probs", "label", "tissue", "tone", "cell_score", "cell_label", "cell_probs")
TILE = 224
BLOCK = 4  # small blocks: several tasks per slide, so a fault or an interruption lands mid-slide


@pytest.fixture(scope="module")
def sources():
    # Real pixels at the mosaic's 0.5 µm/px: the tumour field is a 0.25 µm/px scan, so it is halved.
    tumour = Image.open(FIELDS / "he_tumour_target.png").convert("RGB")
    images = [
        np.asarray(tumour.resize((tumour.width // 2, tumour.height // 2), Image.Resampling.LANCZOS)),
        np.asarray(Image.open(FIELDS / "ihc_colon.png").convert("RGB")),
    ]
    with open_slide(CMU_SLIDE) as cmu:
        images.append(cmu.read_region((650, 250), 0, (896, 1792)))
    return images


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, sources):
    """A folder tree as a lab has it: real slides, synthetic slides of real pixels (one failing the
    quality rule), a duplicate file name in two sub-folders, a slide without extension and with one
    corrupt tile, a truncated slide, a text file posing as a TIFF, and a file that is no slide at all."""
    root = tmp_path_factory.mktemp("tree") / COHORT
    for folder in ("run1", "run2", "run2/deeper"):
        (root / folder).mkdir(parents=True)
    (root / "run1" / "cmu.svs").write_bytes(CMU_SLIDE.read_bytes())
    mosaic_slide(root / "run1" / "case.tif", sources, 10, TILE, seed=1)
    mosaic_slide(root / "run2" / "case.tif", sources, 10, TILE, seed=2, defocus_share=0.5)  # same name, fails
    scan = mosaic_slide(root / "run2" / "deeper" / "scan_without_extension", sources, 8, TILE, seed=3)
    with_garbage_tile(scan, scan, tile_index=10)
    truncated_copy(root / "run1" / "case.tif", root / "run2" / "truncated.tif", 0.4)
    (root / "run2" / "fake.tif").write_text("not a slide, whatever the name says\n")
    (root / "run1" / "notes.txt").write_text("scanner log\n")
    return root


COHORT = "cohort"  # the tree's folder name, which starts every map name
GOOD = {
    "run1/cmu.svs": f"{COHORT}/run1/cmu.quality.zarr",
    "run1/case.tif": f"{COHORT}/run1/case.quality.zarr",
    "run2/case.tif": f"{COHORT}/run2/case.quality.zarr",
    "run2/deeper/scan_without_extension": f"{COHORT}/run2/deeper/scan_without_extension.quality.zarr",
}
BROKEN = {"run2/truncated.tif": "truncated.tif", "run2/fake.tif": "fake.tif"}


@pytest.fixture(scope="module")
def batch(cohort, tmp_path_factory):
    """The uninterrupted reference batch on an embedded LocalCluster of two worker processes."""
    out = tmp_path_factory.mktemp("batch") / "maps"
    result = run_batch([cohort], out, recursive=True, workers=2, options=MapOptions(block=BLOCK))
    return result


def _records(result, root: Path):
    return {str(Path(r.slide).relative_to(root)): r for r in result.records}


def _same_maps(out_a: Path, out_b: Path, atol: float = 0.0) -> None:
    for relative in GOOD.values():
        a, b = open_map(out_a / relative), open_map(out_b / relative)
        assert a.complete and b.complete, relative
        for name in ARRAYS:
            np.testing.assert_allclose(a.array(name), b.array(name), atol=atol, err_msg=f"{relative} {name}")


def test_a_file_left_out_says_why(tmp_path):
    cohort = tmp_path / "c"
    cohort.mkdir()
    (cohort / "field.png").write_bytes((FIELDS / "ihc_colon.png").read_bytes())
    (cohort / "scan.bin").write_bytes(b"\0" * 1000)
    (cohort / "notes.csv").write_text("a,b\n")
    shutil.copy(CMU_SLIDE, cohort / "slide.svs")
    reasons = {Path(item["path"]).name: item["why"] for item in discover_slides([cohort]).left_out}
    assert reasons == {
        "field.png": "a field image, not a slide: score it with slideiqa predict",
        "scan.bin": "not a slide format slideiqa reads (neither its extension nor its first bytes say so)",
        "notes.csv": "not an image (by its extension)",
    }


def test_discovery_finds_slides_by_extension_and_content_with_unique_names(cohort, tmp_path):
    found = discover_slides([cohort], recursive=True)
    names = {str(job.path.relative_to(cohort)): job.map_name for job in found.jobs}
    assert names == GOOD | {
        "run2/truncated.tif": f"{COHORT}/run2/truncated.quality.zarr",
        "run2/fake.tif": f"{COHORT}/run2/fake.quality.zarr",
    }
    assert [p.name for p in found.ignored] == ["notes.txt"]
    shallow = discover_slides([cohort / "run1", cohort / "run2" / "case.tif"])
    assert sorted(job.map_name for job in shallow.jobs) == [
        "case.quality.zarr",
        "run1/case.quality.zarr",
        "run1/cmu.quality.zarr",
    ]


def test_discovery_keeps_one_file_of_a_dicom_slide_and_full_names_for_shared_stems(tmp_path):
    (tmp_path / "dicom").mkdir()
    for name in ("boxes_0.dcm", "boxes_1.dcm"):
        (tmp_path / "dicom" / name).write_bytes((FIXTURES / name).read_bytes())
    (tmp_path / "a.svs").write_bytes((FIXTURES / "small.svs").read_bytes())
    (tmp_path / "a.tiff").write_bytes((FIXTURES / "boxes.tiff").read_bytes())
    names = sorted(job.map_name for job in discover_slides([tmp_path], recursive=True).jobs)
    top = tmp_path.name
    assert names == [f"{top}/a.svs.quality.zarr", f"{top}/a.tiff.quality.zarr", f"{top}/dicom/boxes_0.quality.zarr"]
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("nothing here\n")
    with pytest.raises(DiscoveryError, match="no slides found.*--recursive"):
        discover_slides([tmp_path / "empty"])


@pytest.mark.slow
def test_batch_maps_every_good_slide_and_reports_the_broken_ones(batch, cohort):
    records = _records(batch, cohort)
    assert set(records) == set(GOOD) | set(BROKEN)
    for relative, map_name in GOOD.items():
        record = records[relative]
        assert record.status == "mapped" and record.error is None, (relative, record.error)
        assert Path(record.map) == batch.out / map_name and open_map(record.map).complete
        quality = open_map(record.map)
        unreadable = int(np.sum(quality.array("label") == UNREADABLE))
        assert record.unreadable_tiles == unreadable and (unreadable > 0) == ("scan_without" in relative)
        # Tissue tiles are the scored ones and those slideiqa labelled itself (unreadable, artefacts).
        fixed = int(np.isin(quality.array("label"), list(FIXED_LABELS.values())).sum())
        assert record.tissue_tiles == int(np.sum(~np.isnan(quality.array("score")))) + fixed
        reference = quality.attributes["tone_context"]["reference"]
        assert record.tone == [reference[name]["median"] for name in TONE_FEATURES] and record.tone[1] is not None
    for relative, name in BROKEN.items():
        record = records[relative]
        assert record.status == "failed" and name in record.error and record.tone is None
        assert not (Path(record.map) / "summary.json").exists()
    assert records["run1/case.tif"].verdict == "pass" and records["run2/case.tif"].verdict == "fail"
    assert records["run2/case.tif"].share_per_class["defocus"] > 0.3
    assert batch.exit_code == 1 and [p.name for p in batch.ignored] == ["notes.txt"]
    # Files left out are listed in the report, with why.
    report = json.loads((batch.out / "report.json").read_text())
    assert [(Path(item["path"]).name, item["why"]) for item in report["left_out"]] == [
        ("notes.txt", "not an image (by its extension)")
    ]
    page = (batch.out / "report.html").read_text()
    assert "1 file in the folders left out, and why" in page and "notes.txt</span> not an image" in page


def test_batch_maps_equal_single_slide_maps(batch, cohort, tmp_path):
    from slideiqa import map_slide

    alone = map_slide(cohort / "run2" / "case.tif", tmp_path / "alone.quality.zarr", block=BLOCK)
    reference = open_map(batch.out / GOOD["run2/case.tif"])
    for name in ARRAYS:
        np.testing.assert_allclose(open_map(alone.path).array(name), reference.array(name), atol=1e-6, err_msg=name)


def test_slides_map_whole_on_workers_and_the_last_one_block_by_block(batch, cohort, tmp_path):
    from distributed import Client, LocalCluster, get_task_stream

    slides = [
        cohort / "run1" / "case.tif",
        cohort / "run1" / "cmu.svs",
        cohort / "run2" / "deeper" / "scan_without_extension",
    ]
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        with get_task_stream(client) as stream:
            result = run_batch(
                slides, tmp_path / "out", client=client, inference_threads=1, options=MapOptions(block=BLOCK)
            )
        profiling = client.run(lambda dask_worker: dask_worker.periodic_callbacks["profile"].is_running())
    assert not result.failed, [r.error for r in result.failed]
    keys = [(task["key"] if isinstance(task["key"], str) else task["key"][0], task["worker"]) for task in stream.data]
    whole = [(key, worker) for key, worker in keys if key.startswith("slide-")]
    # Three slides, two threads: the first two each whole on a worker of its own, the last one spread
    # over the workers in blocks of BLOCK² tiles.
    assert sorted(key.split("-")[1] for key, _ in whole) == ["case.tif", "cmu.svs"]
    assert len({worker for _, worker in whole}) == 2
    blocks = [worker for key, worker in keys if key.startswith("assess_block")]
    assert len(blocks) >= 4
    # The maps are the ones the reference batch made block by block.
    for record in result.records:
        relative = next(v for k, v in GOOD.items() if record.slide.endswith(k))
        for name in ARRAYS:
            np.testing.assert_allclose(
                open_map(record.map).array(name),
                open_map(batch.out / relative).array(name),
                atol=1e-6,
                err_msg=f"{relative} {name}",
            )
    # The workers' tasks ran without Dask's stack sampler (it takes the GIL every 10 ms).
    assert profiling and not any(profiling.values())


def test_reports_csv_json_html_sorted_worst_first(batch):
    report = json.loads((batch.out / "report.json").read_text())
    statuses = [row["status"] for row in report["slides"]]
    assert statuses[:2] == ["failed", "failed"] and report["failed"] == 2 and report["slides"][2]["verdict"] == "fail"
    lines = (batch.out / "report.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert len(lines) == 1 + len(GOOD) + len(BROKEN)
    for column in (
        "slide",
        "status",
        "tissue_tiles",
        "unreadable_tiles",
        "mean_score",
        "share_defocus",
        "share_unreadable",
        "verdict",
        "runtime_s",
        "error",
    ):
        assert column in header
    for column in ("mpp", "width_px", "height_px", "tissue_area_mm2", "map_runtime_s", "tone_vs_batch"):
        assert column in header
    # Four mapped slides are too few for a batch's own tone reference (slide_tone.MIN_COHORT_SLIDES).
    assert all(row["tone_vs_batch"] is None for row in report["slides"])
    shares = [name for name in header if name.startswith("share_") and name != "share_below_threshold"]
    assert shares[:2] == ["share_good", "share_defocus"]
    assert shares[-6:] == ["share_pen", "share_fold", "share_bubble", "share_edge", "share_debris", "share_unreadable"]
    rows = list(csv.DictReader(lines))
    assert all(Path(row["slide"]).is_absolute() and Path(row["map"]).is_absolute() for row in rows)
    mapped = [row for row in rows if row["status"] != "failed"]
    assert all(
        len(row["mean_score"].split(".")[-1]) <= 4 and float(row["mpp"]) > 0 and float(row["tissue_area_mm2"]) > 0
        for row in mapped
    )
    page = (batch.out / "report.html").read_text()
    assert page.count("<tr data-outcome=") == len(GOOD) + len(BROKEN)
    assert page.count("data:image/jpeg;base64,") == len(GOOD)  # self-contained: thumbnails inline
    assert page.index("truncated.tif") < page.index("run2/case.tif") < page.index("run1/case.tif")
    assert "ERROR · no map" in page and "FAIL · quality" in page  # two outcomes, two unmistakable badges


def _cli_batch(*arguments) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "slideiqa.cli.app", "batch", *map(str, arguments)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


@pytest.mark.slow
def test_cli_exit_status_and_rerun_skips_complete_maps(cohort, tmp_path):
    out = tmp_path / "cli"
    first = _cli_batch(cohort / "run1", cohort / "run2" / "fake.tif", "-o", out, "--workers", "1")
    assert first.returncode == 1, first.stderr
    assert "2 of 3 slides have complete maps (2 mapped now)" in " ".join(first.stdout.split())
    assert "Dask dashboard: http://" in first.stdout
    assert "1 file in the folders not mapped (not slides); the report lists each with why" in " ".join(
        first.stdout.split()
    )
    maps = [out / "run1" / "cmu.quality.zarr", out / "run1" / "case.quality.zarr"]
    before = [(m / "zarr.json").stat().st_mtime_ns for m in maps]
    again = _cli_batch(cohort / "run1", "-o", out, "--workers", "1")
    assert again.returncode == 0, again.stderr
    report = json.loads((out / "report.json").read_text())
    # This run's two slides are skipped; the first run's failed slide, not given again, stays listed.
    assert [(row["status"], row["earlier"]) for row in report["slides"]] == [
        ("failed", True),
        ("skipped", False),
        ("skipped", False),
    ]
    assert before == [(m / "zarr.json").stat().st_mtime_ns for m in maps]


@pytest.mark.slow
def test_other_settings_need_overwrite_which_replaces_them(batch, cohort, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(batch.out / COHORT / "run1", out / "run1")
    again = run_batch([cohort / "run1"], out, options=MapOptions(block=8), workers=1)
    assert {r.status for r in again.records} == {"failed"}
    assert all("--overwrite" in r.error for r in again.records)
    assert all(open_map(r.map).attributes["settings"]["block"] == BLOCK for r in again.records)
    replaced = run_batch([cohort / "run1"], out, options=MapOptions(block=8, overwrite=True), workers=1)
    assert {r.status for r in replaced.records} == {"mapped"}
    for record in replaced.records:
        assert open_map(record.map).attributes["settings"]["block"] == 8 and open_map(record.map).complete


def test_names_do_not_depend_on_other_inputs_and_same_named_folders_are_refused(cohort, tmp_path):
    alone = {job.path: job.map_name for job in discover_slides([cohort / "run1"]).jobs}
    together = {job.path: job.map_name for job in discover_slides([cohort / "run1", cohort / "run2"]).jobs}
    assert alone.items() <= together.items()
    twin = tmp_path / "elsewhere" / "run1"
    twin.mkdir(parents=True)
    (twin / "cmu.svs").write_bytes(CMU_SLIDE.read_bytes())
    with pytest.raises(DiscoveryError, match="would both be mapped to run1/cmu.quality.zarr"):
        discover_slides([cohort / "run1", twin])


def test_a_slide_toned_unlike_the_rest_of_its_batch_is_pointed_out(tmp_path):
    """Six slides of one lab's tone and one scanned a stop darker throughout (glass 15 grey levels
    down, stain density doubled): only that one departs from the batch's tone, in every report."""

    def record(name: str, tone: list[float | None]) -> SlideRecord:
        return SlideRecord(
            f"/scans/{name}.svs",
            str(tmp_path / f"{name}.quality.zarr"),
            "mapped",
            verdict="pass",
            share_below_threshold=0.02,
            tone=tone,
        )

    lab = [record(f"case{i}", [241.0 + i % 3, -0.45 + 0.03 * i, None]) for i in range(6)]
    darker = record("darker", [226.0, -0.45 + 1.0, None])
    write_reports(
        [*lab, darker, SlideRecord("/scans/broken.svs", str(tmp_path / "b"), "failed", error="x")],
        tmp_path,
        {"model": "default", "verdict_rule": "rule"},
    )
    rows = {Path(row["slide"]).stem: row for row in json.loads((tmp_path / "report.json").read_text())["slides"]}
    assert rows["darker"]["tone_vs_batch"] > DEPARTURE_Z
    assert all(rows[f"case{i}"]["tone_vs_batch"] < 2 for i in range(6)) and rows["broken"]["tone_vs_batch"] is None
    csv_rows = {
        Path(row["slide"]).stem: row for row in csv.DictReader((tmp_path / "report.csv").read_text().splitlines())
    }
    assert float(csv_rows["darker"]["tone_vs_batch"]) > DEPARTURE_Z and csv_rows["broken"]["tone_vs_batch"] == ""
    page = (tmp_path / "report.html").read_text()
    assert page.count("unlike the batch") == 1 and "1 slides' tone" in page
    # A slide whose glass is more than 1 EV below white is named too, whatever the batch is like.
    dim = record("dim", [112.0, -0.45, None])
    warnings = BatchResult(tmp_path, with_batch_tone([*lab, darker, dim])).tone_warnings
    assert [w.split(":")[0] for w in warnings if "glass is at" in w] == ["/scans/dim.svs"]
    assert "under-exposed" in warnings[-1] and sum("unlike the rest" in w for w in warnings) == 2


@pytest.mark.slow
def test_a_batch_points_out_a_slide_paled_throughout_that_passes_its_own_map(tmp_path):
    """Six slides of the same real tumour tissue, one given a paler tone curve throughout by
    scikit-image (γ = ½, the exposure floor): its own map's tone check cannot tell (its tiles all
    share the tone; today's model passes the slide), but the batch's comparison points it out, on
    stderr and in the report."""
    from skimage.exposure import adjust_gamma

    from slides import mosaic_pixels, write_pyramidal_tiff

    field = np.asarray(Image.open(FIELDS / "he_tumour_target.png").convert("RGB"))
    folder = tmp_path / "lab"
    folder.mkdir()
    for index in range(6):
        pixels = mosaic_pixels([field], 6, TILE, seed=10 + index)
        write_pyramidal_tiff(folder / f"slide{index}.tif", adjust_gamma(pixels, 0.5) if index == 5 else pixels, mpp=0.5)
    result = _cli_batch(folder, "-o", tmp_path / "maps", "--workers", "2")
    assert result.returncode == 0, result.stderr
    rows = {
        Path(row["slide"]).stem: row for row in json.loads((tmp_path / "maps" / "report.json").read_text())["slides"]
    }
    own = json.loads((Path(rows["slide5"]["map"]) / "summary.json").read_text())["tone"]
    assert own["tiles_departing"] == 0 and rows["slide5"]["tone_vs_batch"] > DEPARTURE_Z
    assert all(rows[f"slide{i}"]["tone_vs_batch"] < 2 for i in range(5))
    warnings = [line for line in result.stderr.splitlines() if "unlike the rest of the batch" in line]
    assert len(warnings) == 1 and "slide5.tif" in warnings[0]


def test_html_report_escapes_names_and_messages(tmp_path):
    records = [
        SlideRecord(
            "/scans/a<b&c.svs", str(tmp_path / "m.quality.zarr"), "failed", error="<script>alert(1)</script> truncated"
        )
    ]
    write_reports(records, tmp_path, {"model": "default", "verdict_rule": "rule"})
    page = (tmp_path / "report.html").read_text()
    assert "a&lt;b&amp;c.svs" in page and "<script>alert" not in page and "&lt;script&gt;alert(1)" in page


def _some_blocks_written(path: Path) -> bool:
    """Whether a map (possibly still being written by another process) has any finished block."""
    try:
        return bool(blocks_done(open_map(path).group).any())
    except Exception:  # not yet a readable map
        return False


def _any_blocks_written(out: Path) -> bool:
    """Whether any map under ``out`` has a finished block; a folder renamed while it is scanned (a
    map's creation finishing) is looked at again on the next call."""
    try:
        return any(_some_blocks_written(m) for m in out.glob("**/*.quality.zarr"))
    except OSError:
        return False


def _worker_pids(client) -> dict[str, int]:
    return client.run(os.getpid)


@pytest.mark.slow
def test_killing_a_worker_mid_batch_still_gives_identical_maps(batch, cohort, tmp_path):
    from distributed import Client, LocalCluster

    out = tmp_path / "faulty"
    killed: dict[str, object] = {}
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):

        def kill_a_busy_worker() -> None:
            deadline = time.time() + 120
            while time.time() < deadline:
                busy = {address: tasks for address, tasks in client.processing().items() if tasks}
                if busy and _any_blocks_written(out):  # some done
                    address, tasks = next(iter(busy.items()))
                    pid = client.run(os.getpid, workers=[address])[address]
                    killed.update(pid=pid, tasks=len(tasks))
                    os.kill(pid, signal.SIGKILL)
                    return
                time.sleep(0.02)

        killer = threading.Thread(target=kill_a_busy_worker)
        killer.start()
        result = run_batch(
            [cohort],
            out,
            recursive=True,
            scheduler=cluster.scheduler_address,
            options=MapOptions(block=BLOCK),
            slides_in_flight=2,
        )
        killer.join()
        assert killed and killed["tasks"] >= 1, "no busy worker was killed"
        assert killed["pid"] not in client.run(os.getpid).values()
    assert {r.status for r in result.records} == {"mapped", "failed"}, [r.error for r in result.failed]
    assert len(result.failed) == 2
    _same_maps(out, batch.out, atol=1e-6)


@pytest.mark.slow
def test_a_slide_whose_workers_keep_dying_fails_alone(sources, tmp_path):
    """Every worker that takes one slide is killed (kill -9) until Dask gives up on it (``allowed-
    failures`` lowered to 1 for speed: two deaths). That slide fails with a line that says so; the
    other slides of the batch are mapped whole, and the batch ends."""
    import dask
    from distributed import Client, LocalCluster

    cohort = tmp_path / "cohort"
    cohort.mkdir()
    # First in line, and large enough (32 × 32 tiles) that no worker maps it before it is killed, even
    # on a machine so busy that finding the worker takes a second.
    mosaic_slide(cohort / "a_doomed.tif", sources, 32, TILE, seed=3)
    mosaic_slide(cohort / "b_case.tif", sources, 8, TILE, seed=1)
    mosaic_slide(cohort / "c_case.tif", sources, 8, TILE, seed=2)
    out, deaths, stop = tmp_path / "maps", [], threading.Event()
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 1}),
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):

        def kill_whoever_maps_it() -> None:
            killed: set[str] = set()  # a dead worker's address: the scheduler lists it a while longer, and
            # asking it for its pid would wait 30 s, time in which the retry may finish elsewhere
            while not stop.is_set():
                for address, keys in client.processing().items():
                    if address not in killed and any(str(key).startswith("slide-a_doomed.tif") for key in keys):
                        with contextlib.suppress(Exception):
                            pid = client.run(os.getpid, workers=[address])[address]
                            os.kill(pid, signal.SIGKILL)
                            deaths.append(pid)
                            killed.add(address)
                time.sleep(0.02)

        killer = threading.Thread(target=kill_whoever_maps_it)
        killer.start()
        try:
            result = run_batch([cohort], out, scheduler=cluster.scheduler_address, options=MapOptions(block=BLOCK))
        finally:
            stop.set()
            killer.join()
    assert len(set(deaths)) >= 2
    records = {Path(record.slide).name: record for record in result.records}
    assert records["a_doomed.tif"].status == "failed"
    assert "the workers mapping it kept dying" in records["a_doomed.tif"].error
    assert "a_doomed.tif" in records["a_doomed.tif"].error and "\n" not in records["a_doomed.tif"].error
    for name in ("b_case.tif", "c_case.tif"):
        assert records[name].status == "mapped" and open_map(records[name].map).complete, records[name].error
    report = json.loads((out / "report.json").read_text())
    assert {Path(row["slide"]).name: row["status"] for row in report["slides"]} == {
        "a_doomed.tif": "failed",
        "b_case.tif": "mapped",
        "c_case.tif": "mapped",
    }


@pytest.mark.slow
def test_interrupted_batch_resumes_without_recomputing_finished_slides(batch, cohort, tmp_path):
    out = tmp_path / "interrupted"
    script = (
        "import sys\nfrom slideiqa.batch.run import MapOptions, run_batch\n"
        f"run_batch([sys.argv[1]], sys.argv[2], recursive=True, workers=1, slides_in_flight=1, "
        f"options=MapOptions(block={BLOCK}))\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script, str(cohort), str(out)], start_new_session=True)
    deadline, finished, partial = time.time() + 180, [], []
    while time.time() < deadline and process.poll() is None:
        report = out / "report.json"
        if report.exists():
            finished = [row for row in json.loads(report.read_text())["slides"] if row["status"] == "mapped"]
            done = {Path(row["map"]).resolve() for row in finished}
            try:
                partial = [
                    m for m in out.glob("**/*.quality.zarr") if m.resolve() not in done and _some_blocks_written(m)
                ]
            except FileNotFoundError:  # a store being renamed into place while the walk passed it
                continue
            if finished and partial:
                break
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert finished and partial, "the batch ended before it could be interrupted mid-slide"
    stamps = {row["map"]: (Path(row["map"]) / "progress" / "c" / "0" / "0").stat().st_mtime_ns for row in finished}
    resumed = run_batch([cohort], out, recursive=True, workers=1, options=MapOptions(block=BLOCK))
    by_map = {r.map: r for r in resumed.records}
    for path, stamp in stamps.items():
        assert by_map[path].status == "skipped"
        assert (Path(path) / "progress" / "c" / "0" / "0").stat().st_mtime_ns == stamp
    assert "resumed" in {r.status for r in resumed.records}  # the slide cut short was finished, not redone
    assert sum(r.status in ("mapped", "resumed") for r in resumed.records) == len(GOOD) - len(stamps)
    _same_maps(out, batch.out, atol=1e-6)


def test_link_loops_and_dangling_links_are_skipped_with_a_warning(tmp_path):
    folder = tmp_path / "scans"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "cmu.svs").write_bytes(CMU_SLIDE.read_bytes())
    (folder / "loop.svs").symlink_to(folder / "loop.svs")  # refers to itself
    (folder / "gone.svs").symlink_to(folder / "never-there.svs")
    (folder / "sub" / "up").symlink_to(folder)  # a folder loop: read once
    out = tmp_path / "out"
    done = _cli_batch(folder, "-o", out, "-r", "--workers", "1")
    assert done.returncode == 0, done.stderr[-2000:]
    assert open_map(out / "scans" / "sub" / "cmu.quality.zarr").complete
    warnings = json.loads((out / "report.json").read_text())["warnings"]
    assert warnings == [
        f"{folder / 'gone.svs'}: dangling symbolic link, skipped",
        f"{folder / 'loop.svs'}: symbolic link loop, skipped",
    ]
    text = " ".join(done.stderr.split())  # warnings go to stderr, results to stdout
    assert "warning: " in text and "symbolic link loop" in text
    assert "loop.svs" in (out / "report.html").read_text()


def _interrupt_by_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _a_block_is_written(out: Path) -> bool:
    """Whether any map under ``out`` has a block of its progress array on disk (stores are renamed
    into place while this looks, so a path may vanish under the walk)."""
    try:
        return any(path.is_file() for path in out.glob("**/progress/c/**/*"))
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_ctrl_c_to_the_process_group_stops_the_batch_reports_and_resumes(sources, tmp_path):
    # A terminal's Ctrl-C reaches the whole foreground process group, worker processes included.
    folder = tmp_path / "scans"
    folder.mkdir()
    for seed in range(3):  # 1600 tiles each: several seconds of mapping even on a quiet machine
        mosaic_slide(folder / f"slide{seed}.tif", sources, 40, TILE, seed=seed)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "slideiqa.cli.app", "batch", str(folder), "-o", str(out), "--workers", "2"]
    # As from a terminal: SIGINT handled, even where this test runs under a shell's background job
    # (which starts its children with SIGINT ignored, and Python then installs no handler).
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=_interrupt_by_default,
    )
    assert "slides →" in process.stdout.readline()  # the cluster is up and the slides are submitted
    # Interrupt once a first block is on disk (so that a rerun has something to resume), or after 1.5 s,
    # well before the batch can end.
    deadline = time.monotonic() + 1.5
    while not _a_block_is_written(out) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130
    rows = json.loads((out / "report.json").read_text())["slides"]
    assert sorted(Path(row["slide"]).name for row in rows) == ["slide0.tif", "slide1.tif", "slide2.tif"]
    assert "interrupted" in {row["status"] for row in rows}
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    rows = json.loads((out / "report.json").read_text())["slides"]
    assert {row["status"] for row in rows} <= {"skipped", "resumed", "mapped"} and "resumed" in {
        r["status"] for r in rows
    }


# -- the cohort review page in a real browser ----------------------------------------------------------


def _shown(browser) -> list[str]:
    from selenium.webdriver.common.by import By

    return [
        row.get_attribute("data-outcome") + " " + row.find_element(By.CSS_SELECTOR, ".path").text
        for row in browser.find_elements(By.CSS_SELECTOR, "#slides tbody tr")
        if row.is_displayed()
    ]


@pytest.mark.gui
def test_html_report_renders_sorts_and_filters_in_chromium(batch, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    page = (batch.out / "report.html").resolve().as_uri()
    browser.get(page)
    rows = _shown(browser)
    assert len(rows) == len(GOOD) + len(BROKEN)
    assert [row.split()[0] for row in rows[:2]] == ["error", "error"]  # worst first as written
    images = browser.find_elements(By.CSS_SELECTOR, "td.picture img")
    assert len(images) == len(GOOD) and all(
        browser.execute_script("return arguments[0].naturalWidth", i) > 0 for i in images
    )  # thumbnails decode offline

    header = browser.find_element(By.CSS_SELECTOR, "th[data-key=mean_score]")
    header.click()
    scores = [
        float(v)
        for v in browser.execute_script(
            "return Array.from(document.querySelectorAll('#slides tbody tr')).map(r => r.cells[3].dataset.sort)"
        )
        if v
    ]
    assert scores == sorted(scores) and len(scores) == len(GOOD)
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    descending = [
        float(v)
        for v in browser.execute_script(
            "return Array.from(document.querySelectorAll('#slides tbody tr')).map(r => r.cells[3].dataset.sort)"
        )
        if v
    ]
    assert descending == sorted(scores, reverse=True)
    last_two = [row.split()[0] for row in _shown(browser)[-2:]]
    assert last_two == ["error", "error"]  # slides without a score sort last either way

    Select(browser.find_element(By.ID, "outcome")).select_by_value("error")
    assert sorted(row.split("/")[-1] for row in _shown(browser)) == ["fake.tif", "truncated.tif"]
    Select(browser.find_element(By.ID, "outcome")).select_by_value("")
    search = browser.find_element(By.ID, "filter")
    search.send_keys("run2")
    shown = _shown(browser)
    assert shown and all("run2" in row for row in shown) and len(shown) < len(rows)
    assert browser.find_element(By.ID, "count").text == f"{len(shown)} of {len(rows)} slides shown"

    state = browser.execute_script("return location.hash")  # the view survives a reload / a shared link
    assert "sort=-mean_score" in state and "q=run2" in state
    browser.get(page + state)
    assert _shown(browser) == shown


@pytest.mark.gui
def test_html_report_fits_a_1400_px_window_and_enlarges_thumbnails(batch, browser, tmp_path):
    """At 1400 × 900 the page never scrolls sideways and what a reviewer decides on — verdict, score,
    share lost, the files — is in view on every row; in a narrower window the table scrolls inside
    itself with the thumbnail and slide columns kept in place; pointing at a thumbnail enlarges it."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    report = tmp_path / "report"
    shutil.copytree(batch.out, report, symlinks=True)
    first = next(r for r in batch.records if not r.failed)
    usable = report / Path(first.map).relative_to(batch.out)
    assert CliRunner().invoke(app, ["usable", str(usable)]).exit_code == 0  # usable.png and .geojson
    records = [replace(r, map=str(report / Path(r.map).relative_to(batch.out))) for r in batch.records]
    write_reports(records, report, {"model": "default", "verdict_rule": "rule"})

    browser.set_window_size(1400, 900)
    browser.get((report / "report.html").resolve().as_uri())
    scroll_width, inner_width = browser.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth]"
    )
    assert scroll_width <= inner_width
    headings = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#slides thead th")]
    decisive = [headings.index(name) for name in ("verdict", "mean score", "below threshold or lost", "files")]
    for row in browser.find_elements(By.CSS_SELECTOR, "#slides tbody tr"):
        rights = browser.execute_script(
            "return arguments[0].map(i => arguments[1].cells[i].getBoundingClientRect().right)", decisive, row
        )
        assert max(rights) <= inner_width, (row.text[:60], rights)
    links = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "td.links a")]
    assert {"overview", "regions", "summary", "usable mask", "usable regions"} <= set(links)
    assert any(cell.text.endswith(" file") for cell in browser.find_elements(By.CSS_SELECTOR, "td.nowrap"))

    image = browser.find_element(By.CSS_SELECTOR, "td.picture img")
    ActionChains(browser).move_to_element(image).perform()
    preview = browser.find_element(By.ID, "preview")
    assert preview.is_displayed() and preview.size["width"] >= 400
    assert preview.get_attribute("src") == image.get_attribute("src")
    ActionChains(browser).move_to_element(browser.find_element(By.TAG_NAME, "h1")).perform()
    assert not preview.is_displayed()

    browser.set_window_size(800, 900)
    slide_cell = browser.find_element(By.CSS_SELECTOR, "#slides tbody td.slide")
    before = slide_cell.location["x"]
    scrolled = browser.execute_script(
        "const s = document.querySelector('.scroll'); s.scrollLeft = 10000; "
        "return [s.scrollLeft, document.documentElement.scrollWidth, window.innerWidth]"
    )
    assert scrolled[0] > 100 and scrolled[1] <= scrolled[2]  # the table scrolled, not the page
    assert slide_cell.location["x"] == before  # the slide column stayed


def test_the_report_says_where_each_slides_mpp_came_from(cohort, tmp_path):
    """A slide given its µm/px by the batch's table is told apart from one whose file says it."""
    table = {"cmu.svs": 0.499}
    result = run_batch([cohort / "run1"], tmp_path / "out", mpp_table=table, options=MapOptions(block=BLOCK), workers=1)
    sources = {Path(r.slide).name: r.mpp_from for r in result.records if not r.failed}
    assert sources == {"cmu.svs": "table", "case.tif": "file"}
    rows = list(csv.DictReader((tmp_path / "out" / "report.csv").read_text().splitlines()))
    assert {Path(row["slide"]).name: row["mpp_from"] for row in rows if row["status"] != "failed"} == sources


def test_a_scheduler_without_workers_is_a_clear_error_not_a_wait():
    """A reachable scheduler that never gets a worker: one error naming it and what to do."""
    from distributed import LocalCluster

    from slideiqa.execution.local import start_client
    from slideiqa.outputs.store import MapError

    with (
        LocalCluster(n_workers=0, processes=False, dashboard_address=None) as empty,
        pytest.raises(MapError, match=r"has no worker, and none joined within 1 s; start workers"),
    ):
        start_client(None, empty.scheduler_address, worker_wait_s=1)
