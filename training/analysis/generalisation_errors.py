"""Where a generalisation run goes wrong: what sharp tiles are called, flag rates per kind and per
library, and whether physical measurements would tell exposure errors from pale stain.

    python training/analysis/generalisation_errors.py runs/generalisation

Reads the run's ``test_tiles.npz`` and ``probabilities-<group>.npy`` (leave-one-group-out, so every
probability comes from a model that never saw the tile's group).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

try:
    from slideiqa_training.generalisation import CLASSES, THRESHOLD, load_tile_set
except ImportError:  # from a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.modules["slideiqa_training"] = __import__("training")
    from slideiqa_training.generalisation import CLASSES, THRESHOLD, load_tile_set

from slideiqa.measure.judgement import judge_measured, measured_families


def physical_exposure_measures(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per tile: share of pixels with a channel at 255 or 0 (clipped), the brightest 0.5 % of the
    brightest channel (white point) and the 1st–99th percentile spread of luminance (dynamic range)."""
    brightest = images.max(axis=-1).reshape(len(images), -1)
    luminance = images.mean(axis=-1).reshape(len(images), -1)
    clipped = ((images == 255) | (images == 0)).any(axis=-1).reshape(len(images), -1).mean(axis=1)
    low, high = np.percentile(luminance, [1, 99], axis=1)
    return {
        "clipped share": clipped,
        "white point": np.percentile(brightest, 99.5, axis=1),
        "dynamic range": high - low,
    }


def main(run: Path) -> None:
    tiles = load_tile_set(run / "test_tiles.npz")
    found = sorted(run.glob("probabilities-*.npy"))
    probabilities = np.full((len(tiles), len(CLASSES)), np.nan)
    for path in found:
        group = path.stem.removeprefix("probabilities-")
        probabilities[tiles.groups == group] = np.load(path)
    measured = ~np.isnan(probabilities[:, 0])
    tiles, probabilities = tiles.subset(measured), probabilities[measured]
    # Judged as a map judges them: noise and motion measured (slideiqa.measure.judgement).
    judged = judge_measured(probabilities, list(CLASSES), tiles.images, measured_families(list(CLASSES), 0.5))
    good = judged[:, 0]
    named = np.array(CLASSES)[judged.argmax(1)]
    sharp = tiles.families == "none"
    print(f"{len(found)} held-out groups\n\nSharp tiles that fail, by the class they are given:")
    for group in dict.fromkeys(tiles.groups.tolist()):
        failing = sharp & (tiles.groups == group) & (good < THRESHOLD)
        print(
            f"  {group:>15}: {int(failing.sum())} of {int((sharp & (tiles.groups == group)).sum())}  "
            f"{dict(Counter(named[failing].tolist()))}"
        )
    print("\nFlagged share per family and kind (slideiqa's code) or library (other code), all groups:")
    for family in CLASSES[1:]:
        chosen = tiles.families == family
        for maker in sorted(
            set(tiles.kinds[chosen & (tiles.makers == "slideiqa")]) | set(tiles.makers[chosen]) - {"slideiqa"}
        ):
            rows = chosen & ((tiles.kinds == maker) & (tiles.makers == "slideiqa") | (tiles.makers == maker))
            print(f"  {family:>9} {maker:>32}: {float((good[rows] < THRESHOLD).mean()):.2f} of {int(rows.sum())}")
    exposure = tiles.families == "exposure"
    chosen = sharp | exposure
    print("\nExposure errors against sharp tiles, AUC of physical measurements (1 = perfect, 0.5 = chance):")
    for name, values in physical_exposure_measures(tiles.images[chosen]).items():
        auc = roc_auc_score(exposure[chosen], values)
        print(f"  {name:>14}: {max(auc, 1 - auc):.3f}")
    print(f"  {'the model':>14}: {roc_auc_score(exposure[chosen], -good[chosen]):.3f}")
    print_glass_levels(tiles)
    print_stain_density(tiles)
    print_noise_measurement(tiles, probabilities)


def glass_level(images: np.ndarray, min_pixels: int = 500) -> np.ndarray:
    """Per tile: median luminance of its grey pixels (channels within 10 grey levels: glass, or
    mounting medium), NaN where fewer than ``min_pixels`` are grey."""
    values = images.astype(np.int16)
    grey = (values.max(axis=-1) - values.min(axis=-1)) < 10
    luminance = values.mean(axis=-1)
    return np.array([np.median(lum[g]) if g.sum() >= min_pixels else np.nan for lum, g in zip(luminance, grey)])


