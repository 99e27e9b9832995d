"""Tiles per second of each quality-model architecture alone, by inference engine, and through the
predictor with every measurement.

Measures, at batch 32 and the model input size, PyTorch eager (NCHW), PyTorch channels_last and
ONNX Runtime (the engine ``slideiqa.models.predictor.Predictor`` uses on CPU), all fp32, with the same
uint8-in / probabilities-out graph the predictor runs; then the ``Predictor`` itself, loading that
graph with the default model's classes and scale, so that it measures noise, motion, the defocus
evidence, the JPEG step and the exposure evidence (``slideiqa.measure.judgement``) as a map does:
as ``slideiqa predict`` runs it (the network on every core, then the measurements on one), and with
one inference thread (as each of a map's block threads runs it, one per core). ``iqanet+cells`` is iqanet with the default model's cell head: both outputs, and noise
measured per tile and per cell, as ``Predictor.predict_with_cells`` runs it. The tiles are the
bundled sample's (real tissue: the measurements' cost depends on it, the JPEG one most); the
weights are random: speed does not depend on them.

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
import openslide
import torch

from slideiqa.models import ModelCard, build_model
from slideiqa.models.card import load_card
from slideiqa.models.checkpoint import save_checkpoint
from slideiqa.models.export import TileClassifier, write_graph
from slideiqa.models.predictor import Predictor, onnx_session_options
from slideiqa.models.zoo import resolve_model

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "data" / "cmu_small_region.svs"


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


def sample_tiles(count: int, size: int) -> np.ndarray:
    """``count`` tiles of the bundled sample at its own 0.5 µm/px, the most tissue-filled first."""
    slide = openslide.OpenSlide(str(SAMPLE))
    width, height = slide.dimensions
    tiles = np.stack(
        [
            np.asarray(slide.read_region((x, y), 0, (size, size)).convert("RGB"))
            for y in range(0, height - size + 1, size)
            for x in range(0, width - size + 1, size)
        ]
    )
    darkness = (255 - tiles.min(axis=3)).mean(axis=(1, 2))
    return np.ascontiguousarray(tiles[np.argsort(-darkness)[:count]])


def measure(name: str, tiles: np.ndarray, seconds: float) -> dict[str, float]:
    architecture, cells = name.removesuffix(WITH_CELLS), name.endswith(WITH_CELLS)
    batch, size = tiles.shape[:2]
    default = load_card(resolve_model("default"))
    card = ModelCard(
        architecture,
        default.classes,
        input_size=size,
        mpp=default.mpp,
        cell_hidden=64 if cells else 0,
        cell_px=32 if cells else 0,
    )
    classifier = TileClassifier(build_model(architecture, len(card.classes), cell_hidden=card.cell_hidden), card)
    classifier = classifier.eval()
    tensor = torch.from_numpy(tiles)
    result = {}
    with torch.inference_mode():
        result["torch"] = rate(lambda: classifier(tensor), batch, seconds)
        classifier_cl = classifier.to(memory_format=torch.channels_last)
        result["torch channels_last"] = rate(lambda: classifier_cl(tensor), batch, seconds)
    with tempfile.TemporaryDirectory() as folder:
        stem = Path(folder) / "model"
        save_checkpoint(build_model(architecture, len(card.classes), cell_hidden=card.cell_hidden), card, stem)
        graph = write_graph(stem)
        session = onnxruntime.InferenceSession(str(graph), onnx_session_options(), providers=["CPUExecutionProvider"])
        result["onnxruntime"] = rate(lambda: session.run(None, {"tiles": tiles}), batch, seconds)
        for label, threads in (("predictor", None), ("predictor, one thread", 1)):
            predictor = Predictor(stem, engine="onnx", threads=threads)
            run = predictor.predict_with_cells if cells else predictor.predict
            result[label] = rate(lambda: run(tiles), batch, seconds)  # noqa: B023 (called before the loop goes on)
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
    print(
        "| architecture | torch eager | torch channels_last | ONNX Runtime | Predictor, every measurement | "
        "Predictor, one inference thread |"
    )
    print("|---|---|---|---|---|---|")
    tiles = sample_tiles(args.batch, args.size)
    for architecture in args.archs:
        r = measure(architecture, tiles, args.seconds)
        print(
            f"| {architecture} | {r['torch']:.0f} | {r['torch channels_last']:.0f} | {r['onnxruntime']:.0f} | "
            f"{r['predictor']:.0f} | {r['predictor, one thread']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
