"""slideiqa map end to end: real slides, real OpenSlide, real Dask, real Zarr."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zarr
from PIL import Image

from slideiqa import map_slide, open_map
from slideiqa.io.slide import file_checksum
from slideiqa.outputs.store import FIXED_LABELS, UNREADABLE, MapError, is_quality_map

from paths import CMU_SLIDE, DEFOCUS_BOX, FIELDS, FIXTURES, NOISE_BOX, ROOT
from slides import truncated_copy
from support import slideiqa_process

PEN = FIXED_LABELS["pen"]

ARRAYS = ("score", "probs", "label", "tissue", "cell_score", "cell_label", "cell_probs")


def _box_mask(shape, box):
    mask = np.zeros(shape, bool)
    mask[box[0] : box[2], box[1] : box[3]] = True
    return mask


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


@pytest.mark.parametrize("mapped", ["phantom_map", "unseen_phantom_map"])
def test_spatial_fidelity_of_defocus_and_noise_rectangles(mapped, request):
    """On the phantom (tissue the shipped model trained on) and on its twin of a source it never saw."""
    quality = open_map(request.getfixturevalue(mapped).path)
    label, classes = quality.array("label"), quality.classes
    tissue = label > 0
    assert tissue.mean() > 0.8
    defocus = _box_mask(label.shape, DEFOCUS_BOX)
    noise = _box_mask(label.shape, NOISE_BOX)
    predicted = {name: label == classes.index(name) + 1 for name in classes}
    assert _iou(predicted["defocus"] & tissue, defocus & tissue) >= 0.7
    assert _iou(predicted["noise"] & tissue, noise & tissue) >= 0.7
    outside = tissue & ~defocus & ~noise
    assert _iou(predicted["good"] & tissue, outside) >= 0.7
    score = quality.array("score")
    assert np.nanmean(score[outside]) > 0.5 > np.nanmean(score[defocus | noise])


def test_map_metadata_summary_and_reports(phantom_map, phantom):
    quality = open_map(phantom_map.path)
    attributes = quality.attributes
    assert quality.complete and attributes["status"] == "complete"
    assert attributes["slide"]["mpp"] == pytest.approx(0.5) and len(attributes["slide"]["checksum"]) == 64
    assert attributes["grid"]["shape"] == [8, 8] and attributes["grid"]["tile_um"] == pytest.approx(112)
    assert attributes["model"]["classes"][0] == "good" and attributes["version"]
    summary = json.loads((phantom_map.path / "summary.json").read_text())
    assert summary["tissue_tiles"] == int((quality.array("label") > 0).sum())
    assert sum(summary["share_per_class"].values()) == pytest.approx(1.0)
    assert summary["verdict"] == "fail"  # 18 of 64 tiles are defective
    assert summary["tiles_per_s"] > 0
    regions = json.loads((phantom_map.path / "regions.geojson").read_text())
    classes = {f["properties"]["classification"]["name"] for f in regions["features"]}
    assert {"defocus", "noise"} <= classes
    biggest = max(
        (f for f in regions["features"] if f["properties"]["classification"]["name"] == "defocus"),
        key=lambda f: f["properties"]["measurements"]["tiles"],
    )
    xs = [x for x, _ in biggest["geometry"]["coordinates"][0]]
    assert min(xs) == pytest.approx(224) and max(xs) == pytest.approx(4 * 224)  # level-0 pixels
    overview = Image.open(phantom_map.path / "overview.png")
    assert overview.size[0] >= 600


def test_the_whole_map_is_valid_ngff_0_5_with_its_labels_where_the_spec_puts_them(phantom_map):
    """The validator sees the map's root as an NGFF 0.5 image (the score) whose labels group holds the
    class image-label; the other images validate too. A root without ``ome``, or labels beside the
    image instead of under it, fails here."""
    from ome_zarr_models import open_ome_zarr
    from ome_zarr_models.v05.image import Image
    from ome_zarr_models.v05.image_label import ImageLabel

    root = open_ome_zarr(zarr.open_group(str(phantom_map.path), mode="r"), version="0.5")
    assert isinstance(root, Image)
    assert root.labels is not None and root.labels.ome_attributes.labels == ["class"]
    image_label = open_ome_zarr(zarr.open_group(str(phantom_map.path / "labels" / "class"), mode="r"), version="0.5")
    assert isinstance(image_label, ImageLabel)
    values = {entry.label_value for entry in image_label.ome_attributes.image_label.colors}
    assert {0, 1, PEN, UNREADABLE} <= values
    for name in ("probs", "tissue"):
        assert isinstance(open_ome_zarr(zarr.open_group(str(phantom_map.path / name), mode="r"), version="0.5"), Image)


def test_ome_zarr_reads_the_score_and_finds_its_labels_in_micrometres(phantom_map):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    location = parse_url(str(phantom_map.path))
    assert location.version == "0.5"
    nodes = list(Reader(location)())
    score, labels = nodes[0], [node for node in nodes if node.metadata.get("name") == "class"]
    assert score.data[0].shape == open_map(phantom_map.path).array("score").shape
    assert labels, "the class labels are not found from the score image"
    for node in (score, labels[0]):
        transforms = node.metadata["coordinateTransformations"][0]
        assert transforms[0] == {"type": "scale", "scale": pytest.approx([112.0, 112.0])}
        assert [axis.get("unit") for axis in node.metadata["axes"] if axis["type"] == "space"] == ["micrometer"] * 2


def test_plain_png_field_needs_mpp_and_then_maps(tmp_path):
    field = FIELDS / "he_tumour_target.png"
    with pytest.raises(Exception, match="pixel size unknown.*--mpp"):
        map_slide(field, tmp_path / "a.quality.zarr")
    assert not (tmp_path / "a.quality.zarr").exists()
    result = map_slide(field, tmp_path / "b.quality.zarr", mpp=0.5)
    assert open_map(result.path).array("score").shape == (5, 5)


def test_resume_after_kill_gives_identical_arrays(phantom, phantom_map, tmp_path):
    out = tmp_path / "killed.quality.zarr"
    script = (
        "import time, sys\n"
        "from slideiqa import map_slide\n"
        "map_slide(sys.argv[1], sys.argv[2], block=4, progress=lambda done, total: time.sleep(1.0))\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script, str(phantom), str(out)])
    deadline = time.time() + 120
    while time.time() < deadline:
        if (out / "progress").exists() and np.asarray(zarr.open_group(str(out), mode="r")["progress"][...]).sum() >= 2:
            break
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    partial = open_map(out)
    assert not partial.complete and not (out / "summary.json").exists()
    done_before = int(np.asarray(partial.group["progress"][...]).sum())
    assert 2 <= done_before < 4
    resumed = map_slide(phantom, out, block=4)
    assert resumed.resumed_blocks == done_before
    reference = open_map(phantom_map.path)
    for name in ARRAYS:
        np.testing.assert_array_equal(open_map(out).array(name), reference.array(name), err_msg=name)


def test_complete_map_is_not_recomputed_and_other_settings_need_overwrite(phantom, phantom_map, tmp_path):
    again = map_slide(phantom, phantom_map.path, block=4)
    assert again.skipped
    with pytest.raises(MapError, match=r"other settings \(min_tissue, tissue_mask\); use --overwrite"):
        map_slide(phantom, phantom_map.path, block=4, use_tissue_mask=False)


def test_a_slide_changed_past_its_first_64_mib_is_noticed(tmp_path):
    # The same size, the same first 64 MiB: only the end differs, as when a scanner rewrites a slide's
    # last tiles or a copy was cut short and padded. The map must not be taken as complete.
    slide = tmp_path / "big.svs"
    slide.write_bytes(CMU_SLIDE.read_bytes() + bytes(70 << 20))
    out = tmp_path / "big.quality.zarr"
    assert map_slide(slide, out).summary.tissue_tiles > 0
    with open(slide, "r+b") as handle:
        handle.seek(68 << 20)
        handle.write(b"changed")
    with pytest.raises(MapError, match="the slide file has changed since; use --overwrite"):
        map_slide(slide, out)
    assert map_slide(slide, out, overwrite=True).summary.tissue_tiles > 0


def test_checksum_of_a_large_file_samples_it_end_to_end(tmp_path):
    path = tmp_path / "large.bin"
    path.write_bytes(bytes(10 << 20))
    sampled = dict(whole_below=1 << 20, blocks=11, block_size=64 << 10)
    before = file_checksum(path, **sampled)
    for offset in (0, 5 << 20, (10 << 20) - 1):  # first, a middle sampled block, last byte
        data = bytearray(path.read_bytes())
        data[offset] = 1
        path.write_bytes(bytes(data))
        assert file_checksum(path, **sampled) != before
        path.write_bytes(bytes(10 << 20))
    assert file_checksum(path, **sampled) == before


def test_never_clobbers_something_that_is_not_a_map(tmp_path):
    precious = tmp_path / "precious.quality.zarr"
    precious.mkdir()
    (precious / "data.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(MapError, match="not a slideiqa quality map"):
            map_slide(CMU_SLIDE, precious, overwrite=overwrite)
    assert (precious / "data.txt").read_text() == "keep me"


def _one_error_line(result, *fragments):
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def _cli(*args):
    return slideiqa_process(*args, timeout=600)


def test_cli_maps_the_sample_slide(tmp_path):
    result = _cli("map", CMU_SLIDE, "-o", tmp_path / "cmu.quality.zarr", "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "verdict" in result.stdout and "tissue tiles" in result.stdout
    quality = open_map(tmp_path / "cmu.quality.zarr")
    assert quality.complete and quality.array("score").shape == (14, 10)


@pytest.mark.parametrize(
    "make, cause",
    [
        (lambda d: d / "missing.svs", "no such file"),
        (lambda d: FIXTURES / "unreadable.svs", "cannot decode the region"),
        (lambda d: FIXTURES / "unopenable.tiff", "Unsupported TIFF compression"),
        (lambda d: (d / "zero.svs").write_bytes(b"") or d / "zero.svs", "empty file"),
        (lambda d: (d / "notes.txt").write_text("not a slide") and d / "notes.txt", "not a slide or image"),
        (
            lambda d: (d / "blank.png", Image.new("RGB", (900, 900), (243, 243, 241)).save(d / "blank.png"))[0],
            "no tissue found",
        ),
    ],
)
def test_bad_input_one_line_error_and_no_output(tmp_path, make, cause):
    slide = make(tmp_path)
    out = tmp_path / "out.quality.zarr"
    _one_error_line(_cli("map", slide, "-o", out, "--mpp", "0.5"), cause, slide.name)
    assert not out.exists()


def test_truncated_slide_fails_and_leaves_no_complete_looking_map(tmp_path, phantom):
    cut = truncated_copy(phantom, tmp_path / "cut.tif", 0.5)
    out = tmp_path / "cut.quality.zarr"
    result = _cli("map", cut, "-o", out)
    _one_error_line(result, "cut.tif", "the file is truncated", "copy it again")
    assert not (out / "summary.json").exists()
    if out.exists():
        assert not open_map(out).complete


def test_existing_cluster_by_scheduler_address(phantom, phantom_map, tmp_path):
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None) as cluster:
        result = map_slide(phantom, tmp_path / "remote.quality.zarr", block=4, scheduler=cluster.scheduler_address)
    reference = open_map(phantom_map.path)
    for name in ARRAYS:
        np.testing.assert_allclose(open_map(result.path).array(name), reference.array(name), atol=1e-5, err_msg=name)


def test_slide_coarser_than_the_model_is_refused(tmp_path):
    with pytest.raises(MapError, match="coarser than the 0.5 µm/px"):
        map_slide(FIELDS / "ihc_colon.png", tmp_path / "x.quality.zarr", mpp=1.0)
    assert not (tmp_path / "x.quality.zarr").exists()


def test_openslide_fixtures_multilevel_tiff_and_two_file_dicom(tmp_path):
    boxes = map_slide(FIXTURES / "boxes.tiff", tmp_path / "boxes.quality.zarr", mpp=0.5, use_tissue_mask=False)
    quality = open_map(boxes.path)
    assert quality.array("score").shape == (2, 2) and quality.complete  # 300×250 px at 0.5 µm/px, 224 px tiles
    assert (quality.array("label") > 0).all() and not np.isnan(quality.array("score")).any()
    dicom = map_slide(FIXTURES / "boxes_0.dcm", tmp_path / "dicom.quality.zarr", use_tissue_mask=False)
    assert open_map(dicom.path).attributes["slide"]["mpp"] == pytest.approx(0.499)
    assert open_map(dicom.path).array("probs").shape[1:] == (1, 1)


def test_unknown_model_is_one_line_and_leaves_no_output(tmp_path):
    out = tmp_path / "out.quality.zarr"
    _one_error_line(_cli("map", CMU_SLIDE, "-o", out, "--model", "no-such-model"), "unknown model 'no-such-model'")
    assert not out.exists()


def test_overwrite_recomputes_a_complete_map(phantom, phantom_map, tmp_path):
    out = tmp_path / "again.quality.zarr"
    map_slide(phantom, out, block=4)
    redone = map_slide(phantom, out, block=4, overwrite=True)
    assert not redone.skipped and redone.resumed_blocks == 0 and open_map(out).complete
    np.testing.assert_array_equal(open_map(out).array("label"), open_map(phantom_map.path).array("label"))


def test_a_map_killed_while_its_store_is_created_never_blocks_a_rerun(tmp_path):
    # kill -9 the moment anything appears in the output folder, i.e. while the store is being made:
    # the output path is then absent or a slideiqa map, never a half-made folder that blocks reruns.
    out = tmp_path / "cmu.quality.zarr"
    process = subprocess.Popen(
        [sys.executable, "-m", "slideiqa.cli.app", "map", str(CMU_SLIDE), "-o", str(out)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not any(tmp_path.iterdir()) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.0005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists() or is_quality_map(out), sorted(os.listdir(out))
    for overwrite in (False, True):
        assert map_slide(CMU_SLIDE, out, overwrite=overwrite).summary.tissue_tiles > 0
    assert [p.name for p in tmp_path.iterdir()] == [out.name], "the killed run's leftovers are cleared"


def test_two_runs_writing_one_map_at_once_end_cleanly(tmp_path):
    # Each run either completes the map or loses the race with a one-line error; the map is whole.
    out = tmp_path / "cmu.quality.zarr"
    command = [sys.executable, "-m", "slideiqa.cli.app", "map", str(CMU_SLIDE), "-o", str(out)]
    runs = [
        subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for run in runs:
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 0 or (
            run.returncode == 1 and len(stderr.strip().splitlines()) == 1 and stderr.startswith(f"error: {out}")
        ), stderr[-2000:]
    assert any(run.returncode == 0 for run in runs)
    again = map_slide(CMU_SLIDE, out)
    assert again.skipped and again.summary.tissue_tiles > 0
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_a_map_of_the_older_layout_is_refused_with_the_way_out(phantom, phantom_map, tmp_path):
    """Maps written before the NGFF-root layout (score, label, probs, tissue side by side) cannot be
    read as the new ones: opening or resuming one says so and how to remake it; --overwrite does."""
    import shutil

    old = tmp_path / "old.quality.zarr"
    shutil.copytree(phantom_map.path, old)
    root = zarr.open_group(str(old), mode="r+")
    root.attrs["slideiqa"] = {key: value for key, value in root.attrs["slideiqa"].items() if key != "layout"}
    with pytest.raises(MapError, match=r"older slideiqa \(layout 1.*--overwrite"):
        open_map(old)
    with pytest.raises(MapError, match="--overwrite"):
        map_slide(phantom, old, block=4)
    assert map_slide(phantom, old, block=4, overwrite=True).summary.tissue_tiles == phantom_map.summary.tissue_tiles
    assert open_map(old).attributes["layout"] == 2


def test_a_map_runs_blas_on_one_thread_and_gives_the_limit_back():
    """The block threads already fill the cores: a measurement's matrix product must not start BLAS
    threads of its own under them (they busy-wait between calls), and the caller's BLAS is as it was."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from slideiqa.execution.local import ThreadRunner

    def blas_threads() -> list[int]:
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        assert before and set(before) == {2}
        runner = ThreadRunner(2)
        try:
            inside = runner.submit(blas_threads).result()
        finally:
            runner.close()
        assert set(inside) == {1}
        assert blas_threads() == before
