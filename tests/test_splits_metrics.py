import numpy as np
import pytest
from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score

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


def test_metrics_equal_scikit_learn():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 300)
    probabilities = rng.dirichlet(np.ones(4), 300)
    probabilities[np.arange(300), labels] += rng.random(300)  # better than chance, not perfect
    probabilities /= probabilities.sum(1, keepdims=True)
    predicted = probabilities.argmax(1)
    result = classification_metrics(labels, probabilities)
    assert result["accuracy"] == pytest.approx(accuracy_score(labels, predicted))
    assert result["precision"] == pytest.approx(precision_score(labels, predicted, average="weighted"))
    assert result["recall"] == pytest.approx(recall_score(labels, predicted, average="weighted"))
    assert result["auc"] == pytest.approx(roc_auc_score(labels, probabilities, multi_class="ovr"))
    assert 0.3 < result["accuracy"] < 0.95


def test_binary_auc_and_good_vs_bad():
    labels = np.array([0, 0, 1, 1, 1])
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.35, 0.65], [0.2, 0.8], [0.7, 0.3]])
    assert classification_metrics(labels, probabilities)["auc"] == pytest.approx(roc_auc_score(labels, probabilities[:, 1]))
    assert good_vs_bad_auc(labels, probabilities, good_index=1) == pytest.approx(roc_auc_score(labels == 1, probabilities[:, 1]))


def test_summary_mean_std_and_paper_format():
    folds = [{"accuracy": 0.8, "precision": 0.7, "recall": 0.8, "auc": 0.9},
             {"accuracy": 0.6, "precision": 0.7, "recall": 0.6, "auc": 0.7}]
    summary = summarize(folds)
    assert summary["accuracy"] == pytest.approx((0.7, 0.1))
    assert format_mean_std(*summary["accuracy"]) == "70.00 ± 10.00"
