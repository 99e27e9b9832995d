"""The paper's 5-fold protocol: 60 % train, 20 % validation, 20 % test, every sample tested once.

The data is cut into five stratified folds; run *k* tests on fold *k*, validates on fold *k+1* and
trains on the other three. When images share a reference (the distorted copies of one crop), the
folds are made by reference (StratifiedGroupKFold), so no copy of a test image is seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from slideiqa.errors import SlideIQAError


class SplitError(SlideIQAError):
    """The data cannot be split as asked; the message says why."""


@dataclass(frozen=True)
class Split:
    fold: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def five_fold_splits(
    labels: np.ndarray, groups: np.ndarray | None = None, n_folds: int = 5, seed: int = 0
) -> list[Split]:
    labels = np.asarray(labels)
    counts = np.bincount(labels)
    if counts[counts > 0].min() < n_folds:
        raise SplitError(f"{n_folds}-fold splits need at least {n_folds} images of every class; "
                         f"the smallest class has {counts[counts > 0].min()}")
    placeholder = np.zeros(len(labels))
    if groups is not None and len(set(groups)) < len(groups):
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        folds = [test for _, test in splitter.split(placeholder, labels, groups)]
    else:
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        folds = [test for _, test in splitter.split(placeholder, labels)]
    splits = []
    for k in range(n_folds):
        val_fold = (k + 1) % n_folds
        train = np.concatenate([folds[j] for j in range(n_folds) if j not in (k, val_fold)])
        splits.append(Split(k, np.sort(train), np.sort(folds[val_fold]), np.sort(folds[k])))
    return splits


def oversample(indices: np.ndarray, labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Training indices with minority classes repeated (drawn with replacement) up to the largest class.

    The seed's second ablation: every class is then seen equally often per epoch. Only training
    indices are oversampled; validation and test folds keep the true class balance.
    """
    indices = np.asarray(indices)
    labels = np.asarray(labels)[indices]
    rng = np.random.default_rng(seed)
    largest = np.bincount(labels).max()
    extra = [rng.choice(indices[labels == label], largest - count, replace=True)
             for label, count in zip(*np.unique(labels, return_counts=True)) if count < largest]
    return np.sort(np.concatenate([indices, *extra])) if extra else np.sort(indices)
