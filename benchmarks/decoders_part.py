"""Where the scaled 40× decode and the general path part: each step of a tile's judgement compared.

    python benchmarks/decoders_part.py [--tiles 600]

``map_speed_40x.py`` found the two paths' final scores crossing the threshold on about 4 % of tiles
while tone and debris were read on single pixels (0.6 % once on block means). This reads a random sample of the same benchmark slide's tissue tiles both ways (the general path:
OpenSlide in full, then Lanczos; the shipped one: JPEG decoded at ½ size) and compares, step by step,
what a map does with them: the network alone, the network with the measured families (noise, motion,
JPEG, exposure), debris, and the tone features the finished map judges each tile by against its
slide's (a tile more than ``slide_tone.DEPARTURE_Z`` spreads off has its P(good) handed to exposure).
A step whose decisions differ between the paths is where the maps part. Needs the slide that
``map_speed_40x.py`` builds (``benchmarks/cache/``); about two minutes here.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from map_speed import tissue_cells
from map_speed_40x import HEIGHT, LEVEL_STEP, LEVELS, MPP, SLIDE, TILE, WIDTH
from synthetic_slides import build_slide

from slideiqa.artefacts.debris import debris_tiles, speck_pixels
from slideiqa.io.grid import read_tile
from slideiqa.io.slide import open_slide
from slideiqa.measure.slide_tone import DEPARTURE_Z, tone_features, tone_z
from slideiqa.models.predictor import Predictor

NETWORK_ONLY = {
    "measure_noise": False,
    "measure_motion": False,
    "measure_defocus": False,
    "measure_jpeg": False,
    "measure_exposure": False,
}


def both_ways(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` random tissue tiles of the 40× benchmark slide, read by the general path and by the
    scaled decode, and each tile's level-0 (x, y) origin."""
    with open_slide(build_slide(SLIDE, WIDTH, HEIGHT, LEVELS, mpp=MPP, tile=TILE, level_step=LEVEL_STEP)) as slide:
        grid, plan, cells = tissue_cells(slide)
        picked = cells[np.random.default_rng(seed).choice(len(cells), min(count, len(cells)), replace=False)]

        def read(how) -> np.ndarray:
            return np.stack([read_tile(slide, grid, how, row, col)[0] for row, col in picked])

        origins = np.array([grid.origin(row, col) for row, col in picked])
        return read(dataclasses.replace(plan, decode_factor=1, jpeg_tiles=False)), read(plan), origins


def seam_distances(tiles: np.ndarray, origins: np.ndarray, mpp: float) -> np.ndarray:
    """For each tile the general path calls debris, the distance in µm from its largest particle's
    centre to the nearest seam between the slide's pieces (every ``TILE`` px of level 0: each JPEG tile
    of the benchmark slide is a different real piece)."""
    particles, _, um_per_px = speck_pixels(tiles, mpp)
    level0_per_px = um_per_px / MPP
    distances = []
    for index in np.flatnonzero(debris_tiles(tiles, mpp)):
        labels, _ = ndimage.label(particles[index])
        largest = np.bincount(labels.ravel())[1:].argmax() + 1
        rows, cols = np.nonzero(labels == largest)
        centre = origins[index] + np.array([cols.mean(), rows.mean()]) * level0_per_px
        offset = centre % TILE
        distances.append(np.minimum(offset, TILE - offset).min() * MPP)
    return np.array(distances)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiles", type=int, default=600)
    args = parser.parse_args()
    general, scaled, origins = both_ways(args.tiles)
    print(f"{len(general)} tissue tiles of the {WIDTH} × {HEIGHT} px 40× benchmark slide")
    for name, predictor in (
        ("network alone", Predictor("default", **NETWORK_ONLY)),
        ("network and measured families", Predictor("default")),
    ):
        a, b = predictor.predict(general), predictor.predict(scaled)
        crossing = int(((a[:, 0] < 0.5) != (b[:, 0] < 0.5)).sum())
        print(f"{name}: tiles crossing 0.5 {crossing}, mean |ΔP(good)| {np.abs(a[:, 0] - b[:, 0]).mean():.4f}")
    classes = predictor.classes
    debris_a = np.asarray(debris_tiles(general, predictor.card.mpp, a, classes))
    debris_b = np.asarray(debris_tiles(scaled, predictor.card.mpp, b, classes))
    print(
        f"debris: general {int(debris_a.sum())}, scaled {int(debris_b.sum())}, "
        f"tiles labelled differently {int((debris_a != debris_b).sum())}"
    )
    # Uniform positions would put a share d / (TILE · MPP / 2) of particles within d µm of a seam.
    near = seam_distances(general, origins, predictor.card.mpp)
    half_piece = TILE * MPP / 2
    print(
        f"debris particles (general path) within {half_piece / 4:.0f} µm of a seam between the slide's "
        f"{TILE * MPP:.0f} µm pieces: {int((near <= half_piece / 4).sum())} of {len(near)} "
        f"(a quarter if they lay anywhere); median distance {np.median(near) if len(near) else float('nan'):.1f} µm"
    )
    tone_a, tone_b = tone_features(general), tone_features(scaled)
    print(
        "tone features (glass, stain density, white point): mean |Δ| "
        + ", ".join(f"{value:.3f}" for value in np.nanmean(np.abs(tone_a - tone_b), axis=0))
        + "; spread across tiles "
        + ", ".join(f"{value:.3f}" for value in np.nanstd(tone_a, axis=0))
    )
    print(
        "tone features, scaled minus general, mean: "
        + ", ".join(f"{value:+.3f}" for value in np.nanmean(tone_b - tone_a, axis=0))
    )
    # Each path against its own sample's reference, as each map judges its tiles against its own slide.
    departs_a = np.nanmax(np.abs(tone_z(tone_a)), axis=1) > DEPARTURE_Z
    departs_b = np.nanmax(np.abs(tone_z(tone_b)), axis=1) > DEPARTURE_Z
    print(
        f"tiles departing the slide's tone (> {DEPARTURE_Z} spreads, each path against its own reference): "
        f"general {int(departs_a.sum())}, scaled {int(departs_b.sum())}, "
        f"judged differently {int((departs_a != departs_b).sum())}"
    )


if __name__ == "__main__":
    main()
