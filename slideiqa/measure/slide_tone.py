"""A tile's tone judged against the rest of its slide: exposure errors a single tile cannot show.

Why a slide is needed. A wrong tone curve turns every pixel's optical density OD into γ·OD, which is
exactly what γ times the dye does (Beer–Lambert), and the good tiles of ten labs span a factor of two
in stain density. So a gamma or a clipped tone curve cannot be told from a stain of another strength
in one tile (``docs/model/default-model.md``). Within one slide, though, the stain, the scanner's white point
and its glass are nearly constant, so a tile whose tone departs from its own slide's stands out.

What is compared. Three measurements of each tissue tile, each one that a tone error moves and the
tissue under it moves little:

* ``glass`` — the median luminance of its grey pixels (glass or mounting medium between the tissue),
  where there are enough of them;
* ``stain_density`` — log₂ of the 90th percentile of its pixels' optical density summed over RGB.
  A quantile scales exactly as a tone curve scales every density; a median of the pixels above a
  stain cut does not, since a paler curve drops pixels below the cut and raises the median of the
  rest (HistoPrep's pale copies were missed that way);
* ``white_point`` — the 99.5th percentile of its brightest channel, in tiles without glass (with
  glass, it is the glass).

Each is compared with the slide's tissue tiles by a robust z-score: the distance from their median in
units of their spread (1.4826 × the median absolute deviation, so a normal spread is its σ), where the
spread is never taken below a floor of what the measurement itself varies by on a steady slide (JPEG,
sensor noise). The median and the spread ignore a minority of defective tiles, so a slide with some
blurred or noisy tissue still has a sound reference. A slide with a wide spread of tissue (fat beside
dense epidermis) gets a wide tolerance; a steady one a narrow one.

How it judges. A tile whose largest z passes :data:`DEPARTURE_Z` departs from its slide: its P(good)
is capped at 1 − P(departs), and what is taken goes to exposure. Nothing else moves, so a tile already
called blurred or noisy keeps its family. The cap is idempotent: judging a judged map again changes
nothing.

The other way round, a tile whose tone *fits* its slide closely — glass and stain density both
measured, within :data:`FIT_GLASS_Z` and :data:`FIT_DENSITY_Z` of the slide's — on a slide whose own
glass is what a calibrated scanner writes (:data:`CALIBRATED_GLASS`) has no exposure error: its glass
is the slide's glass. Its P(exposure) is then capped at 1 − P(fits) (logistic steps as wide as the
departure's) and the other classes keep their ratios, as measured noise and motion replace the
network's. That is what fat and featureless eosin need (white vacuoles or pale pink that a network
trained without them calls over-exposed; Aperio's sharp tiles 0.68 → 0.92 held out). A tile that
fits neither way keeps its probabilities exactly, and clearing is idempotent too. Cells are judged
as their tile: exposure is the scan's, not a cell's.

What it cannot do. A slide that is wrongly exposed *throughout* is its own reference and passes this
check; only the network's own exposure class (which catches gain and flat exposure errors well: they
clip or darken the glass out of :data:`CALIBRATED_GLASS`, so nothing is cleared there) and a reference
of the lab's own slides can judge it. A wrong tone curve throughout leaves the glass calibrated, and
clearing costs the network's few flags on it (γ ½ and 2 at ±1 EV: 0.16 → 0.09 and 0.44 → 0.40 of
tiles on average). :func:`_glass_exposure` names a slide whose glass is out of the calibrated range,
and :func:`cohort_deviation` compares each slide of a batch with the others the same way, for the
batch report. The thresholds were set on physical
grounds, and their effect is measured on held-out sources in ``docs/model/default-model.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy.special import expit

from slideiqa.measure.block_means import block_means
from slideiqa.measure.families import set_class_probability

#: The measurements, in the order of a tone array's first axis.
TONE_FEATURES = ("glass", "stain_density", "white_point")
#: The least spread each measurement is given (grey levels; log₂ of density; grey levels): what one
#: varies by between neighbouring tiles of a steady slide (sensor noise, JPEG, a few nuclei more).
SPREAD_FLOORS = np.array([3.0, 0.12, 3.0])
#: A tile departs from its slide beyond this robust z-score (P(departs) = ½ there).
DEPARTURE_Z = 4.0
#: Width of the step from "fits" to "departs", in z units.
DEPARTURE_SOFTNESS = 0.25
#: A tile fits its slide when its glass and its stain density are both measured and within these
#: robust z-scores of the slide's (the density's wider: tissue varies in it more than glass does).
FIT_GLASS_Z, FIT_DENSITY_Z = 1.0, 1.5
#: Exposure is cleared only on a slide whose median glass a calibrated scanner writes: within 1 EV of
#: white in linear light (sRGB 188 is half of white's light) and not clipped (as ``tissue``'s rule).
CALIBRATED_GLASS = (188.0, 250.0)
#: Excesses over a cap smaller than this are left alone: they are the float rounding of an earlier
#: judgement (departing and fitting each move a hair of the other's share), and acting on them would
#: make judging a judged map again change its last bits.
FLOAT_NOISE = 1e-6
#: Fewer tiles with a measurement than this, and the slide gives no reference for it; fewer mapped
#: slides than MIN_COHORT_SLIDES, and a batch gives none of its own.
MIN_CONTEXT_TILES, MIN_COHORT_SLIDES = 10, 5
#: Tone is read on the means of SUBSAMPLE × SUBSAMPLE pixels (it is not a fine-scale property).
SUBSAMPLE = 4
#: A pixel is glass (or mounting medium) when its channels are within this many grey levels and it
#: is brighter than GLASS_MIN_LUMINANCE (the dimmest good glass here, a camera's, is at 134; black
#: pixels of dense or darkened tissue are grey too, and are not glass).
GREY_SPREAD, GLASS_MIN_LUMINANCE = 10, 96
#: A pixel is stained when its optical density summed over RGB is above this (low enough that a
#: tile's stained pixels stay stained under a tone curve halving every density).
STAINED_OD = 0.15
#: The quantile of a tile's summed optical densities that stands for its stain density.
DENSITY_QUANTILE = 0.9
#: Least share of a tile's sampled pixels that must be glass to measure its glass, and stained to
#: measure its density (above 1 − DENSITY_QUANTILE, so that the quantile lies in the tissue).
MIN_GLASS_SHARE, MIN_STAINED_SHARE = 0.01, 0.15
#: Optical densities are summed in steps of 1 / DENSITY_STEP (fine beside :data:`SPREAD_FLOORS`).
DENSITY_STEP = 100
_DENSITY_STEPS = np.rint(-np.log10(np.clip(np.arange(256), 1, 255) / 255.0) * DENSITY_STEP).astype(np.int16)
_DENSITY_BINS = int(_DENSITY_STEPS[0]) * 3 + 1


def _histogram_quantiles(
    values: np.ndarray, masks: np.ndarray, bins: int, quantile: float, min_count: int
) -> np.ndarray:
    """Per row of small non-negative integers ``values`` (< ``bins``), the ``quantile`` of those where
    ``masks``, as a bin index; NaN where fewer than ``min_count``. One histogram per row, all of them
    in one ``bincount``, since a loop of per-tile medians would cost more than the network."""
    rows = np.broadcast_to(np.arange(len(values))[:, None] * bins, values.shape)
    counts = np.bincount((rows + values)[masks], minlength=len(values) * bins).reshape(len(values), bins)
    cumulative = counts.cumsum(axis=1)
    totals = cumulative[:, -1]
    position = (cumulative >= np.maximum(quantile * totals, 1)[:, None]).argmax(axis=1).astype(np.float64)
    return np.where(totals >= min_count, position, np.nan)


class SampledPixels(NamedTuple):
    """Every ``SUBSAMPLE``-th pixel of each tile along each axis, channel by channel, (N, pixels)
    uint8 each, with each pixel's brightest and darkest channel: what tone and exposure measure."""

    red: np.ndarray
    green: np.ndarray
    blue: np.ndarray
    brightest: np.ndarray
    darkest: np.ndarray


