"""Tiles per second of each quality-model architecture alone, by inference engine.

Measures, at batch 32 and the model input size, PyTorch eager (NCHW), PyTorch channels_last and
ONNX Runtime (the engine ``slideiqa.models.predictor.Predictor`` uses on CPU), all fp32, with the same
uint8-in / probabilities-out graph the predictor runs, and ONNX Runtime followed by the noise,
motion, defocus-evidence, JPEG and exposure measurements the predictor adds for models at 0.5 µm/px
(``slideiqa.measure.noise_level``, ``motion_blur``, ``defocus_evidence``, ``jpeg_quantisation``,
``exposure_evidence``): what a map pays
per tile. ``iqanet+cells`` is iqanet with the default model's cell head: both outputs, and noise
measured per tile and per cell, as ``Predictor.predict_with_cells`` runs it. Weights are random: speed
does not depend on them.

    python benchmarks/model_speed.py [--archs iqanet iqanet+cells mobilenet_v3_small mobilenet_v2] [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from slideiqa.measure.defocus_evidence import defocus_cap, defocus_floor, tissue_share
from slideiqa.measure.exposure_evidence import exposure_evidence
from slideiqa.measure.jpeg_quantisation import jpeg_scale
from slideiqa.measure.motion_blur import motion_score, sector_energies
from slideiqa.measure.noise_level import patch_noise
from slideiqa.models import ModelCard, build_model
from slideiqa.models.export import TileClassifier, export_onnx
from slideiqa.models.predictor import onnx_session_options


def rate(run, batch: int, seconds: float) -> float:
    run()  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run()
        done += batch
    return done / (time.perf_counter() - start)


#: An architecture named with this suffix is measured with the default model's cell head (64 hidden
#: channels, 32 px cells): both outputs of the graph, and the noise measured per tile and per cell.
WITH_CELLS = "+cells"


def measure(name: str, batch: int, size: int, seconds: float) -> dict[str, float]:
    architecture, cells = name.removesuffix(WITH_CELLS), name.endswith(WITH_CELLS)
    card = ModelCard(
        architecture, ["good", "bad"], input_size=size, cell_hidden=64 if cells else 0, cell_px=32 if cells else 0
    )
    classifier = TileClassifier(build_model(architecture, 6, cell_hidden=card.cell_hidden), card).eval()
    tiles = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    tensor = torch.from_numpy(tiles)
    result = {}
    with torch.inference_mode():
        result["torch"] = rate(lambda: classifier(tensor), batch, seconds)
        classifier_cl = classifier.to(memory_format=torch.channels_last)
        result["torch channels_last"] = rate(lambda: classifier_cl(tensor), batch, seconds)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        export_onnx(TileClassifier(build_model(architecture, 6, cell_hidden=card.cell_hidden), card).eval(), card, path)
        session = onnxruntime.InferenceSession(str(path), onnx_session_options(), providers=["CPUExecutionProvider"])
        result["onnxruntime"] = rate(lambda: session.run(None, {"tiles": tiles}), batch, seconds)

        def measured() -> None:
            session.run(None, {"tiles": tiles})
            noise = patch_noise(tiles)  # once, for the tiles and their cells
            noise.per_tile()
            energies = sector_energies(tiles)  # once, for motion and the defocus evidence
            motion_score(tiles, energies=energies)
            detail = energies.detail()
            defocus_cap(detail)
            defocus_floor(detail, tissue_share(tiles))
            jpeg_scale(tiles)
            exposure_evidence(tiles)
            if cells:
                noise.per_cell(card.cell_px)

        result["onnxruntime + measured"] = rate(measured, batch, seconds)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--archs", nargs="+", default=["iqanet", "iqanet" + WITH_CELLS, "mobilenet_v3_small", "mobilenet_v2"]
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print(
        f"# {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"onnxruntime {onnxruntime.__version__}, batch {args.batch}, {args.size} px, fp32"
    )
    print("| architecture | torch eager | torch channels_last | ONNX Runtime | ONNX Runtime + every measurement |")
    print("|---|---|---|---|---|")
    for architecture in args.archs:
        r = measure(architecture, args.batch, args.size, args.seconds)
        print(
            f"| {architecture} | {r['torch']:.0f} | {r['torch channels_last']:.0f} | {r['onnxruntime']:.0f} | "
            f"{r['onnxruntime + measured']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
