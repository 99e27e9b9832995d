"""Every output's colours stay distinct for colour-blind readers: each label value of the shipped
models against every other, seen with normal vision and through Machado, Oliveira & Fernandes'
(2009) simulation of protanopia, deuteranopia and tritanopia, differ by a CIEDE2000 ΔE of at least
10 (the red → green palette before this one came down to 2.7: `good` and `motion` under protanopia)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from skimage.color import deltaE_ciede2000, rgb2lab

from slideiqa.models.card import load_card
from slideiqa.models.zoo import PRETRAINED, resolve_model
from slideiqa.outputs.palette import score_colours
from slideiqa.outputs.store import label_entries

#: Machado et al. 2009, severity 1.0, on linear RGB.
SIMULATIONS = {
    "normal vision": np.eye(3),
    "protanopia": np.array(
        [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]]
    ),
    "deuteranopia": np.array(
        [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]]
    ),
    "tritanopia": np.array(
        [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602], [0.004733, 0.691367, 0.303900]]
    ),
}
MIN_DELTA_E = 10.0


def seen(rgb: np.ndarray, simulation: np.ndarray) -> np.ndarray:
    """CIELAB of sRGB colours (N, 3) in 0–255 as a reader with ``simulation``'s vision sees them."""
    linear = rgb / 255.0
    linear = np.where(linear <= 0.04045, linear / 12.92, ((linear + 0.055) / 1.055) ** 2.4)
    simulated = np.clip(linear @ simulation.T, 0, 1)
    encoded = np.where(simulated <= 0.0031308, 12.92 * simulated, 1.055 * simulated ** (1 / 2.4) - 0.055)
    return rgb2lab(encoded[None])[0]


@pytest.mark.parametrize("model", sorted(PRETRAINED))
@pytest.mark.parametrize("vision", sorted(SIMULATIONS))
def test_every_label_colour_is_distinct(model, vision):
    classes = load_card(resolve_model(model)).classes
    names, colours = zip(*[(name, rgba[:3]) for value, name, rgba in label_entries(classes) if value > 0])
    lab = seen(np.asarray(colours, float), SIMULATIONS[vision])
    closest = min(
        (float(deltaE_ciede2000(lab[a], lab[b])), names[a], names[b])
        for a, b in itertools.combinations(range(len(names)), 2)
    )
    assert closest[0] >= MIN_DELTA_E, f"{closest[1]} and {closest[2]} look alike under {vision}: ΔE {closest[0]:.1f}"


@pytest.mark.parametrize("vision", sorted(SIMULATIONS))
def test_the_score_ramp_runs_one_way_in_lightness_on_each_side_and_its_ends_differ(vision):
    """Low and high scores must not meet in one colour for anyone: the ramp's two ends are far
    apart, and from its middle (yellow, the lightest) each half darkens steadily."""
    lab = seen(score_colours(np.linspace(0, 1, 101)), SIMULATIONS[vision])
    assert float(deltaE_ciede2000(lab[0], lab[-1])) >= 30
    lightness = lab[:, 0]
    top = int(np.argmax(lightness))
    assert 35 <= top <= 65
    assert np.all(np.diff(lightness[: top + 1]) > -0.5) and np.all(np.diff(lightness[top:]) < 0.5)