def sampled_pixels(tiles: np.ndarray, step: int = SUBSAMPLE) -> SampledPixels:
    """:class:`SampledPixels` of (N, H, W, 3) uint8 ``tiles`` (tone is not a fine-scale property)."""
    sampled = np.asarray(tiles)[:, ::step, ::step]
    count = len(sampled)
    # Channel by channel: reductions over a last axis of three are several times slower in NumPy.
    red, green, blue = (np.ascontiguousarray(sampled[..., channel]).reshape(count, -1) for channel in range(3))
    return SampledPixels(
        red, green, blue, np.maximum(np.maximum(red, green), blue), np.minimum(np.minimum(red, green), blue)
    )


def tone_features(tiles: np.ndarray) -> np.ndarray:
    """(N, 3) float32 :data:`TONE_FEATURES` of (N, H, W, 3) uint8 ``tiles``, read on the means of
    their :data:`SUBSAMPLE` × :data:`SUBSAMPLE` pixels (``block_means``: every 4th pixel carries the
    decoder's fine detail); NaN where a tile has too little glass (or stain) to measure."""
    red, green, blue, brightest, darkest = sampled_pixels(block_means(tiles, SUBSAMPLE), step=1)
    count, per_tile = red.shape
    channel_sum = red.astype(np.int32) + green + blue  # 3 × luminance, 0–765
    grey = ((brightest - darkest) < GREY_SPREAD) & (channel_sum > 3 * GLASS_MIN_LUMINANCE)
    density = _DENSITY_STEPS[red].astype(np.int32) + _DENSITY_STEPS[green] + _DENSITY_STEPS[blue]
    features = np.empty((count, len(TONE_FEATURES)), np.float32)
    features[:, 0] = _histogram_quantiles(channel_sum, grey, 766, 0.5, max(1, int(MIN_GLASS_SHARE * per_tile))) / 3
    quantile = _histogram_quantiles(
        np.minimum(density, _DENSITY_BINS - 1), np.ones_like(grey), _DENSITY_BINS, DENSITY_QUANTILE, 1
    )
    stained_share = (density > STAINED_OD * DENSITY_STEP).mean(axis=1)
    with np.errstate(divide="ignore"):
        features[:, 1] = np.where(stained_share >= MIN_STAINED_SHARE, np.log2(quantile / DENSITY_STEP), np.nan)
    white_point = _histogram_quantiles(brightest.astype(np.int32), np.ones_like(grey), 256, 0.995, 1)
    # With glass in the tile its brightest pixels are glass, whose level is measured above; a tile
    # full of tissue has a lower white point by nature, so it is compared only with its likes.
    features[:, 2] = np.where(np.isnan(features[:, 0]), white_point, np.nan)
    return features


