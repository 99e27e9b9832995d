"""Where a map's time goes: ``slideiqa map`` on the benchmark slide under py-spy, every thread.

py-spy samples the mapping process (its worker threads included, and the native code they call —
OpenSlide's decoding, ONNX Runtime — as the Python function that called it) while it runs, counting
only threads that are busy. The script prints the share of busy samples spent in each function
itself (*self*) and under each slideiqa function (*inclusive*), so that a speed change can be
aimed at what costs, and checked afterwards.

    pip install py-spy
    python benchmarks/map_profile.py [--slide PATH] [--top 15] [--rate 100] [--callers NAME]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from map_speed import HEIGHT, LEVELS, WIDTH
from synthetic_slides import CACHE, build_slide

#: One frame of py-spy's raw (collapsed) output: ``function (path:line)``.
FRAME = re.compile(r"^(?P<function>.+?) \((?P<path>[^:()]+)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    """``function (file)`` without the line: a function's samples counted together."""
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["path"]
    short = path.split("site-packages/")[-1] if "site-packages/" in path else path
    return f"{match['function']} ({short})"


def profile_shares(raw: str, callers_of: str = "") -> tuple[int, Counter, Counter, Counter]:
    """(busy samples, self samples by function, inclusive samples by slideiqa function, and — for
    the functions whose name contains ``callers_of`` — self samples by the slideiqa function nearest
    above them)."""
    own, inclusive, callers, total = Counter(), Counter(), Counter(), 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = [frame_name(frame) for frame in stack.split(";")]
        total += samples
        own[frames[-1]] += samples
        ours = [name for name in frames if "slideiqa/" in name and "site-packages" not in name]
        for name in set(ours):
            inclusive[name] += samples
        if callers_of and callers_of in frames[-1]:
            callers[ours[-1] if ours else "(outside slideiqa)"] += samples
    return total, own, inclusive, callers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slide", type=Path, default=None, help="slide to map (default: map_speed.py's slide)")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--rate", type=int, default=100, help="samples per second")
    parser.add_argument(
        "--callers",
        default="",
        help="also show which slideiqa functions the functions with this in their name run under (e.g. _amin)",
    )
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        sys.exit("py-spy is not installed: pip install py-spy")
    slide = args.slide or build_slide(CACHE / f"benchmark_{WIDTH}x{HEIGHT}.tif", WIDTH, HEIGHT, LEVELS)
    with tempfile.TemporaryDirectory() as work:
        raw = Path(work) / "profile.txt"
        mapping = (
            f"from slideiqa import map_slide; "
            f"r = map_slide({str(slide)!r}, {str(Path(work) / 'p.quality.zarr')!r}); "
            f"print('mapped:', r.summary.tissue_tiles, round(r.summary.tiles_per_s))"
        )
        done = subprocess.run(
            [
                spy,
                "record",
                "--format",
                "raw",
                "--rate",
                str(args.rate),
                "-o",
                str(raw),
                "--",
                sys.executable,
                "-c",
                mapping,
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            sys.exit(f"py-spy or the map failed: {done.stderr.strip()[-500:]}")
        tiles, rate = next(line for line in done.stdout.splitlines() if line.startswith("mapped:")).split()[1:]
        total, own, inclusive, callers = profile_shares(raw.read_text(), args.callers)
    print(f"{slide.name}: {tiles} tissue tiles at {rate} tiles/s; {total} busy samples at {args.rate}/s")
    print(f"\nself (the function itself, native code it calls included) — top {args.top}:")
    for name, samples in own.most_common(args.top):
        print(f"  {samples / total:6.1%}  {name}")
    print(f"\ninclusive (everything under it), slideiqa's functions — top {args.top}:")
    for name, samples in inclusive.most_common(args.top):
        print(f"  {samples / total:6.1%}  {name}")
    if args.callers:
        print(f"\n'{args.callers}' (self) under:")
        for name, samples in callers.most_common(args.top):
            print(f"  {samples / total:6.1%}  {name}")


if __name__ == "__main__":
    main()
