"""Start-up and memory of the commands a user types, as whole processes (median of several runs).

    python benchmarks/startup.py [--runs 5]

Measures, each in a fresh process: ``slideiqa --help``, ``slideiqa map`` of a missing file (the error
path), ``slideiqa models``, ``slideiqa map`` of the bundled sample (a fresh output each run) and,
for comparison, the same map with ``--device cpu`` after importing torch (what every run cost when
inference loaded PyTorch). Wall time is the median; peak RSS is the command's own (a fresh wrapper
per run, so RUSAGE_CHILDREN's maximum is that one command's).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "data" / "cmu_small_region.svs"
WRAPPER = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True)
print(json.dumps({"wall": time.perf_counter() - started, "rc": done.returncode,
                  "rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                  "stderr": done.stderr.decode(errors="replace")[-400:]}))
"""


def measure(argv: list[str]) -> dict:
    done = subprocess.run([sys.executable, "-c", WRAPPER, *argv], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    slideiqa = str(Path(sys.executable).with_name("slideiqa"))
    with tempfile.TemporaryDirectory() as folder:
        cases = {
            "slideiqa --help": lambda i: [slideiqa, "--help"],
            "slideiqa map MISSING (error)": lambda i: [slideiqa, "map", f"{folder}/missing.svs"],
            "slideiqa models": lambda i: [slideiqa, "models"],
            "slideiqa map sample": lambda i: [slideiqa, "map", str(SAMPLE), "-o", f"{folder}/s{i}.quality.zarr"],
            "the same map, with torch imported first": lambda i: [
                sys.executable,
                "-c",
                "import torch, torchvision, sys; from slideiqa.cli.app import main; "
                f"sys.argv = ['slideiqa', 'map', {str(SAMPLE)!r}, '-o', {folder + f'/t{i}.quality.zarr'!r}]; main()",
            ],
        }
        print(f"| command | wall s (median of {runs}) | peak RSS MB (median) |\n|---|---|---|")
        for name, argv in cases.items():
            results = [measure(argv(i)) for i in range(runs)]
            walls, rss = [r["wall"] for r in results], [r["rss_mb"] for r in results]
            print(f"| {name} | {statistics.median(walls):.2f} | {statistics.median(rss):.0f} |", flush=True)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"\n({time.perf_counter() - started:.0f} s)")
