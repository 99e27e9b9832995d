"""The per-slide shift of P(good): bounded, one-sided, and it keeps each tile's defect family."""

import numpy as np
import pytest

from slideiqa_training.slide_context import MAX_SHIFT, TARGET_GOOD, good_log_odds, shift_probabilities, slide_shift

pytestmark = pytest.mark.training


def test_a_slide_that_already_scores_well_is_left_alone():
    assert slide_shift(np.array([0.999, 0.995, 0.99, 0.3, 0.01])) == 0.0
    assert slide_shift(np.array([])) == 0.0


def test_a_low_scoring_slide_is_raised_until_its_best_tissue_looks_familiar():
    good = 1.0 / (1.0 + np.exp(-np.linspace(-1.0, 1.0, 101)))  # log-odds −1 … +1
    shift = slide_shift(good)
    assert np.isclose(shift, good_log_odds(np.array([TARGET_GOOD]))[0] - 0.8)
    shifted = shift_probabilities(np.column_stack([good, 1.0 - good]), shift)[:, 0]
    assert np.isclose(np.quantile(shifted, 0.9), TARGET_GOOD)
    assert np.all(np.diff(shifted) > 0)  # the slide's ranking is kept


def test_the_shift_is_bounded_so_a_slide_defective_throughout_stays_flagged():
    defocused = np.full(50, 1e-4)  # log-odds −9.2: every tile of the slide badly out of focus
    shift = slide_shift(defocused)
    assert shift == MAX_SHIFT
    assert shift_probabilities(np.column_stack([defocused, 1.0 - defocused]), shift)[:, 0].max() < 0.01


def test_defect_classes_keep_their_ratios_and_rows_sum_to_one():
    probabilities = np.array([[0.2, 0.6, 0.2, 0.0], [0.05, 0.05, 0.3, 0.6], [1.0, 0.0, 0.0, 0.0]])
    shifted = shift_probabilities(probabilities, 2.5)
    assert np.allclose(shifted.sum(1), 1.0)
    assert np.all(shifted[:, 0] >= probabilities[:, 0])
    assert np.allclose(shifted[0, 1:] / shifted[0, 1:].sum(), [0.75, 0.25, 0.0])
    assert shifted[1, 1:].argmax() == probabilities[1, 1:].argmax()
    assert np.allclose(shift_probabilities(probabilities, 0.0), probabilities)


def test_the_three_slide_contexts_of_the_generalisation_measurement():
    from slideiqa_training.generalisation import CLASSES, TileSet
    from slideiqa_training.slide_context_measure import measure_in_context

    # An unseen source: sharp tiles at P(good) 0.2–0.4 (ranked right, placed too low), defocused ones
    # at 0.001–0.01, other libraries' defocus too.
    rng = np.random.default_rng(0)
    good = np.r_[rng.uniform(0.2, 0.4, 40), rng.uniform(0.001, 0.01, 40)]
    families = np.array(["none"] * 40 + ["defocus"] * 40)
    makers = np.array(["none"] * 40 + ["slideiqa"] * 20 + ["opencv"] * 20)
    probabilities = np.zeros((80, len(CLASSES)))
    probabilities[:, 0], probabilities[:, 1] = good, 1.0 - good
    tiles = TileSet(
        np.zeros((80, 1, 1, 3), np.uint8),
        (families != "none").astype(int),
        np.array(["g"] * 80),
        np.arange(80),
        families,
        np.array(["k"] * 80),
        np.zeros(80),
        makers,
    )
    m = measure_in_context("g", tiles, probabilities)
    assert m.raw.sharp_pass == 0.0 and m.sharp_slide.sharp_pass == 1.0
    assert 0.0 < m.sharp_slide_shift <= MAX_SHIFT and m.mostly_defective_shift <= MAX_SHIFT
    assert m.sharp_slide.flagged["defocus"] == 1.0  # defects far below the sharp tiles stay flagged
    # A slide defocused throughout gets the largest shift, and log-odds −4.6 … −6.9 plus 4 stay below 0.
    assert m.defective_throughout["defocus"] == (1.0, 1.0)
