"""What ``slideiqa explain`` of a whole slide region costs: wall time, peak memory, picture size.

    python benchmarks/explain_cost.py [--runs 3] [--slide SLIDE --region X,Y,W,H]

By default the bundled sample as one region (its whole 2220 × 2967 px), in a fresh process per run
(``startup.measure``: the command's own peak RSS). The README quotes these figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from startup import SAMPLE, measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slide", type=Path, default=SAMPLE)
    parser.add_argument("--region", default="0,0,2220,2967", help="level-0 X,Y,W,H (default: the whole sample)")
    args = parser.parse_args()
    slideiqa = str(Path(sys.executable).with_name("slideiqa"))
    walls, rss, sizes = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for run in range(args.runs):
            picture = Path(folder) / f"run{run}.explain.png"
            result = measure([slideiqa, "explain", str(args.slide), "--region", args.region, "-o", str(picture)])
            if result["rc"] != 0:
                sys.exit(f"slideiqa explain failed: {result['stderr']}")
            walls.append(result["wall"])
            rss.append(result["rss_mb"])
            sizes.append(picture.stat().st_size / 1e6)
    print(
        f"slideiqa explain {args.slide.name} --region {args.region}, {args.runs} runs: "
        f"wall {min(walls):.1f}–{max(walls):.1f} s, peak RSS {statistics.median(rss):.0f} MB (median), "
        f"picture {statistics.median(sizes):.1f} MB"
    )


if __name__ == "__main__":
    main()
