import csv
import json

import numpy as np
import pytest
from PIL import Image

from slideiqa_training.datasets import BLOOD_CLASSES, BuildConfig, DatasetError, ImageFolder, build_dataset
from slideiqa_training.sources import SourceError, find_sources, open_source, tissue_fraction

from paths import CMU_SLIDE, FIELDS

pytestmark = pytest.mark.training

SMALL = BuildConfig(crops_per_source=6, crop_size=64, seed=3)


def _manifest(root):
    with open(root / "manifest.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_cytology_style_has_every_reference_plus_one_copy_per_seed_family(tmp_path):
    root = build_dataset("cytology", [FIELDS / "ihc_colon.png", CMU_SLIDE], tmp_path / "cyto", SMALL)
    rows = _manifest(root)
    assert len(rows) == 2 * 6 * 5
    references = {row["reference"] for row in rows}
    assert len(references) == 12
    for reference in references:
        copies = sorted(row["family"] for row in rows if row["reference"] == reference)
        assert copies == ["defocus", "jpeg", "motion", "noise", "none"]
    dataset = ImageFolder(root)
    assert dataset.classes == ["good", "bad"]
    assert np.bincount(dataset.targets).tolist() == [12, 48]
    assert set(dataset.sources) == {"ihc_colon", "cmu_small_region"}
    image, label = dataset[0]
    assert image.shape == (3, 64, 64) and label == 0


def test_blood_style_has_four_ordered_classes_graded_by_severity(tmp_path):
    config = BuildConfig(crops_per_source=40, crop_size=64, seed=0)
    root = build_dataset("blood", [FIELDS / "blood_smear.jpg"], tmp_path / "blood", config)
    dataset = ImageFolder(root)
    assert dataset.classes == list(BLOOD_CLASSES)  # ordinal order, not alphabetical
    rows = _manifest(root)
    severity = {label: [float(r["severity"]) for r in rows if r["label"] == label] for label in BLOOD_CLASSES}
    assert all(severity[label] for label in BLOOD_CLASSES)
    # Worse grades have strictly higher severities.
    assert max(severity["excellent"]) < min(severity["good"]) <= max(severity["good"]) < min(severity["fair"])
    assert max(severity["fair"]) < min(severity["bad"])


def test_crops_contain_tissue(tmp_path):
    source = open_source(CMU_SLIDE)
    assert (source.width, source.height) == (2220, 2967)
    assert tissue_fraction(np.full((64, 64, 3), 242, np.uint8)) == 0.0
    root = build_dataset("cytology", [CMU_SLIDE], tmp_path / "c", BuildConfig(8, 128, seed=1, min_tissue=0.5))
    for path in (root / "good").iterdir():
        assert tissue_fraction(np.asarray(Image.open(path))) >= 0.5


def test_own_labelled_folder_without_manifest(tmp_path):
    for label, value in (("sharp", 120), ("blurry", 200)):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.fromarray(np.full((32, 32, 3), value + i, np.uint8)).save(tmp_path / label / f"{i}.png")
    (tmp_path / "blurry" / "notes.txt").write_text("ignored")
    dataset = ImageFolder(tmp_path)
    assert dataset.classes == ["blurry", "sharp"] and len(dataset) == 6


def test_bad_inputs_name_the_thing_and_the_cause(tmp_path):
    (tmp_path / "empty" / "good").mkdir(parents=True)
    with pytest.raises(DatasetError, match="empty: no images found"):
        ImageFolder(tmp_path / "empty")
    with pytest.raises(SourceError, match="no images found in"):
        find_sources([tmp_path / "empty" / "good"])
    broken = tmp_path / "data" / "good" / "broken.png"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DatasetError, match="broken.png: unreadable image"):
        ImageFolder(tmp_path / "data")[0]
    with pytest.raises(SourceError, match="broken.png: not a slide or image"):
        open_source(broken)
    with pytest.raises(DatasetError, match="unknown dataset kind 'xray'"):
        build_dataset("xray", [], tmp_path / "x", SMALL)


def test_fine_sources_are_shrunk_towards_the_dataset_scale():
    from slideiqa_training.datasets import source_downsample

    blood = open_source(FIELDS / "blood_smear.jpg")  # 1226×652 px at about 0.08 µm/px
    config = BuildConfig(crop_size=224, mpp=0.5, source_mpp={"blood_smear": 0.08})
    # 0.5 / 0.08 = 6.25×, but a 652 px high field only allows 652 / (1.25 × 224) = 2.33×.
    assert source_downsample(blood, config) == pytest.approx(652 / 280)
    assert source_downsample(open_source(CMU_SLIDE), config) == pytest.approx(1.0, abs=0.01)  # 0.499 from metadata
    coarse = BuildConfig(crop_size=224, mpp=0.5, source_mpp={"blood_smear": 1.0})
    assert source_downsample(blood, coarse) == 1.0  # never upsampled


def test_a_field_without_enough_matter_is_left_out_and_listed_not_fatal(tmp_path):
    glass = tmp_path / "glass.png"
    Image.fromarray(np.full((300, 300, 3), 244, np.uint8)).save(glass)
    folder = build_dataset("cytology", [FIELDS / "he_tumour_target.png", glass], tmp_path / "out", SMALL)
    summary = json.loads((folder / "classes.json").read_text())
    assert (
        len(summary["skipped_sources"]) == 1 and "glass.png: no crop with ≥ 30% tissue" in summary["skipped_sources"][0]
    )
    assert {row["source"] for row in _manifest(folder)} == {"he_tumour_target"}
    with pytest.raises(DatasetError, match="no source gave a crop; .*glass.png"):
        build_dataset("cytology", [glass], tmp_path / "only_glass", SMALL)
