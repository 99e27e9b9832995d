"""Tiles that hold specks of green or teal marking dye, on every clean source and on the sample:
the figures ``slideiqa/artefacts/debris.py`` quotes for its dye rule.

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
sys.path.insert(0, str(Path(__file__).resolve().parent))
from clean_tissue import catalogue_fields  # noqa: E402
from field_tiles import MODEL_MPP, field_at_model_scale, tissue_tiles  # noqa: E402

from slideiqa.artefacts.debris import speck_pixels, specks_in_tiles  # noqa: E402

SAMPLE = ROOT / "examples" / "data" / "cmu_small_region.svs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    sources, _, smears = catalogue_fields(args.data)
    # A smear camera's 0.05–0.13 µm/px field shrunk to 0.5 holds no whole tile: its own pixels, every tile.
    rows = {
        name: [tile for item in fields for tile in tissue_tiles(field_at_model_scale(item.path, item.mpp))]
        for name, fields in sources.items()
    }
    rows |= {
        f"{name} (smear, its own pixels)": [
            tile for path in paths for tile in tissue_tiles(field_at_model_scale(path, 0), 0.0)
        ]
        for name, paths, _ in smears
    }
    rows["the sample (CMU-1, green ink)"] = tissue_tiles(field_at_model_scale(SAMPLE, None))
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
