"""The seed's hyper-parameter grid search for model 1: settings, and choosing one on validation folds.

The paper tunes learning rate × batch size × head dropout for every base and keeps the setting with
the best validation result; the test folds never take part in the choice. A profile may search a
sub-grid (an explicit list of settings) where the full product costs too much compute.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: The paper's grid.
PAPER_GRID = {"lr": (0.001, 0.0001), "batch_size": (16, 32), "dropout": (0.2, 0.5)}
#: Metrics where lower is better; every other metric is maximised.
LOWER_IS_BETTER = {"loss"}


@dataclass(frozen=True, order=True)
class Setting:
    lr: float
    batch_size: int
    dropout: float

    @property
    def name(self) -> str:
        return f"lr{self.lr:g}_bs{self.batch_size}_do{self.dropout:g}"

    def as_dict(self) -> dict[str, float | int]:
        return {"lr": self.lr, "batch_size": self.batch_size, "dropout": self.dropout}


def expand_grid(lr: Sequence[float], batch_size: Sequence[int], dropout: Sequence[float]) -> list[Setting]:
    """Every combination, in the order the paper lists the axes."""
    return [Setting(float(a), int(b), float(c)) for a, b, c in itertools.product(lr, batch_size, dropout)]


def settings_from(spec: Mapping) -> list[Setting]:
    """Settings of one base from a config table: an explicit ``settings`` list of
    ``{lr, batch_size, dropout}`` tables (a sub-grid), or the product of ``lr``, ``batch_size`` and
    ``dropout`` lists (the paper's grid by default)."""
    if "settings" in spec:
        settings = [Setting(float(s["lr"]), int(s["batch_size"]), float(s["dropout"])) for s in spec["settings"]]
    else:
        settings = expand_grid(
            spec.get("lr", PAPER_GRID["lr"]),
            spec.get("batch_size", PAPER_GRID["batch_size"]),
            spec.get("dropout", PAPER_GRID["dropout"]),
        )
    if not settings:
        raise ValueError("a base needs at least one hyper-parameter setting")
    if len(set(settings)) != len(settings):
        raise ValueError("the same hyper-parameter setting is listed twice")
    return settings


def validation_score(folds: Iterable[Mapping[str, float]], metric: str) -> float:
    """Mean of ``metric`` over the validation folds of one setting; NaN folds are ignored."""
    values = [float(fold[metric]) for fold in folds]
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def choose_best(scores: Mapping[Setting, float], metric: str = "accuracy") -> Setting:
    """The setting with the best validation score (NaN never wins).

    Ties go to the setting listed first, so the outcome does not depend on floating-point noise in
    the order runs finished.
    """
    if not scores:
        raise ValueError("no settings to choose from")
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    best, best_value = None, -math.inf
    for setting, value in scores.items():
        if math.isnan(value):
            continue
        if sign * value > best_value:
            best, best_value = setting, sign * value
    return best if best is not None else next(iter(scores))
