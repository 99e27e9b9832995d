"""The fine-to-coarse spectral ratio (``motion_blur.SectorEnergies.detail``) on every clean field's
tiles and on the same fields defocused at the floor: the figures ``slideiqa/measure/defocus_evidence.py``
quotes, the margin of its ``FOCUS_DETAIL`` (the cap) and of its ``FOCUS_FLOOR`` on tiles at least
``FULL_TISSUE`` tissue (the floor), with the real out-of-focus tile of ``natural_focus/``.

    python training/analysis/defocus_detail.py [--data ../shared/data]

Every clean field of ``benchmarks/clean_tissue.py``'s catalogue at or finer than 0.55 µm/px is
brought to the model's 0.5 µm/px (Lanczos) and defocused whole at the floor (1 µm) by slideiqa's
disk, Gaussian and aberrated blur, OpenCV's Gaussian and albumentations' defocus — also followed by
sensor noise (σ 2, 4, 6 grey levels, below the noise threshold) or a scanner's JPEG (quality 50,
75, 90) — and cut into 224 px tiles on a 112 px stride, kept where at least 10 % of the pixels are
tissue-dark (``field_measurements.py``'s rule). A defocused tile measured above ``FOCUS_DETAIL`` would
have its P(defocus) capped: that is the cost of the cap. Three good looks of each clean tile stand
for scanners the fields did not come from. About two minutes here.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the training package, run as a script
sys.path.insert(0, str(ROOT / "benchmarks"))  # clean_tissue.py's catalogue of fields
from clean_tissue import SMEAR_FIELDS, catalogue_fields  # noqa: E402

from slideiqa.measure.defocus_evidence import FOCUS_DETAIL, FOCUS_FLOOR, FULL_TISSUE, tissue_share  # noqa: E402
from slideiqa.measure.motion_blur import sector_energies  # noqa: E402
from slideiqa.pipeline.fields import at_judging_scale, field_tiles, mirrored_to_tile, read_field  # noqa: E402
from slideiqa.synthetic.distortions import KINDS, distort, jpeg_round_trip  # noqa: E402
from training.analysis.field_measurements import (  # noqa: E402
    DARK_SUM,
    MIN_TISSUE,
    MODEL_MPP,
    STRIDE,
    TILE,
    clean_fields,
)
from training.appearance import vary_good  # noqa: E402
from training.cross_implementation import IMPLEMENTATIONS  # noqa: E402
from training.generalisation import FLOORS  # noqa: E402

#: The featureless field a model trained without its lab called defocus.
FEATURELESS = "histolab_very-low-nuclei-score-level0"
NOISE_SIGMAS, SCANNER_QUALITIES = (2, 4, 6), (50, 75, 90)


def defocused(field: np.ndarray) -> dict[str, np.ndarray]:
    """The field defocused whole at the floor by every implementation."""
    copies = {
        f"slideiqa {kind}": distort(field, "defocus", FLOORS["defocus"], seed=1, kind=kind) for kind in KINDS["defocus"]
    }
    copies |= {
        name: implementation(field, FLOORS["defocus"], MODEL_MPP, np.random.default_rng(1))
        for name, implementation in IMPLEMENTATIONS["defocus"].items()
    }
    return copies


def with_scanner(copy: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A defocused copy as a scanner may hand it over: plain, with sensor noise, or JPEG-compressed."""
    out = {"defocused": copy}
    for sigma in NOISE_SIGMAS:
        out[f"defocused + noise σ {sigma}"] = np.clip(np.rint(copy + rng.normal(0, sigma, copy.shape)), 0, 255).astype(
            np.uint8
        )
    out |= {f"defocused + JPEG q{quality}": jpeg_round_trip(copy, quality) for quality in SCANNER_QUALITIES}
    return out


def tissue_windows(field: np.ndarray) -> list[tuple[slice, slice]]:
    height, width = field.shape[:2]
    windows = []
    for top in range(0, height - TILE + 1, STRIDE):
        for left in range(0, width - TILE + 1, STRIDE):
            window = np.s_[top : top + TILE, left : left + TILE]
            if (field[window].astype(np.int32).sum(axis=-1) < DARK_SUM).mean() >= MIN_TISSUE:
                windows.append(window)
    return windows


