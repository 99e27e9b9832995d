"""Leave-one-source-out: splits that never leak the held-out source, per-fold teachers, saved predictions."""

import numpy as np
import pytest

from slideiqa_training.datasets import BuildConfig, ImageFolder, build_dataset
from slideiqa_training.experiments import (
    ModelSpec,
    Teaching,
    leave_one_source_out,
    source_split,
    train_fold_teacher,
)
from slideiqa_training.trainer import TrainConfig

from paths import CMU_SLIDE, FIELDS

pytestmark = pytest.mark.training

SPEC = ModelSpec("iqanet", input_size=48, augment="lossless")
QUICK = TrainConfig(epochs=1, batch_size=16, lr=1e-3, progress=False)


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory) -> ImageFolder:
    root = tmp_path_factory.mktemp("loso") / "data"
    build_dataset("defects", [FIELDS / "he_tumour_target.png", CMU_SLIDE], root, BuildConfig(5, 48, seed=2))
    return ImageFolder(root)


def test_source_split_keeps_the_held_out_source_in_test_only(two_sources):
    sources = two_sources.sources
    for held_out in sorted(set(sources)):
        train, val, test = source_split(two_sources, held_out, seed=0)
        assert set(test) == set(np.flatnonzero(sources == held_out))
        assert not set(train) & set(val) and not (set(train) | set(val)) & set(test)
        assert len(train) + len(val) + len(test) == len(two_sources)
        # Distorted copies of one reference stay on one side of the train/validation line.
        groups = two_sources.groups
        assert not set(groups[train]) & set(groups[val])


def test_each_fold_gets_its_own_teacher_and_keeps_its_predictions(two_sources, tmp_path):
    asked = []

    def teaching_for(held_out: str) -> Teaching:
        asked.append(held_out)
        path = train_fold_teacher(two_sources, held_out, SPEC, QUICK, tmp_path / "teachers" / f"without-{held_out}")
        return Teaching(path, 0.5, 2.0)

    records = leave_one_source_out(
        two_sources, SPEC, QUICK, teaching_for=teaching_for, predictions_dir=tmp_path / "predictions"
    )
    held = sorted(set(two_sources.sources))
    assert asked == held and [r["held_out"] for r in records] == held
    for record in records:
        saved = np.load(tmp_path / "predictions" / f"{record['held_out']}.npz")
        assert np.array_equal(saved["indices"], np.flatnonzero(two_sources.sources == record["held_out"]))
        assert np.array_equal(saved["labels"], two_sources.targets[saved["indices"]])
        assert np.allclose(saved["probabilities"].sum(1), 1.0, atol=1e-5)
        assert record["images"] == len(saved["indices"]) == int(np.sum(record["confusion"]))
        card = (tmp_path / "teachers" / f"without-{record['held_out']}.json").read_text()
        assert f"trained without {record['held_out']}" in card


def test_a_fold_teacher_already_trained_is_reused(two_sources, tmp_path):
    held_out = sorted(set(two_sources.sources))[0]
    path = train_fold_teacher(two_sources, held_out, SPEC, QUICK, tmp_path / "teacher")
    stamp = (tmp_path / "teacher.safetensors").stat().st_mtime_ns
    assert train_fold_teacher(two_sources, held_out, SPEC, QUICK, tmp_path / "teacher") == path
    assert (tmp_path / "teacher.safetensors").stat().st_mtime_ns == stamp
