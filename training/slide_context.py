"""A tile judged against its own slide: a bounded per-slide shift of P(good).

A model that has never seen a lab's stain or scanner can still *rank* that lab's tiles right (sharp
above defective) while placing all of them too low: the unseen look lowers every tile's log-odds of
being good by about the same amount. That is a property of the slide, not of a tile, so it is
corrected per slide: the slide's best tissue (its ``REFERENCE_QUANTILE`` of good log-odds) is moved
up to where a good tile of a known source sits (``TARGET_GOOD``), and every tile of the slide is moved
by the same amount.

The shift only ever raises P(good), and never by more than ``MAX_SHIFT`` log-odds: a slide that is
defective throughout (defocused everywhere, say) has no good tissue to find, and its best tiles would
otherwise be taken for good. How far a defect scores below sharp tissue, measured on held-out sources,
decides whether that bound keeps whole-slide defects flagged (``docs/model/default-model.md``).

The defect classes keep their proportions, so the family a tile is given does not change.

Tried and not adopted for maps (``docs/history.md``): on held-out sources the shift lets every
sharp tile of an unseen IHC slide pass, but the same shift lets a third of its exposure errors pass
too, and on a slide defective throughout it lets up to 60 % of the defects through.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, logit

from slideiqa.measure.families import set_class_probability

#: Which of a slide's tissue tiles stands for its good tissue (the best tenth of it).
REFERENCE_QUANTILE = 0.9
#: Where that tile is put: P(good) of a sharp tile of a familiar source.
TARGET_GOOD = 0.98
#: The largest shift, in log-odds (× 55 in odds).
MAX_SHIFT = 4.0
_EPS = 1e-7


def good_log_odds(good: np.ndarray) -> np.ndarray:
    return logit(np.clip(np.asarray(good, dtype=np.float64), _EPS, 1.0 - _EPS))


def slide_shift(
    tissue_good: np.ndarray,
    quantile: float = REFERENCE_QUANTILE,
    target: float = TARGET_GOOD,
    max_shift: float = MAX_SHIFT,
) -> float:
    """The log-odds shift of one slide from P(good) of its tissue tiles (0 for a slide without tissue)."""
    if len(tissue_good) == 0:
        return 0.0
    reference = float(np.quantile(good_log_odds(tissue_good), quantile))
    return float(np.clip(good_log_odds(np.array([target]))[0] - reference, 0.0, max_shift))


def shift_probabilities(probabilities: np.ndarray, shift: float, good_index: int = 0) -> np.ndarray:
    """Class probabilities (tiles × classes) with P(good)'s log-odds raised by ``shift``; the other
    classes are scaled together, so they keep their ratios and still sum to 1 with P(good)."""
    good = np.asarray(probabilities, dtype=np.float64)[:, good_index]
    # The maximum keeps P(good) = 1 at 1 (its log-odds are clipped to finite values).
    return set_class_probability(probabilities, good_index, np.maximum(good, expit(good_log_odds(good) + shift)))
