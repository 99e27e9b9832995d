"""The pieces of the paper-reproduction runner: grid choice, oversampling, imbalanced blood data, tables."""

import csv
import math
import shutil

import numpy as np
import pytest
from PIL import Image

from slideiqa_training.datasets import BuildConfig, ImageFolder, build_dataset
from slideiqa_training.grid_search import PAPER_GRID, Setting, choose_best, settings_from, validation_score
from slideiqa_training.profiles import ReproductionError, prepare_dataset, protocol_of
from slideiqa_training.reproduction import folds_of
from slideiqa_training.splits import cross_lab_splits, oversample
from slideiqa_training.tables import PAPER_TABLE1, PAPER_TABLE2, empty_cells, paper_layout, side_by_side

from paths import FIELDS, SMEARS

pytestmark = pytest.mark.training


def test_grid_search_picks_the_setting_with_the_best_validation_metric():
    # Constructed validation folds: the best mean is not the best single fold nor the first setting.
    folds = {
        Setting(0.001, 16, 0.2): [{"accuracy": 0.90, "loss": 0.9}, {"accuracy": 0.40, "loss": 1.4}],
        Setting(0.0001, 32, 0.2): [{"accuracy": 0.70, "loss": 0.6}, {"accuracy": 0.72, "loss": 0.5}],
        Setting(0.0001, 16, 0.5): [{"accuracy": 0.71, "loss": 0.7}, {"accuracy": float("nan"), "loss": 0.8}],
        Setting(0.001, 32, 0.5): [{"accuracy": float("nan"), "loss": float("nan")}] * 2,
    }
    accuracy = {s: validation_score(f, "accuracy") for s, f in folds.items()}
    assert accuracy[Setting(0.0001, 16, 0.5)] == pytest.approx(0.71)  # a NaN fold is ignored, not zero
    assert math.isnan(accuracy[Setting(0.001, 32, 0.5)])
    assert choose_best(accuracy, "accuracy") == Setting(0.0001, 32, 0.2)
    loss = {s: validation_score(f, "loss") for s, f in folds.items()}
    assert choose_best(loss, "loss") == Setting(0.0001, 32, 0.2)  # lower is better for loss
    # ties go to the setting listed first
    tied = {Setting(0.001, 16, 0.2): 0.5, Setting(0.0001, 16, 0.2): 0.5}
    assert choose_best(tied) == Setting(0.001, 16, 0.2)


def test_paper_grid_and_sub_grids():
    full = settings_from({})
    assert len(full) == 8 and set(full) == {
        Setting(a, b, c) for a in PAPER_GRID["lr"] for b in PAPER_GRID["batch_size"] for c in PAPER_GRID["dropout"]
    }
    sub = settings_from(
        {"settings": [{"lr": 1e-4, "batch_size": 32, "dropout": 0.2}, {"lr": 1e-3, "batch_size": 32, "dropout": 0.2}]}
    )
    assert sub == [Setting(1e-4, 32, 0.2), Setting(1e-3, 32, 0.2)]
    with pytest.raises(ValueError):
        settings_from({"settings": [{"lr": 1e-4, "batch_size": 32, "dropout": 0.2}] * 2})


def test_table_formatter_reproduces_the_papers_layout():
    # The paper's Tables 1 and 2, as printed (bold aside).
    table1 = (
        "| base | accuracy | precision | recall | AUC |\n"
        "|---|---|---|---|---|\n"
        "| MobileNet | 76.05 ± 1.74 | 76.34 ± 2.75 | 76.05 ± 1.74 | 86.85 ± 1.39 |\n"
        "| VGG16 | 78.91 ± 1.97 | 79.16 ± 2.17 | 78.91 ± 1.97 | 87.64 ± 1.82 |\n"
        "| ResNet50 | 76.97 ± 2.39 | 77.29 ± 2.67 | 76.97 ± 2.39 | 83.06 ± 3.38 |\n"
    )
    table2 = (
        "| base | accuracy | precision | recall | AUC |\n"
        "|---|---|---|---|---|\n"
        "| VGG16 | 99.49 ± 0.72 | 99.50 ± 0.70 | 99.49 ± 0.72 | 99.96 ± 0.07 |\n"
    )
    assert paper_layout({b: PAPER_TABLE1[b] for b in ("resnet50", "vgg16", "mobilenet_v2")}) == table1
    assert paper_layout(PAPER_TABLE2) == table2


def test_side_by_side_puts_the_papers_row_above_ours_and_flags_gaps():
    ours = {"accuracy": (0.5, 0.01), "precision": (0.4, 0.02), "recall": (0.5, 0.01), "auc": (float("nan"), 0.0)}
    text = side_by_side(
        [{"base": "vgg16", "label": "ours", "init": "random", "summary": ours}], PAPER_TABLE1, ("init",)
    )
    lines = text.splitlines()
    assert lines[2].startswith("| VGG16 | paper | — | 78.91 ± 1.97")
    assert lines[3] == "| VGG16 | ours | random | 50.00 ± 1.00 | 40.00 ± 2.00 | 50.00 ± 1.00 | undefined |"
    assert empty_cells(text) == []
    assert empty_cells("| a | b |\n|---|---|\n| 1 |  |\n| nan ± 0.00 | 2 |\n") == ["| 1 |  |", "| nan ± 0.00 | 2 |"]


