"""Batched inference of a quality model on uint8 RGB tiles, on the fastest engine at hand.

Measured on a 2-core CPU (batch 32, 224 px): ONNX Runtime runs the fast model about 2.3× faster than
eager PyTorch, so on CPU the model runs as an ONNX graph — the one shipped beside the checkpoint
(checked against the SHA-256 in its card), or one exported once into a cache for a checkpoint that
has none — and PyTorch is not even imported: that saves seconds and half a gigabyte per process.
With CUDA, PyTorch runs on the GPU. Preprocessing and the softmax are part of the graph
(``models/export.py``), so callers hand over tiles exactly as a slide reader returns them.
Inference is fp32: bf16 is far slower on CPUs without AMX and int8 gains nothing without VNNI.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np

from slideiqa.errors import SlideIQAError
from slideiqa.extras import require_torch, torch_installed
from slideiqa.measure.blas_threads import one_blas_thread
from slideiqa.measure.judgement import (
    TileMeasurements,
    joined,
    judge_cells,
    judge_tiles,
    measure_tiles,
    measured_families,
)
from slideiqa.models.card import ModelError, file_sha256, graph_path, load_card
from slideiqa.models.zoo import resolve_model
from slideiqa.settings.options import DEVICE_PATTERN

Engine = Literal["auto", "torch", "onnx"]

#: Guards the start of a predictor's measuring threads (a map's block threads share one predictor).
_POOL_LOCK = threading.Lock()


def cache_dir() -> Path:
    """Where exported ONNX graphs are kept: ``$SLIDEIQA_CACHE`` or ``~/.cache/slideiqa``."""
    return Path(os.environ.get("SLIDEIQA_CACHE", Path.home() / ".cache" / "slideiqa"))


def _nvidia_driver_present() -> bool:
    """Whether this machine could have a CUDA GPU at all; asked before importing torch, so that
    ``auto`` on a machine without one never pays for the import."""
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidia0").exists()


def choose_device(device: str) -> str:
    """``auto`` is CUDA when there is a GPU, else the CPU; asking for a missing GPU is a clear error."""
    if not DEVICE_PATTERN.fullmatch(device):
        raise SlideIQAError(f"unknown device {device!r}; use auto, cpu or cuda")
    if device == "cpu" or (device == "auto" and not _nvidia_driver_present()):
        return "cpu"
    if device == "auto":
        # A GPU without PyTorch installed: the CPU runs the shipped ONNX graph.
        if not torch_installed():
            return "cpu"
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    torch = require_torch(f"--device {device}")
    if not torch.cuda.is_available():
        raise SlideIQAError(f"device {device!r} asked for, but no CUDA GPU is available here")
    return device


def _exported_graph(checkpoint: Path) -> Path:
    """The ONNX graph of ``checkpoint``: the one shipped beside it when its card vouches for it,
    else one exported into the cache (named by everything baked into it) on first use."""
    card = load_card(checkpoint)
    shipped = graph_path(checkpoint)
    if card.graph_sha256 and shipped.exists():
        if file_sha256(shipped) != card.graph_sha256:
            raise ModelError(f"{shipped}: does not match its model card (SHA-256 differs)")
        return shipped
    torch = require_torch(f"{checkpoint}: a checkpoint without its ONNX graph (exported on first use)")

    from slideiqa.models.checkpoint import load_checkpoint
    from slideiqa.models.export import TileClassifier, export_onnx

    network, card = load_checkpoint(checkpoint)
    identity = json.dumps(
        [
            card.weights_sha256,
            card.architecture,
            len(card.classes),
            card.input_size,
            card.mean,
            card.std,
            torch.__version__,
        ],
        sort_keys=True,
    )
    path = cache_dir() / "onnx" / f"{hashlib.sha256(identity.encode()).hexdigest()[:32]}.onnx"
    if not path.exists():
        export_onnx(TileClassifier(network, card).eval(), card, path)
    return path


def onnx_session_options(threads: int | None = None):
    """ONNX Runtime's options for a predictor. Its threads do not spin after a run: by default they
    busy-wait for the next one, and on two cores they then take the CPU from the work between runs —
    the noise and motion measurements, and a map's tile decoding (measured: the shipped default's graph
    followed by its measurements, batches of 32 in a loop, ran at 456 tiles/s spinning, 611 not)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    return options