def print_glass_levels(tiles) -> None:
    """Whether the glass between the tissue could tell an exposure error: its level on sharp tiles of
    each group, and on exposure copies of each kind."""
    level = glass_level(tiles.images)
    sharp, exposure = tiles.families == "none", tiles.families == "exposure"
    print("\nGlass level (median luminance of grey pixels) of sharp tiles per group, 5th / 50th / 95th percentile:")
    for group in dict.fromkeys(tiles.groups.tolist()):
        here = (tiles.groups == group) & sharp & ~np.isnan(level)
        shown = " / ".join(f"{v:.0f}" for v in np.percentile(level[here], [5, 50, 95])) if here.any() else "no glass"
        print(f"  {group:>15}: {shown} ({int(here.sum())} of {int(((tiles.groups == group) & sharp).sum())} tiles)")
    for kind in sorted(set(tiles.kinds[exposure])):
        here = exposure & (tiles.kinds == kind) & ~np.isnan(level)
        print(f"  exposure {kind:>6}: " + " / ".join(f"{v:.0f}" for v in np.percentile(level[here], [5, 50, 95])))


def tissue_density(images: np.ndarray, min_pixels: int = 100) -> np.ndarray:
    """Per tile: median optical density (summed over RGB) of its stained pixels (summed OD > 0.3),
    NaN where fewer than ``min_pixels`` are stained."""
    density = -np.log10(np.clip(images.astype(np.float32), 1, 255) / 255.0).sum(axis=-1)
    return np.array([np.median(d[d > 0.3]) if (d > 0.3).sum() >= min_pixels else np.nan for d in density])


def print_stain_density(tiles) -> None:
    """Why a wrong tone curve cannot be told from a stain of another strength in one tile: a gamma γ
    turns every pixel's optical density OD into γ·OD, exactly what γ times the dye does (Beer–Lambert).
    At the floor (±1 EV at mid-grey) γ is 2 or ½, so a tile is flaggable only if 2× or ½× its stain
    density is outside what good tiles show: printed here, per group, for the sharp tiles."""
    density = tissue_density(tiles.images[tiles.families == "none"])
    groups = tiles.groups[tiles.families == "none"]
    print("\nStain density of sharp tiles (median summed OD of stained pixels), 10th / 50th / 90th percentile:")
    medians = []
    for group in dict.fromkeys(groups.tolist()):
        values = density[(groups == group) & ~np.isnan(density)]
        medians.append(np.median(values))
        print(f"  {group:>15}: " + " / ".join(f"{v:.2f}" for v in np.percentile(values, [10, 50, 90])))
    print(
        f"  group medians span {min(medians):.2f}–{max(medians):.2f}, a factor of {max(medians) / min(medians):.2f}; "
        "a gamma at the exposure floor multiplies a tile's density by 2 or 0.5"
    )


def print_noise_measurement(tiles, probabilities: np.ndarray) -> None:
    """Per group: how well the measured noise level (slideiqa.measure.noise_level) and the network's P(noise)
    tell sharp tiles from noisy ones, and how often the measurement is on the wrong side of its threshold."""
    from slideiqa.measure.noise_level import NOISE_SIGMA, noise_sigma

    sigma = np.concatenate([noise_sigma(tiles.images[start : start + 256]) for start in range(0, len(tiles), 256)])
    network = probabilities[:, CLASSES.index("noise")]
    sharp, noisy = tiles.families == "none", tiles.families == "noise"
    print(
        f"\nNoise against sharp tiles: AUC of the measured σ and of the network's P(noise); measured σ on "
        f"the wrong side of {NOISE_SIGMA} (sharp above, noisy below; ours / other code):"
    )
    for group in dict.fromkeys(tiles.groups.tolist()):
        here = tiles.groups == group
        ours, other = here & noisy & (tiles.makers == "slideiqa"), here & noisy & (tiles.makers != "slideiqa")
        aucs = []
        for values in (sigma, network):
            chosen = here & (sharp | noisy)
            aucs.append(roc_auc_score(noisy[chosen], values[chosen]))
        print(
            f"  {group:>15}: AUC measured {aucs[0]:.3f}, network {aucs[1]:.3f}; sharp above "
            f"{int((sigma[here & sharp] >= NOISE_SIGMA).sum())} of {int((here & sharp).sum())}, noisy below "
            f"{int((sigma[ours] < NOISE_SIGMA).sum())} of {int(ours.sum())} / "
            f"{int((sigma[other] < NOISE_SIGMA).sum())} of {int(other.sum())}"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