def detail(tiles: list[np.ndarray]) -> np.ndarray:
    return sector_energies(np.stack(tiles)).detail()


def smear_tiles(data: Path) -> dict[str, np.ndarray]:
    """Per smear collection, the tiles of up to ``SMEAR_FIELDS`` of its camera fields as ``slideiqa
    predict`` judges them (magnified to fill a tile, mirrored out to one), as ``clean_tissue.py`` picks them."""
    collections = {}
    for name, paths, mpp in catalogue_fields(data)[2]:
        tiles = []
        for path in paths[:: max(1, len(paths) // SMEAR_FIELDS)][:SMEAR_FIELDS]:
            field = at_judging_scale(read_field(path)[0], mpp, MODEL_MPP, str(path), TILE).pixels
            tiles.append(field_tiles(mirrored_to_tile(field, TILE), TILE))
        collections[name] = np.concatenate(tiles)
    return collections


def full(tiles: list[np.ndarray]) -> np.ndarray:
    """Which tiles are at least ``FULL_TISSUE`` tissue: those the floor applies to."""
    return tissue_share(np.stack(tiles)) >= FULL_TISSUE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    rng = np.random.default_rng(2026)
    measured: dict[tuple[bool, str], list[np.ndarray]] = defaultdict(list)
    floor_applies: dict[tuple[bool, str], list[np.ndarray]] = defaultdict(list)

    def measure(featureless: bool, kind: str, tiles: list[np.ndarray]) -> None:
        measured[featureless, kind].append(detail(tiles))
        floor_applies[featureless, kind].append(full(tiles))

    for path, field in clean_fields(args.data):
        windows = tissue_windows(field)
        if not windows:
            continue
        featureless = path.stem == FEATURELESS
        measure(featureless, "clean", [field[w] for w in windows])
        measure(featureless, "good looks", [vary_good(field[w], rng) for w in windows for _ in range(3)])
        for copy in defocused(field).values():
            for kind, tiles in with_scanner(copy, rng).items():
                measure(featureless, kind, [tiles[w] for w in windows])
    print(
        f"FOCUS_DETAIL = {FOCUS_DETAIL}: P(defocus) is capped above it; FOCUS_FLOOR = {FOCUS_FLOOR}: raised "
        f"below it on tiles at least {FULL_TISSUE:.0%} tissue\n"
    )
    print(
        "| tiles | of | count | lowest | highest | 99th percentile | above FOCUS_DETAIL | full of tissue | "
        "their lowest | below FOCUS_FLOOR |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    for (featureless, kind), values in sorted(measured.items(), key=lambda item: (item[0][0], item[0][1])):
        joined, applies = np.concatenate(values), np.concatenate(floor_applies[featureless, kind])
        lowest = f"{joined[applies].min():.2f}" if applies.any() else "–"
        print(
            f"| {kind} | {FEATURELESS if featureless else 'every other clean field'} | {len(joined)} | "
            f"{joined.min():.2f} | {joined.max():.2f} | {np.percentile(joined, 99):.2f} | {np.mean(joined > FOCUS_DETAIL):.1%} | "
            f"{int(applies.sum())} | {lowest} | {np.mean(joined[applies] < FOCUS_FLOOR) if applies.any() else 0:.1%} |"
        )
    for name, tiles in smear_tiles(args.data).items():
        smear_detail, smear_full = detail(list(tiles)), full(list(tiles))
        print(
            f"{name} smear fields as predict judges them: {len(smear_detail)} tiles, lowest {smear_detail.min():.2f}; "
            f"{int(smear_full.sum())} full of tissue, {int((smear_detail[smear_full] < FOCUS_FLOOR).sum())} of them "
            "below FOCUS_FLOOR"
        )
    for path in sorted((args.data / "natural_focus").glob("histoart_*.png")):
        tile = np.asarray(Image.open(path).convert("RGB"))
        print(f"{path.name}: detail {detail([tile])[0]:.2f}, tissue {tissue_share(tile[None])[0]:.0%}")


if __name__ == "__main__":
    main()
