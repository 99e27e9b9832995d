"""The paper's 5-fold protocol: 60 % train, 20 % validation, 20 % test, every sample tested once.

The data is cut into five stratified folds; run *k* tests on fold *k*, validates on fold *k+1* and
trains on the other three. When images share a reference (the distorted copies of one crop) or a field,
the folds are made by that group (StratifiedGroupKFold), so no copy of a test image is seen in training.
When the images come from several labs, each lab is cut into folds on its own and fold *k* is the union
of the labs' folds *k*: every fold then holds every lab in its own class proportions, so no test fold
measures one lab only. ``cross_lab_splits`` is the opposite control: train on one lab, test on another.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import KFold, StratifiedGroupKFold, StratifiedKFold

from slideiqa.errors import SlideIQAError


class SplitError(SlideIQAError):
    """The data cannot be split as asked; the message says why."""


@dataclass(frozen=True)
class Split:
    fold: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    #: A split that is not one of the k folds (e.g. ``train-labA-test-labB``) is named; a fold is not.
    name: str = ""

    @property
    def key(self) -> str:
        """What the split's results are filed under."""
        return self.name or f"fold{self.fold}"


def _fold_members(labels: np.ndarray, groups: np.ndarray | None, n_folds: int, seed: int) -> list[np.ndarray]:
    """Indices of each of ``n_folds`` stratified folds; grouped when images share a group."""
    placeholder = np.zeros(len(labels))
    if groups is not None and len(set(groups)) < len(groups):
        if len(set(groups)) < n_folds:
            raise SplitError(
                f"{n_folds} folds need at least {n_folds} independent images or fields; there are {len(set(groups))}"
            )
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        return [test for _, test in splitter.split(placeholder, labels, groups)]
    if np.bincount(labels).max() < n_folds:
        # Too few images of every class to stratify (a small lab): plain folds, still each one filled.
        splitter = KFold(n_splits=n_folds, shuffle=True, random_state=seed)
    else:
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return [test for _, test in splitter.split(placeholder, labels)]


def five_fold_splits(
    labels: np.ndarray,
    groups: np.ndarray | None = None,
    n_folds: int = 5,
    seed: int = 0,
    labs: np.ndarray | None = None,
) -> list[Split]:
    """The k-fold protocol; with ``labs`` (one name per image) every fold holds every lab."""
    labels = np.asarray(labels)
    if n_folds < 3:
        raise SplitError(f"the protocol needs at least 3 folds (test, validation, training), not {n_folds}")
    counts = np.bincount(labels)
    if counts[counts > 0].min() < n_folds:
        raise SplitError(
            f"{n_folds}-fold splits need at least {n_folds} images of every class; "
            f"the smallest class has {counts[counts > 0].min()}"
        )
    if labs is None or len(set(labs)) < 2:
        folds = _fold_members(labels, groups, n_folds, seed)
    else:
        labs = np.asarray(labs)
        folds = [np.array([], dtype=int) for _ in range(n_folds)]
        for lab in sorted(set(labs.tolist())):
            members = np.flatnonzero(labs == lab)
            if len(members) < n_folds:
                raise SplitError(f"lab {lab!r} has {len(members)} images; every lab needs at least {n_folds}")
            lab_groups = None if groups is None else np.asarray(groups)[members]
            for k, part in enumerate(_fold_members(labels[members], lab_groups, n_folds, seed)):
                folds[k] = np.concatenate([folds[k], members[part]])
    splits = []
    for k in range(n_folds):
        val_fold = (k + 1) % n_folds
        train = np.concatenate([folds[j] for j in range(n_folds) if j not in (k, val_fold)])
        splits.append(Split(k, np.sort(train), np.sort(folds[val_fold]), np.sort(folds[k])))
    return splits


def cross_lab_splits(
    labels: np.ndarray, groups: np.ndarray | None, labs: np.ndarray, seed: int = 0, val_folds: int = 5
) -> list[Split]:
    """For every ordered pair of labs: train on one lab (one fold in ``val_folds`` of it held back
    for validation, grouped and stratified as the k-fold protocol), test on every image of the other.
    Validation thus takes as large a share of the training lab as in the k-fold runs.

    It asks what the k-fold protocol cannot: does a model graded on one microscope's fields judge
    another's?
    """
    labels, labs = np.asarray(labels), np.asarray(labs)
    names = sorted(set(labs.tolist()))
    if len(names) < 2:
        raise SplitError(f"a cross-lab control needs two labs; the data has {len(names)}")
    splits: list[Split] = []
    for train_lab in names:
        members = np.flatnonzero(labs == train_lab)
        lab_groups = None if groups is None else np.asarray(groups)[members]
        val = members[_fold_members(labels[members], lab_groups, val_folds, seed)[0]]
        train = np.setdiff1d(members, val)
        for test_lab in (name for name in names if name != train_lab):
            splits.append(
                Split(
                    len(splits),
                    np.sort(train),
                    np.sort(val),
                    np.flatnonzero(labs == test_lab),
                    name=f"train-{train_lab}-test-{test_lab}",
                )
            )
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
    extra = [
        rng.choice(indices[labels == label], largest - count, replace=True)
        for label, count in zip(*np.unique(labels, return_counts=True))
        if count < largest
    ]
    return np.sort(np.concatenate([indices, *extra])) if extra else np.sort(indices)
