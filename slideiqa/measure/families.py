"""What every measured family shares: setting one class's probability from a measurement, and the
record of how it was made that a map keeps in its attributes."""

from __future__ import annotations

from typing import Any

import numpy as np


def set_class_probability(
    probabilities: np.ndarray, index: int, values: np.ndarray, keep: tuple[int, ...] = ()
) -> np.ndarray:
    """``probabilities`` (tiles × classes) with class ``index`` set to ``values`` and the other
    classes rescaled to the rest, keeping their ratios (shared evenly where they were all zero);
    the classes ``keep`` names (measured already) keep their probabilities as they are. With ``keep``,
    ``values`` may not exceed what the kept classes leave (1 − their sum): the free classes share the
    rest, and there must be at least one."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    free = [i for i in range(probabilities.shape[1]) if i != index and i not in keep]
    kept = probabilities[:, list(keep)].sum(axis=1)
    if keep and (not free or (values + kept > 1.0 + 1e-6).any()):
        raise ValueError("with classes kept, a class's probability can only take what they leave, from free classes")
    rest = probabilities[:, free]
    total = rest.sum(axis=1, keepdims=True)
    even = np.full_like(rest, 1.0 / len(free))
    room = np.maximum(1.0 - values - kept, 0.0)
    judged = probabilities.copy()
    judged[:, index] = values
    judged[:, free] = np.where(total > 1e-12, rest / np.maximum(total, 1e-12), even) * room[:, None]
    return judged


def replace_class(probabilities: np.ndarray, classes: list[str], name: str, values: np.ndarray) -> np.ndarray:
    """``probabilities`` (tiles × classes) with class ``name`` set to the measured ``values`` and the
    others rescaled to the rest, keeping their ratios; unchanged for a model without that class."""
    if name not in classes:
        return probabilities
    return set_class_probability(probabilities, classes.index(name), values).astype(np.float32)


def how_measured(measured: bool, **how: Any) -> dict[str, Any]:
    """How a map's P(family) was made, for its attributes: ``{"measured": False}`` where the network's
    own probability stands, else ``{"measured": True}`` and ``how`` (the estimator or rule and its
    thresholds), so that a map says which rule judged it."""
    return {"measured": True, **how} if measured else {"measured": False}