@dataclass(frozen=True)
class ToneReference:
    """A slide's tone: per measurement, the median of its tissue tiles and the spread allowed about
    it (NaN where too few tiles have the measurement)."""

    median: np.ndarray
    spread: np.ndarray

    @classmethod
    def of(cls, context: np.ndarray, min_count: int = MIN_CONTEXT_TILES) -> ToneReference:
        """The reference of ``context`` (M, 3): the tone measurements of a slide's tissue tiles (or
        of a batch's slides, each by its own medians), NaN where fewer than ``min_count`` have one."""
        context = np.asarray(context, dtype=np.float64).reshape(-1, len(TONE_FEATURES))
        median, spread = np.full(len(TONE_FEATURES), np.nan), np.full(len(TONE_FEATURES), np.nan)
        for column, floor in enumerate(SPREAD_FLOORS):
            values = context[:, column][np.isfinite(context[:, column])]
            if len(values) >= min_count:
                median[column] = np.median(values)
                spread[column] = np.hypot(1.4826 * np.median(np.abs(values - median[column])), floor)
        return cls(median, spread)

    def to_dict(self) -> dict[str, dict[str, float | None]]:
        return {
            name: {
                "median": None if np.isnan(m) else round(float(m), 4),
                "spread": None if np.isnan(s) else round(float(s), 4),
            }
            for name, m, s in zip(TONE_FEATURES, self.median, self.spread)
        }


def _reference(features: np.ndarray, context: np.ndarray | ToneReference | None) -> ToneReference:
    return context if isinstance(context, ToneReference) else ToneReference.of(features if context is None else context)


def tone_z(features: np.ndarray, context: np.ndarray | ToneReference | None = None) -> np.ndarray:
    """(N, 3) robust z-scores of ``features`` against ``context`` (the slide's tissue tiles'
    measurements, or their reference; ``features`` themselves by default); NaN where either lacks
    the measurement."""
    features = np.asarray(features, dtype=np.float64)
    reference = _reference(features, context)
    with np.errstate(invalid="ignore"):
        return np.abs(features - reference.median) / reference.spread


