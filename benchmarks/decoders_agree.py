"""Real 40× fields: does the scaled JPEG decode give the verdicts the general path gives?

    python benchmarks/decoders_agree.py [--data ../shared/data] [--quality 80]

``map_speed_40x.py`` measures agreement on a mosaic of a few pieces. Here every 40× field of the
held-out sources of ``clean_tissue.py`` (MoNuSeg's TCGA fields, CPM-15's 40× fields, DeepLIIF's IHC;
0.25 µm/px), laid 2 × 2 with its mirror images (a field alone holds fewer than the 10 tissue tiles a
slide's tone reference needs, and mirrored copies keep one slide's single tone without seams), is
written as a scanner writes a slide — a tiled pyramidal TIFF, 256 px YCbCr JPEG tiles at
``--quality`` (Aperio's default is 70–80), levels 1× and 4× — and mapped alone twice with every
default: by the general path (``SLIDEIQA_DECODER=openslide``: OpenSlide in full, then Lanczos) and as
shipped (JPEG decoded at ½ size). Per source and in all: tissue tiles, tiles crossing the threshold,
tiles labelled differently and how, and fields whose verdict differs. Exits with status 1 when the
total misses ``map_speed_40x.AGREEMENT_BARS`` or any verdict differs. About three minutes here.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from clean_tissue import HELD_OUT, ROOT
from map_speed_40x import AGREEMENT_BARS, agreement

from slideiqa import map_slide
from slideiqa.io.slide import DECODER_VARIABLE, open_slide

from slides import write_pyramidal_tiff

FORTY_X = 0.25


def forty_x_fields(data: Path) -> dict[str, list[Path]]:
    """The held-out sources' fields scanned at 40× (0.25 µm/px), by source."""
    found: dict[str, list[Path]] = {}
    for source, patterns in HELD_OUT.items():
        paths = [path for pattern, mpp in patterns if mpp == FORTY_X for path in sorted(data.glob(pattern))]
        if paths:
            found[source] = paths
    return found


def mirrored_2x2(pixels: np.ndarray) -> np.ndarray:
    """The field beside its left-right mirror image, above their upside-down copies: no seams."""
    top = np.concatenate([pixels, pixels[:, ::-1]], axis=1)
    return np.ascontiguousarray(np.concatenate([top, top[::-1]], axis=0))


def mapped_both_ways(field: Path, folder: Path, quality: int) -> tuple[dict, dict, dict]:
    """(agreement, general summary, scaled summary) of ``field``, mirrored 2 × 2 and written as a 40×
    JPEG pyramid."""
    with open_slide(field) as slide:
        pixels = slide.read_region((0, 0), 0, slide.dimensions)
    pixels = mirrored_2x2(pixels)
    pyramid = write_pyramidal_tiff(
        folder / f"{field.stem}.tif", pixels, mpp=FORTY_X, levels=2, level_step=4, quality=quality
    )
    summaries = {}
    for decoder in ("openslide", "scaled"):
        os.environ[DECODER_VARIABLE] = decoder
        summaries[decoder] = map_slide(pyramid, folder / f"{decoder}.quality.zarr", overwrite=True).summary
    os.environ.pop(DECODER_VARIABLE)
    return (
        agreement(folder / "openslide.quality.zarr", folder / "scaled.quality.zarr"),
        summaries["openslide"],
        summaries["scaled"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--quality", type=int, default=80, help="JPEG quality of the pyramid's tiles")
    args = parser.parse_args()
    started = time.perf_counter()
    total = {"tiles": 0, "crossing": 0, "labels_differ": 0}
    verdicts_differ: list[str] = []
    with tempfile.TemporaryDirectory() as temporary:
        for source, fields in forty_x_fields(args.data).items():
            tiles = crossing = differ = 0
            changes: dict[str, int] = {}
            for field in fields:
                figures, general, scaled = mapped_both_ways(field, Path(temporary), args.quality)
                if scaled.reading["decoder"] != "scaled JPEG":
                    raise SystemExit(f"{field.name}: the scaled decode did not run ({scaled.reading})")
                tiles, crossing, differ = (
                    tiles + figures["tiles"],
                    crossing + figures["crossing"],
                    differ + figures["labels_differ"],
                )
                for change, count in figures["label_changes"].items():
                    changes[change] = changes.get(change, 0) + count
                if general.verdict != scaled.verdict:
                    verdicts_differ.append(f"{field.name}: {general.verdict} → {scaled.verdict}")
            print(
                f"{source}: {len(fields)} fields, {tiles} tissue tiles, {crossing} cross the threshold, {differ} "
                f"labelled differently {changes or ''}",
                flush=True,
            )
            total = {
                "tiles": total["tiles"] + tiles,
                "crossing": total["crossing"] + crossing,
                "labels_differ": total["labels_differ"] + differ,
            }
    tiles = max(total["tiles"], 1)
    agrees = (
        total["crossing"] <= AGREEMENT_BARS["crossing"] * tiles
        and tiles - total["labels_differ"] >= AGREEMENT_BARS["labels"] * tiles
        and not verdicts_differ
    )
    print(
        f"\nIn all, JPEG quality {args.quality}: {total['tiles']} tissue tiles, {total['crossing']} "
        f"({total['crossing'] / tiles:.2%}) cross (bar ≤ {AGREEMENT_BARS['crossing']:.1%}), labels agree on "
        f"{1 - total['labels_differ'] / tiles:.2%} (bar ≥ {AGREEMENT_BARS['labels']:.0%}); verdicts differ: "
        f"{verdicts_differ or 'none'} ({time.perf_counter() - started:.0f} s)"
    )
    if not agrees:
        print("FAILED: the scaled decode does not agree with the general path", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