def test_oversampling_balances_training_classes_only_by_repeating_them():
    labels = np.repeat([0, 1, 2, 3], [30, 12, 50, 8])
    train = np.arange(0, 100, 2)  # every other image
    sampled = oversample(train, labels, seed=1)
    assert set(sampled) == set(train)  # nothing outside the training indices
    counts = np.bincount(labels[sampled])
    assert (counts == np.bincount(labels[train]).max()).all()
    assert np.array_equal(oversample(train, labels, seed=1), sampled)  # seeded


def test_blood_dataset_with_class_shares_is_imbalanced(tmp_path):
    shares = (0.1, 0.2, 0.6, 0.1)
    folder = build_dataset(
        "blood",
        [FIELDS / "blood_smear.jpg"],
        tmp_path / "blood",
        BuildConfig(
            crops_per_source=120, crop_size=32, mpp=0.25, class_shares=shares, source_mpp={"blood_smear": 0.08}
        ),
    )
    dataset = ImageFolder(folder)
    share = np.bincount(dataset.targets, minlength=4) / len(dataset)
    assert dataset.classes == ["bad", "fair", "good", "excellent"]
    assert np.abs(share - np.array(shares)).max() < 0.12
    assert share[2] > 2 * max(share[0], share[3])


def _cut_into_fields(image_path, folder, count, size=(400, 300)):
    """A second "lab": fields cut side by side from one real smear photograph."""
    folder.mkdir(parents=True)
    with Image.open(image_path) as image:
        for index in range(count):
            left = index * (image.width - size[0]) // max(1, count - 1)
            image.crop((left, 0, left + size[0], size[1])).save(folder / f"field{index}.png")
    return folder


def _smear_config(tmp_path, data, folds=3, **protocol):
    return {
        "data": {"kind": "blood", "crops_per_source": 1, "crop_size": 96, "mpp": 0.13, "seed": 0, **data},
        "protocol": {"folds": folds, "group_by": "field", "every_lab_in_every_fold": True, **protocol},
        "_file": tmp_path / "model1.toml",
        "_data_root": None,
    }


def test_smear_dataset_has_one_graded_copy_per_field_and_every_lab_in_every_fold(tmp_path):
    cbc = _cut_into_fields(FIELDS / "blood_smear.jpg", tmp_path / "cbc", 6)
    config = _smear_config(
        tmp_path, {"sources": [str(SMEARS / "chula_rbc12"), str(cbc)], "source_mpp": {"chula_rbc12": 0.13, "cbc": 0.08}}
    )
    dataset = ImageFolder(prepare_dataset(config, tmp_path / "out", lambda line: None))
    assert len(dataset) == 12 and len(set(dataset.sources.tolist())) == 12  # one copy of each field
    assert sorted(set(dataset.labs.tolist())) == ["cbc", "chula_rbc12"]
    assert (dataset.labs == "cbc").sum() == 6
    # Two crops per field: the folds must then keep both crops of a field together.
    config["data"]["crops_per_source"] = 2
    dataset = ImageFolder(prepare_dataset(config, tmp_path / "out", lambda line: None))
    assert len(dataset) == 24 and len(set(dataset.sources.tolist())) == 12
    for split in folds_of(dataset, protocol_of(config)):
        assert set(dataset.labs[split.test].tolist()) == {"cbc", "chula_rbc12"}, split.fold
        assert set(dataset.labs[split.val].tolist()) == {"cbc", "chula_rbc12"}, split.fold
        assert not set(dataset.sources[split.test]) & set(
            np.concatenate([dataset.sources[split.train], dataset.sources[split.val]])
        )
    for split in cross_lab_splits(dataset.targets, dataset.sources, dataset.labs, val_folds=3):
        train_labs = set(dataset.labs[np.concatenate([split.train, split.val])].tolist())
        assert len(train_labs) == 1 and train_labs.isdisjoint(dataset.labs[split.test].tolist())


def test_catalogued_smear_groups_are_read_from_the_data_folder_with_their_scale(tmp_path):
    root = tmp_path / "shared"
    (root / "smears").mkdir(parents=True)
    shutil.copytree(SMEARS / "chula_rbc12", root / "smears" / "chula_rbc12")
    config = _smear_config(tmp_path, {"groups": ["chula_rbc12"]}, folds=2)
    with pytest.raises(ReproductionError, match=r"model1.toml: .*--data"):
        prepare_dataset(config, tmp_path / "out", lambda line: None)
    config["_data_root"] = root
    folder = prepare_dataset(config, tmp_path / "out", lambda line: None)
    dataset = ImageFolder(folder)
    assert set(dataset.labs.tolist()) == {"chula_rbc12"} and len(dataset) == 6
    # The catalogue's 0.13 µm/px is the dataset's own: a crop reads 96 px of the 640 px field, so its
    # corner may lie anywhere up to x = 544. Read with a 0.5 µm/px guess it would take 369 px (3.85×
    # shrunk) and its corner could not pass x = 271.
    with open(folder / "manifest.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert all(int(r["x"]) <= 640 - 96 for r in rows) and max(int(r["x"]) for r in rows) > 275
    config["data"]["groups"] = ["chula_rbc12", "no_such_group"]
    with pytest.raises(ReproductionError, match="unknown source group 'no_such_group'"):
        prepare_dataset(config, tmp_path / "out2", lambda line: None)


def test_one_base_of_a_profile_can_be_run_alone_and_an_unknown_one_is_named(tmp_path):
    from slideiqa_training.reproduction import reproduce

    with pytest.raises(ReproductionError, match=r"no \[bases.resnet18\] table; known: vgg16, mobilenet_v2, resnet50"):
        reproduce("smoke", tmp_path / "out", bases=("resnet18",))
    assert not (tmp_path / "out").exists()  # refused before anything was written
