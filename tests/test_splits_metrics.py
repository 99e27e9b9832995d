import numpy as np
import pytest

from slideiqa_training.metrics import classification_metrics, format_mean_std, good_vs_bad_auc, summarize
from slideiqa_training.splits import five_fold_splits


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
    probabilities = np.array([[0.7, 0.2, 0.1],   # 0 → 0
                              [0.3, 0.6, 0.1],   # 0 → 1 (wrong)
                              [0.2, 0.7, 0.1],   # 1 → 1
                              [0.1, 0.8, 0.1],   # 1 → 1
                              [0.1, 0.2, 0.7],   # 2 → 2
                              [0.5, 0.1, 0.4]])  # 2 → 0 (wrong)
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
    folds = [{"accuracy": 0.8, "precision": 0.7, "recall": 0.8, "auc": 0.9},
             {"accuracy": 0.6, "precision": 0.7, "recall": 0.6, "auc": 0.7}]
    summary = summarize(folds)
    assert summary["accuracy"] == pytest.approx((0.7, 0.1))
    assert format_mean_std(*summary["accuracy"]) == "70.00 ± 10.00"
