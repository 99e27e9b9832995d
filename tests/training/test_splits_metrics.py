import numpy as np
import pytest

from slideiqa_training.metrics import classification_metrics, format_mean_std, good_vs_bad_auc, summarize
from slideiqa_training.splits import SplitError, cross_lab_splits, five_fold_splits

pytestmark = pytest.mark.training


@pytest.mark.parametrize("grouped", [False, True])
def test_splits_are_disjoint_stratified_and_test_each_sample_once(grouped):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2, 3], [100, 60, 200, 40])
    groups = np.repeat(np.arange(len(labels) // 2), 2) if grouped else None
    if grouped:
        labels = np.repeat(rng.permutation(np.repeat([0, 1, 2, 3], [50, 30, 100, 20])), 2)
    splits = five_fold_splits(labels, groups, 5, seed=1)
    tested = np.concatenate([s.test for s in splits])
    assert np.array_equal(np.sort(tested), np.arange(len(labels)))
    overall = np.bincount(labels) / len(labels)
    for split in splits:
        parts = [set(split.train), set(split.val), set(split.test)]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert len(split.train) + len(split.val) + len(split.test) == len(labels)
        assert len(split.test) / len(labels) == pytest.approx(0.2, abs=0.03)
        assert len(split.train) / len(labels) == pytest.approx(0.6, abs=0.03)
        share = np.bincount(labels[split.test], minlength=4) / len(split.test)
        assert np.abs(share - overall).max() < 0.04
        if grouped:
            train_groups, test_groups = set(groups[split.train]), set(groups[split.test])
            assert not train_groups & test_groups


def test_metrics_on_a_case_worked_by_hand():
    """Six images, three classes, two mistakes: every figure below is counted by hand, not taken from
    the library the metrics module itself calls."""
    labels = np.array([0, 0, 1, 1, 2, 2])
    probabilities = np.array(
        [
            [0.7, 0.2, 0.1],  # 0 → 0
            [0.3, 0.6, 0.1],  # 0 → 1 (wrong)
            [0.2, 0.7, 0.1],  # 1 → 1
            [0.1, 0.8, 0.1],  # 1 → 1
            [0.1, 0.2, 0.7],  # 2 → 2
            [0.5, 0.1, 0.4],
        ]
    )  # 2 → 0 (wrong)
    result = classification_metrics(labels, probabilities)
    assert result["accuracy"] == pytest.approx(4 / 6)
    # precision per predicted class: 0 → 1 of {0, 5}, 1 → 2 of {1, 2, 3}, 2 → 1 of {4}; equal supports
    assert result["precision"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert result["recall"] == pytest.approx((1 / 2 + 2 / 2 + 1 / 2) / 3)  # support-weighted recall = accuracy
    # one-vs-rest AUC, pairs ranked right: class 0 7 of 8 (0.3 < 0.5), classes 1 and 2 all 8
    assert result["auc"] == pytest.approx((7 / 8 + 1 + 1) / 3)


def test_binary_auc_and_good_vs_bad():
    labels = np.array([0, 0, 1, 1, 1])
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.35, 0.65], [0.2, 0.8], [0.7, 0.3]])
    # positives 0.65, 0.8, 0.3 against negatives 0.1, 0.6: 2 + 2 + 1 of 6 pairs ranked right
    assert classification_metrics(labels, probabilities)["auc"] == pytest.approx(5 / 6)
    assert good_vs_bad_auc(labels, probabilities, good_index=1) == pytest.approx(5 / 6)
    # good = class 0 scored by P(class 0): 0.9 and 0.4 against 0.35, 0.2, 0.7: 3 + 2 of 6 pairs
    assert good_vs_bad_auc(labels, probabilities, good_index=0) == pytest.approx(5 / 6)


def test_summary_mean_std_and_paper_format():
    folds = [
        {"accuracy": 0.8, "precision": 0.7, "recall": 0.8, "auc": 0.9},
        {"accuracy": 0.6, "precision": 0.7, "recall": 0.6, "auc": 0.7},
    ]
    summary = summarize(folds)
    assert summary["accuracy"] == pytest.approx((0.7, 0.1))
    assert format_mean_std(*summary["accuracy"]) == "70.00 ± 10.00"


def _two_labs(rng):
    """600 fields of lab a and 300 of lab b, two copies of each field, grades drawn per field."""
    fields = np.arange(900)
    labs = np.where(fields < 600, "a", "b")
    grades = rng.choice(4, size=900, p=[0.15, 0.25, 0.35, 0.25])
    return np.repeat(grades, 2), np.repeat(fields, 2), np.repeat(labs, 2)


def test_with_labs_every_fold_holds_every_lab_in_its_own_grade_mix_and_fields_never_cross():
    labels, fields, labs = _two_labs(np.random.default_rng(4))
    splits = five_fold_splits(labels, fields, 5, seed=0, labs=labs)
    tested = np.concatenate([s.test for s in splits])
    assert np.array_equal(np.sort(tested), np.arange(len(labels)))
    for split in splits:
        assert not set(fields[split.train]) & set(fields[split.test])
        assert not set(fields[split.val]) & (set(fields[split.train]) | set(fields[split.test]))
        for lab in ("a", "b"):
            in_lab = labs == lab
            share = in_lab[split.test].sum() / in_lab.sum()
            assert share == pytest.approx(0.2, abs=0.02), (split.fold, lab)
            grades = np.bincount(labels[split.test][in_lab[split.test]], minlength=4) / in_lab[split.test].sum()
            assert np.abs(grades - np.bincount(labels[in_lab], minlength=4) / in_lab.sum()).max() < 0.05


def test_a_small_lab_is_in_every_fold_and_a_lab_too_small_for_that_is_refused():
    # 5 fields of lab b among 405: each fold must test exactly one of them.
    labels = np.tile([0, 1, 2, 3], 102)[:405]
    fields = np.arange(405)
    labs = np.where(fields < 400, "a", "b")
    with_labs = five_fold_splits(labels, fields, 5, seed=0, labs=labs)
    assert all((labs[s.test] == "b").sum() == 1 for s in with_labs)
    with pytest.raises(SplitError, match="lab 'b' has 3 images"):
        five_fold_splits(labels[:403], fields[:403], 5, seed=0, labs=labs[:403])


def test_cross_lab_splits_train_on_one_lab_and_test_on_the_other_only():
    labels, fields, labs = _two_labs(np.random.default_rng(5))
    splits = cross_lab_splits(labels, fields, labs, seed=0)
    assert [s.key for s in splits] == ["train-a-test-b", "train-b-test-a"]
    for split, (train_lab, test_lab) in zip(splits, [("a", "b"), ("b", "a")]):
        assert set(labs[split.train]) == {train_lab} and set(labs[split.val]) == {train_lab}
        assert set(labs[split.test]) == {test_lab}
        assert np.array_equal(split.test, np.flatnonzero(labs == test_lab))
        assert not set(fields[split.train]) & set(fields[split.val])
        assert len(split.val) / (labs == train_lab).sum() == pytest.approx(0.2, abs=0.02)
    with pytest.raises(SplitError, match="needs two labs"):
        cross_lab_splits(labels, fields, np.full(len(labels), "a"))
