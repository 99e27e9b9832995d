"""The paper's metrics: accuracy, support-weighted precision and recall, AUC; mean ± std over folds."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score

METRICS = ("accuracy", "precision", "recall", "auc")


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Metrics of predicted class probabilities (N, C) against integer labels.

    AUC is the ROC AUC of the positive class for two classes and the macro one-vs-rest AUC for more.
    A class absent from ``labels`` leaves AUC undefined (NaN) rather than raising.
    """
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predicted = probabilities.argmax(axis=1)
    n_classes = probabilities.shape[1]
    result = {
        "accuracy": accuracy_score(labels, predicted),
        "precision": precision_score(labels, predicted, average="weighted", zero_division=0),
        "recall": recall_score(labels, predicted, average="weighted", zero_division=0),
    }
    try:
        if n_classes == 2:
            result["auc"] = roc_auc_score(labels, probabilities[:, 1])
        else:
            normalised = probabilities / probabilities.sum(axis=1, keepdims=True)
            result["auc"] = roc_auc_score(labels, normalised, multi_class="ovr", labels=list(range(n_classes)))
    except ValueError:
        result["auc"] = float("nan")
    return {key: float(value) for key, value in result.items()}


def good_vs_bad_auc(labels: np.ndarray, probabilities: np.ndarray, good_index: int) -> float:
    """AUC of P(good) as a score separating good images from all defect classes."""
    is_good = np.asarray(labels) == good_index
    return float(roc_auc_score(is_good, np.asarray(probabilities)[:, good_index]))


def summarize(folds: Iterable[dict[str, float]], keys: Sequence[str] = METRICS) -> dict[str, tuple[float, float]]:
    """Mean and (population) standard deviation of each metric over folds."""
    folds = list(folds)
    return {key: (float(np.mean([f[key] for f in folds])), float(np.std([f[key] for f in folds]))) for key in keys}


def format_mean_std(mean: float, std: float) -> str:
    """``78.91 ± 1.97``: percentages with two decimals, the paper's layout."""
    return f"{100 * mean:.2f} ± {100 * std:.2f}"
