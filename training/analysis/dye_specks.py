"""Tiles that hold specks of green or teal marking dye, on every clean source and on the sample:
the figures ``slideiqa/debris.py`` quotes for its dye rule.

    python training/analysis/dye_specks.py [--data ../shared/data]

Every clean field of ``benchmarks/clean_tissue.py``'s catalogue (held-out and catalogued sources, and
the catalogue's blood smears) is
brought to the model's 0.5 µm/px (Lanczos) and cut into its 224 px grid tiles, kept where at least a
quarter of the pixels are tissue-dark; the bundled sample (an Aperio scan of CMU-1, whose tissue
carries green grossing ink) likewise. Per source: tissue tiles, tiles holding dye, tiles holding
debris (``debris.specks_in_tiles``), and the largest share of a tile's pixels risen as a dye.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from clean_tissue import catalogue_fields, resampled  # noqa: E402

from slideiqa.debris import speck_pixels, specks_in_tiles  # noqa: E402
from slideiqa.slide import open_slide  # noqa: E402

MODEL_MPP, TILE = 0.5, 224
#: A tile is kept where this share of its pixels has an RGB sum below DARK_SUM (tissue, not glass).
MIN_TISSUE, DARK_SUM = 0.25, 630
SAMPLE = ROOT / "examples" / "data" / "cmu_small_region.svs"


def tissue_tiles(path: Path, mpp: float | None, min_tissue: float = MIN_TISSUE) -> list[np.ndarray]:
    """The 224 px grid tiles of a field at 0.5 µm/px that hold tissue; with ``mpp`` 0, every tile of
    its own pixels (a smear camera's 0.05–0.13 µm/px field shrunk to 0.5 holds no whole tile)."""
    with open_slide(path) as slide:
        pixels = slide.read_region((0, 0), 0, slide.dimensions)
        mpp = MODEL_MPP if mpp == 0 else mpp or slide.mpp
    field = resampled(pixels, mpp, MODEL_MPP) if abs(mpp - MODEL_MPP) > 0.01 else pixels
    tiles = [field[r:r + TILE, c:c + TILE] for r in range(0, field.shape[0] - TILE + 1, TILE)
             for c in range(0, field.shape[1] - TILE + 1, TILE)]
    return [tile for tile in tiles if (tile.astype(np.int32).sum(-1) < DARK_SUM).mean() >= min_tissue]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    sources, _, smears = catalogue_fields(args.data)
    rows = {name: [tile for item in fields for tile in tissue_tiles(item.path, item.mpp)]
            for name, fields in sources.items()}
    rows |= {f"{name} (smear, its own pixels)": [tile for path in paths for tile in tissue_tiles(path, 0, 0.0)]
             for name, paths, _ in smears}
    rows["the sample (CMU-1, green ink)"] = tissue_tiles(SAMPLE, None)
    print("| source | tissue tiles | with dye | with debris | largest dyed share |\n|---|---|---|---|---|")
    for name, tiles in rows.items():
        if not tiles:
            continue
        stacked = np.stack(tiles)
        debris, dye = specks_in_tiles(stacked, MODEL_MPP)
        share = speck_pixels(stacked, MODEL_MPP)[1].mean(axis=(1, 2)).max()
        print(f"| {name} | {len(tiles)} | {int(dye.sum())} | {int(debris.sum())} | {share:.4f} |", flush=True)


if __name__ == "__main__":
    main()
