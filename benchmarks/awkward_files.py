"""Files that used to take a machine's memory or hours, as whole processes: wall time and peak RSS.

    python benchmarks/awkward_files.py [--bomb-side 40000]

Cases, each ``slideiqa map`` in a fresh process:

* an 8192 × 8192 RGB TIFF in one uncompressed strip, as Fiji and ImageJ write it, against the tiled
  pyramidal slide of real pixels it was read from (``synthetic_slides.build_slide``): tiles/s of each;
* a deflate bomb: one strip of zeros for a ``--bomb-side``² RGB image (4.8 GB decoded at 40000,
  a few MB on disk), which must be refused in one line within bounded memory.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from startup import measure
from synthetic_slides import CACHE, build_slide

FIJI_SIDE = 8192


def write_single_strip(path: Path, pixels: np.ndarray) -> None:
    tifffile.imwrite(
        path,
        pixels,
        photometric="rgb",
        rowsperstrip=pixels.shape[0],
        resolution=(2e4, 2e4),
        resolutionunit="CENTIMETER",
    )


def write_deflate_bomb(path: Path, side: int) -> None:
    compressor = zlib.compressobj(9)
    rows = bytes(side * 3 * 1000)
    strip = b"".join([compressor.compress(rows) for _ in range(side // 1000)] + [compressor.flush()])
    with tifffile.TiffWriter(path, bigtiff=side**2 * 3 >= 2**32) as tif:
        tif.write(
            iter([strip]),
            shape=(side, side, 3),
            dtype=np.uint8,
            compression="zlib",
            rowsperstrip=side,
            photometric="rgb",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bomb-side", type=int, default=40_000)
    bomb_side = parser.parse_args().bomb_side
    from slideiqa.io.slide import open_slide

    slideiqa = str(Path(sys.executable).with_name("slideiqa"))
    tiled = build_slide(CACHE / f"synthetic_{FIJI_SIDE}.tif", FIJI_SIDE, FIJI_SIDE, levels=3)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        with open_slide(tiled) as slide:
            write_single_strip(folder / "fiji.tif", slide.read_region((0, 0), 0, slide.dimensions))
        write_deflate_bomb(folder / "bomb.tif", bomb_side)
        print("| file | size on disk | wall s | peak RSS MB | result |\n|---|---|---|---|---|")
        for name, path, extra in (
            ("8192² RGB, one uncompressed strip (Fiji)", folder / "fiji.tif", []),
            ("the same pixels, tiled JPEG pyramid", tiled, []),
            (f"deflate bomb, {bomb_side}² RGB in one strip", folder / "bomb.tif", ["--mpp", "0.5"]),
        ):
            out = folder / f"{path.stem}.quality.zarr"
            result = measure([slideiqa, "map", str(path), "-o", str(out), *extra])
            summary = out / "summary.json"
            if summary.exists():
                figures = json.loads(summary.read_text())
                outcome = f"{figures['tissue_tiles']} tissue tiles at {figures['tiles_per_s']:.0f} tiles/s"
            else:
                outcome = f"exit {result['rc']}: {re.sub(str(folder) + '/', '', result.get('stderr', ''))[:160]}"
            print(
                f"| {name} | {path.stat().st_size / 2**20:.1f} MB | {result['wall']:.1f} | {result['rss_mb']:.0f} "
                f"| {outcome} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