def tone_deviation(features: np.ndarray, context: np.ndarray | ToneReference | None = None) -> np.ndarray:
    """Per tile of ``features`` (N, 3), its largest robust z-score against ``context`` (as
    :func:`tone_z`); 0 where nothing can be compared."""
    return np.nan_to_num(tone_z(features, context), nan=0.0).max(axis=1, initial=0.0)


def _glass_exposure(glass: float | None) -> str | None:
    """What a slide's median glass level says of its exposure as a whole: "over-exposed" where it is
    clipped, "under-exposed" where it is more than 1 EV below white, None where it is what a
    calibrated scanner writes (:data:`CALIBRATED_GLASS`) or the slide has no glass to tell by. A
    slide exposed wrongly throughout is its own reference, so this is all its tiles can say of it."""
    if glass is None or not np.isfinite(glass):
        return None
    if glass >= CALIBRATED_GLASS[1]:
        return "over-exposed"
    return "under-exposed" if glass < CALIBRATED_GLASS[0] else None


def glass_warning(glass: float | None) -> str | None:
    """What a slide's median glass level calls for a warning of (:func:`_glass_exposure`), as "glass is
    at … the whole slide may be over-exposed"; None where it calls for none."""
    exposed = _glass_exposure(glass)
    if not exposed:
        return None
    low, high = CALIBRATED_GLASS
    return (
        f"glass is at {glass:.0f} grey levels, outside the {low:.0f}–{high:.0f} a calibrated scanner writes: "
        f"the whole slide may be {exposed}"
    )


def fit_probability(features: np.ndarray, context: np.ndarray | ToneReference | None = None) -> np.ndarray:
    """P(a tile's tone fits its slide so closely that an exposure error is ruled out), per tile of
    ``features`` (N, 3): glass and stain density both measured and within :data:`FIT_GLASS_Z` and
    :data:`FIT_DENSITY_Z` (logistic steps as wide as the departure's, so that a reference moved a
    little by a few tiles more or less moves a tile's judgement a little), on a slide whose glass is
    in :data:`CALIBRATED_GLASS`; 0 elsewhere."""
    features = np.asarray(features, dtype=np.float64)
    reference = _reference(features, context)
    glass = reference.median[TONE_FEATURES.index("glass")]
    if not np.isfinite(glass) or _glass_exposure(glass):  # no glass to tell by, or not calibrated
        return np.zeros(len(features))
    z = np.nan_to_num(tone_z(features, reference), nan=np.inf)
    limits = {"glass": FIT_GLASS_Z, "stain_density": FIT_DENSITY_Z}
    return np.prod(
        [expit((limit - z[:, TONE_FEATURES.index(name)]) / DEPARTURE_SOFTNESS) for name, limit in limits.items()],
        axis=0,
    )


def departure_probability(deviation: np.ndarray) -> np.ndarray:
    """P(a tile's tone departs from its slide's) from its robust z-score."""
    return expit((np.asarray(deviation, dtype=np.float64) - DEPARTURE_Z) / DEPARTURE_SOFTNESS)


def judge_tone(probabilities: np.ndarray, classes: list[str], deviation: np.ndarray) -> np.ndarray:
    """``probabilities`` (tiles × classes) with P(good) capped at 1 − P(departs) and the excess given
    to exposure; unchanged for a model without both classes. Rows of NaN stay NaN."""
    if "good" not in classes or "exposure" not in classes:
        return probabilities
    good, exposure = classes.index("good"), classes.index("exposure")
    judged = np.array(probabilities, dtype=np.float64)
    cap = 1.0 - departure_probability(deviation)
    capped = np.where(judged[:, good] > cap + FLOAT_NOISE, cap, judged[:, good])
    judged[:, exposure] += judged[:, good] - capped
    judged[:, good] = capped
    return judged.astype(np.asarray(probabilities).dtype, copy=False)


def clear_exposure(probabilities: np.ndarray, classes: list[str], fit: np.ndarray) -> np.ndarray:
    """``probabilities`` (tiles × classes) with P(exposure) capped at 1 − ``fit`` (P(the tile's tone
    fits its slide)) and the other classes rescaled to the rest, keeping their ratios; unchanged for
    a model without both good and exposure classes."""
    if "good" not in classes or "exposure" not in classes:
        return probabilities
    exposure = classes.index("exposure")
    cap = (1.0 - np.asarray(fit, dtype=np.float64)).astype(np.asarray(probabilities).dtype)
    # Rows already within their cap are left alone, so that judging twice changes nothing, to the last bit.
    clear = np.asarray(probabilities)[:, exposure] > cap + FLOAT_NOISE
    if not clear.any():
        return probabilities
    judged = np.array(probabilities, dtype=np.float64)
    judged[clear] = set_class_probability(judged[clear], exposure, cap[clear].astype(np.float64))
    return judged.astype(np.asarray(probabilities).dtype, copy=False)


