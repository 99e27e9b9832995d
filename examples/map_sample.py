"""Map the bundled sample slide from Python and look at the result.

python examples/map_sample.py [OUT]
"""

import sys
from pathlib import Path

import numpy as np

from slideiqa import map_slide, open_map

HERE = Path(__file__).resolve().parent
out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "data" / "cmu_small_region.quality.zarr"

result = map_slide(HERE / "data" / "cmu_small_region.svs", out, overwrite=True)
quality = open_map(result.path)
score, label = quality.array("score"), quality.array("label")
print(f"{result.path}: {quality.grid.shape} tiles of {quality.tile_um:.0f} µm")
print(f"verdict {result.summary.verdict}, mean score {np.nanmean(score):.3f}")
for index, name in enumerate(quality.classes, start=1):
    print(f"  {name:>9}: {(label == index).sum():4d} tiles")
print(f"overview: {result.path / 'overview.png'}")