def _graph_card_mismatch(session, card) -> str | None:
    """How an ONNX graph's inputs and outputs disagree with the card that describes it, or None: a
    card edited to list other classes would otherwise label every column of the output wrongly."""
    shapes = {node.name: node.shape for node in [*session.get_inputs(), *session.get_outputs()]}
    size, classes = card.input_size, len(card.classes)
    wanted = {"tiles": [None, size, size, 3], "probabilities": [None, classes]}
    if card.has_cells:
        wanted["cell_probabilities"] = [None, card.cells_per_side, card.cells_per_side, classes]
    for name, dims in wanted.items():
        if name not in shapes:
            return f"it has no {name!r} {'input' if name == 'tiles' else 'output'}"
        actual = shapes[name]
        # A named (dynamic) dimension fits any size; the batch dimension is always dynamic.
        if len(actual) != len(dims) or any(
            isinstance(a, int) and w is not None and a != w for a, w in zip(actual, dims)
        ):
            return f"{name} has shape {actual}, the card says {['N' if d is None else d for d in dims]}"
    return None


class Predictor:
    """A loaded quality model. ``predict`` maps (N, H, W, 3) uint8 tiles to (N, classes) probabilities;
    ``predict_with_cells`` adds, for a model with a cell head, the probabilities of every cell."""

    def __init__(
        self,
        model: str | Path = "default",
        *,
        device: str = "auto",
        engine: Engine = "auto",
        threads: int | None = None,
        measure_noise: bool = True,
        measure_motion: bool = True,
        measure_jpeg: bool = True,
        measure_exposure: bool = True,
        measure_defocus: bool = True,
    ) -> None:
        self.checkpoint = resolve_model(model)
        self.card = load_card(self.checkpoint)
        self.device = choose_device(device)
        if engine == "auto":
            engine = "onnx" if self.device == "cpu" else "torch"
        self.engine = engine
        # Noise and motion are measured, not guessed, where the model sees tiles at the scale the
        # measurements were calibrated on, and exposure is capped by its physical evidence
        # (judgement.py); measure_noise, measure_motion, measure_defocus, measure_jpeg or
        # measure_exposure=False gives the network's own P(noise), P(motion), P(defocus), P(jpeg) or P(exposure).
        asked = {
            "noise": measure_noise,
            "motion": measure_motion,
            "defocus": measure_defocus,
            "jpeg": measure_jpeg,
            "exposure": measure_exposure,
        }
        #: The defect families this predictor measures rather than takes from the network.
        self.measured_families = [
            family for family in measured_families(self.card.classes, self.card.mpp) if asked[family]
        ]
        self._session: Any = None  # an ONNX Runtime session, or
        self._classifier: Any = None  # a torch module on the device
        # The measurements use the cores the network was given: all of them for predict and explain,
        # one in each of a map's block threads (which already run one per core).
        self._measure_threads = max(1, threads or os.cpu_count() or 1)
        self._measure_pool: ThreadPoolExecutor | None = None
        if engine == "onnx":
            self._session = self._onnx_session(threads)
        else:
            self._classifier = self._torch_classifier(threads)

    def _onnx_session(self, threads: int | None):
        import onnxruntime

        path = _exported_graph(self.checkpoint)
        session = onnxruntime.InferenceSession(
            str(path), onnx_session_options(threads), providers=["CPUExecutionProvider"]
        )
        problem = _graph_card_mismatch(session, self.card)
        if problem:
            raise ModelError(f"{path}: the graph does not fit its model card {self.checkpoint}: {problem}")
        return session

    def _torch_classifier(self, threads: int | None):
        torch = require_torch("the torch engine")

        from slideiqa.models.checkpoint import load_checkpoint
        from slideiqa.models.export import TileClassifier

        network, self.card = load_checkpoint(self.checkpoint)
        if threads:
            torch.set_num_threads(threads)
        return TileClassifier(network, self.card).eval().to(self.device)

    @property
    def classes(self) -> list[str]:
        return self.card.classes

    @property
    def measure_noise(self) -> bool:
        return "noise" in self.measured_families

    @property
    def has_cells(self) -> bool:
        return self.card.has_cells

    def predict(self, tiles: np.ndarray, mpp: float | None = None, native: bool = False) -> np.ndarray:
        """(N, classes) probabilities of (N, size, size, 3) uint8 tiles; ``mpp``: the tiles' µm/px
        where it is not the model's (a slide judged at its own, slightly coarser pixels), which
        the measurements that read detail of a physical size scale to; ``native``: the tiles are
        their file's own pixels, not resampled, so a JPEG artefact would show its lattice
        (``jpeg_quantisation.judge_jpeg``)."""
        return self._run(tiles, cells=False, mpp=mpp, native=native)[0]

    def predict_with_cells(
        self, tiles: np.ndarray, mpp: float | None = None, native: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """(tile probabilities (N, classes), cell probabilities (N, rows, cols, classes)) from one
        pass; noise measured per cell as per tile (``noise_level.PatchNoise.per_cell``); ``mpp`` and
        ``native`` as :meth:`predict`."""
        if not self.has_cells:
            raise ModelError(f"{self.checkpoint}: this model has no cell head; it judges whole tiles only")
        probabilities, cell_probabilities = self._run(tiles, cells=True, mpp=mpp, native=native)
        assert cell_probabilities is not None  # asked for, and the model has a cell head
        return probabilities, cell_probabilities

    def _run(
        self, tiles: np.ndarray, cells: bool, mpp: float | None = None, native: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(tile probabilities, cell probabilities or None) with the measured families judged, by either
        engine."""
        tiles = np.ascontiguousarray(tiles, dtype=np.uint8)
        size = self.card.input_size
        if tiles.ndim != 4 or tiles.shape[1:] != (size, size, 3):
            raise ValueError(f"expected tiles of shape (N, {size}, {size}, 3), got {tiles.shape}")
        outputs = self._network(tiles, cells)
        probabilities = outputs[0]
        cell_probabilities = outputs[1] if cells else None
        if not self.measured_families:
            return probabilities, cell_probabilities
        measured = self._measure(tiles, mpp)
        probabilities = judge_tiles(probabilities, self.classes, self.measured_families, measured, native)
        if cell_probabilities is not None:
            cell_probabilities = judge_cells(cell_probabilities, self.classes, measured, self.card.cell_px, native)
        return probabilities, cell_probabilities

    def _measure(self, tiles: np.ndarray, mpp: float | None) -> TileMeasurements:
        """The tiles' measurements, the batch split over the predictor's threads where it has more than
        one: numpy's passes release the GIL, and each tile's measurements are its own, so the parts
        give what the whole batch would, tile for tile. Measured on two cores, the default model as
        ``predict`` runs it: about 520 → 700 tiles/s (``benchmarks/model_speed.py``)."""
        parts = min(self._measure_threads, len(tiles))
        if parts <= 1:
            return measure_tiles(tiles, self.measured_families, mpp)
        if self._measure_pool is None:
            with _POOL_LOCK:
                if self._measure_pool is None:
                    self._measure_pool = ThreadPoolExecutor(
                        self._measure_threads, thread_name_prefix="slideiqa-measure"
                    )
        # BLAS held to one thread from this thread: OpenBLAS ignores a limit set from the pool's.
        with one_blas_thread():
            measured = self._measure_pool.map(
                lambda part: measure_tiles(part, self.measured_families, mpp), np.array_split(tiles, parts)
            )
            return joined(list(measured))

    def _network(self, tiles: np.ndarray, cells: bool) -> list[np.ndarray]:
        """The network's outputs for ``tiles``: the tile probabilities, and the cells' where asked."""
        if self._session is not None:
            names = ["probabilities", "cell_probabilities"] if cells else ["probabilities"]
            return self._session.run(names, {"tiles": tiles})
        import torch

        with torch.inference_mode():
            result = self._classifier(torch.from_numpy(tiles).to(self.device))
            result = result if isinstance(result, tuple) else (result,)
            return [r.float().cpu().numpy() for r in result[: 2 if cells else 1]]

    def score(self, probabilities: np.ndarray) -> np.ndarray:
        """Quality score = P(good)."""
        return probabilities[:, self.card.good_index]