def judge_tiles(probabilities: np.ndarray, classes: list[str], deviation: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """Tiles' (or cells') ``probabilities`` judged by how far their tone departs from their slide's
    (``deviation``: :func:`judge_tone`) and how likely it fits it (``fit``: :func:`clear_exposure`)."""
    return clear_exposure(judge_tone(probabilities, classes, deviation), classes, fit)


def judge_against_slide(
    probabilities: np.ndarray,
    classes: list[str],
    features: np.ndarray,
    context: np.ndarray | ToneReference | None = None,
) -> np.ndarray:
    """Tiles' ``probabilities`` judged by their tone ``features`` against their slide's (``context``
    as :func:`tone_z`): capped where they depart, exposure cleared where they fit."""
    reference = _reference(np.asarray(features, dtype=np.float64), context)
    return judge_tiles(
        probabilities, classes, tone_deviation(features, reference), fit_probability(features, reference)
    )


@dataclass(frozen=True)
class SlideTone:
    """A finished map's tone judgement: per tile (y, x), how far its tone departs from the slide's and
    how likely it fits it (0 where not assessed), and what was found, for the map's attributes."""

    deviation: np.ndarray
    fit: np.ndarray
    found: dict

    def judge_cells(self, cell_probabilities: np.ndarray, classes: list[str], first_row: int = 0) -> np.ndarray:
        """(c, h·k, w·k) cell probabilities of the tile rows from ``first_row`` judged as their tiles
        (exposure is the scan's, not a cell's); NaN cells stay NaN."""
        k = cell_probabilities.shape[2] // self.deviation.shape[1]
        rows = slice(first_row, first_row + cell_probabilities.shape[1] // k)

        def on_cells(per_tile: np.ndarray) -> np.ndarray:
            return np.repeat(np.repeat(per_tile[rows], k, axis=0), k, axis=1)

        cells = np.isfinite(cell_probabilities).all(axis=0)
        judged = np.array(cell_probabilities, copy=True)
        judged[:, cells] = judge_tiles(
            cell_probabilities[:, cells].T, classes, on_cells(self.deviation)[cells], on_cells(self.fit)[cells]
        ).T
        return judged


def judge_slide_tone(probabilities: np.ndarray, tone: np.ndarray, classes: list[str]) -> tuple[np.ndarray, SlideTone]:
    """A whole map's (c, y, x) ``probabilities`` judged by its (3, y, x) ``tone``: every assessed tile
    against the reference of all assessed tiles. Returns the probabilities and the judgement (its
    cells are judged with :meth:`SlideTone.judge_cells`)."""
    assessed = np.isfinite(probabilities).all(axis=0)
    features = tone[:, assessed].T
    reference = ToneReference.of(features)
    deviation, fit = np.zeros(assessed.shape), np.zeros(assessed.shape)
    deviation[assessed], fit[assessed] = tone_deviation(features, reference), fit_probability(features, reference)
    judged = np.array(probabilities, copy=True)
    judged[:, assessed] = judge_tiles(probabilities[:, assessed].T, classes, deviation[assessed], fit[assessed]).T
    found = {
        "reference": reference.to_dict(),
        "tiles_compared": int(assessed.sum()),
        "tiles_departing": int((deviation > DEPARTURE_Z).sum()),
        "tiles_fitting": int((fit > 0.5).sum()),
    }
    return judged, SlideTone(deviation, fit, found)


def cohort_deviation(slide_medians: np.ndarray) -> np.ndarray:
    """Per slide (rows of ``slide_medians``: each slide's median tone, NaN where it has none), its
    largest robust z-score against the batch's slides: a slide toned wrongly *throughout* is its own
    reference, but not its batch's. 0 for all when the batch has too few slides."""
    slide_medians = np.asarray(slide_medians, dtype=np.float64).reshape(-1, len(TONE_FEATURES))
    return tone_deviation(slide_medians, ToneReference.of(slide_medians, MIN_COHORT_SLIDES))
