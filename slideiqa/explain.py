"""Where in a field or tile the model sees each defect: heatmaps, and a picture of them.

The seed's future work asks to "analyze the activation maps and see if the explanation is consistent
with the spatial placement of the noise". Each defect class gets a heatmap over the field at the
model's scale, made in one of two ways:

* **The model's own cell map** (:class:`CellMaps`, the default for a model with a cell head, as the
  shipped default has): P(class) of every 32 px cell, from the head trained on local defects
  (``training/cell_head.py``), noise measured per cell, enlarged bilinearly — what the map stores
  as its cell arrays. It needs no gradients, so it runs in ONNX Runtime without PyTorch, and it localises
  better: on ``benchmarks/explain_masks.py`` IoU 0.56–0.82 per family against Grad-CAM's 0.39–0.92
  (motion 0.56–0.57 against 0.39–0.44).
* **Grad-CAM** (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
  Gradient-based Localization", ICCV 2017) for the classes the network judges: the feature maps of
  its last convolution, weighted by the spatial mean of the gradient of the class's logit with
  respect to them, summed and rectified. For ``iqanet`` that convolution has a stride of 32, so a
  224 px tile at 0.5 µm/px gives 7 × 7 cells of 16 µm, enlarged bilinearly to the tile's pixels.
* **The noise measurement itself** where the model's P(noise) is measured rather than learnt
  (``slideiqa.noise_level``): the same wavelet estimate per 16 px patch, through the same logistic
  step. The explanation is then the judgement, not an impression of it.

A cell map is a probability and is shown as it is. A Grad-CAM heatmap is scaled to each tile's
maximum and multiplied by the tile's probability of the class, so that in a field of several tiles a
tile the model finds free of a defect stays dark. The noise heatmap is the measured P(noise) of each
patch as it is: noise in a corner shows even where the tile as a whole is not judged noisy (the
tile's figure is a low percentile of its patches). :meth:`Explanation.where` marks the pixels at or
above :data:`WHERE_SHARE` of a heatmap's maximum (and, in a cell map, at least
:data:`CELL_WHERE_FLOOR`): the rule by which ``benchmarks/explain_masks.py`` measures the heatmaps
against true defect masks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from .extras import require_torch
from .fields import at_judging_scale, measured_at, mirrored_to_tile, read_field, tile_origins
from .judgement import judge_measured, measured_families
from .noise_level import measured_noise_probability, noise_sigma_patches

#: A heatmap's pixels at or above this share of its maximum are where the model sees the defect.
WHERE_SHARE = 0.3
#: ... and, in a cell map (a probability), at least this P: on a clean field the largest P of a class
#: may be 0.003, and a share of it marks nothing real. Measured on the holdout crops of
#: ``benchmarks/explain_masks.py``: the clean crops' marked area falls from 22 % to 6 %, the IoU with
#: true defect masks moves by at most 0.05 (other libraries' exposure, 0.68 → 0.63).
CELL_WHERE_FLOOR = 0.1
#: Tiles explained per pass through the network (each pass holds their feature maps for the gradients).
BATCH = 16


@dataclass
class Explanation:
    """Heatmaps of one field at the µm/px it is judged at: ``heatmaps[name]`` is (H, W) in 0–1 for each
    class but ``good``; ``probabilities`` are per tile (``origins`` gives each tile's (y, x))."""

    image: np.ndarray
    mpp: float
    classes: list[str]
    origins: list[tuple[int, int]]
    probabilities: np.ndarray
    heatmaps: dict[str, np.ndarray]
    method: str = ""  # "cell map" or "Grad-CAM"
    where_floor: float = 0.0  # the least heat ``where`` marks (CELL_WHERE_FLOOR for a cell map)

    def where(self, name: str, share: float = WHERE_SHARE) -> np.ndarray:
        """Pixels at or above ``share`` of the ``name`` heatmap's maximum and at least ``where_floor``
        (none if it is all 0)."""
        heat = self.heatmaps[name]
        top = float(heat.max())
        return heat >= max(share * top, self.where_floor) if top > 0 else np.zeros(heat.shape, bool)


class CellMaps:
    """A model with a cell head, explained by its own cell probabilities (the module docstring)."""

    method = "cell map"
    where_floor = CELL_WHERE_FLOOR

    def __init__(self, model: str | Path = "default", device: str = "cpu") -> None:
        from .inference import Predictor

        self.predictor = Predictor(model, device=device)
        self.card = self.predictor.card

    @property
    def classes(self) -> list[str]:
        return self.card.classes

    def explain_tiles(self, tiles: np.ndarray, mpp: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (N, classes), heatmaps (N, classes, H, W) in 0–1): each class's P per cell,
        enlarged over the tile; ``good``'s heatmap is 0. ``mpp``: the tiles' µm/px, where not the model's."""
        probabilities, cells = self.predictor.predict_with_cells(tiles, mpp)
        heatmaps = np.zeros((len(tiles), len(self.classes), *tiles.shape[1:3]), np.float32)
        for index in range(len(self.classes)):
            if index != self.card.good_index:
                heatmaps[:, index] = [enlarge(tile_cells[..., index], tiles.shape[1:3]) for tile_cells in cells]
        return probabilities, heatmaps


def explainer_for(model: str | Path = "default", device: str = "cpu", method: str = "auto") -> "CellMaps | GradCam":
    """The model's cell map where it has a cell head (``auto``) or when asked (``cells``), else Grad-CAM."""
    if method not in ("auto", "cells", "gradcam"):
        raise ValueError(f"unknown explanation method {method!r}; use auto, cells or gradcam")
    if method == "gradcam":
        return GradCam(model, device)
    from .models.card import ModelError, load_card
    from .models.zoo import resolve_model

    has_cells = load_card(resolve_model(model)).has_cells
    if method == "cells" and not has_cells:
        raise ModelError(f"{model}: this model has no cell head; use --method gradcam")
    return CellMaps(model, device) if has_cells else GradCam(model, device)


class GradCam:
    """A shipped or saved model, loaded in PyTorch to follow its gradients (ONNX Runtime has none)."""

    method = "Grad-CAM"
    where_floor = 0.0

    def __init__(self, model: str | Path = "default", device: str = "cpu") -> None:
        torch = require_torch("Grad-CAM (explain --method gradcam, or a model without a cell head)")

        from .models.checkpoint import load_checkpoint
        from .models.export import TileClassifier
        from .models.zoo import resolve_model

        network, self.card = load_checkpoint(resolve_model(model))
        self.device = device
        self.classifier = TileClassifier(network, self.card).eval().to(device)
        self.network = network
        self.measured = measured_families(self.card.classes, self.card.mpp)
        self._torch = torch

    @property
    def classes(self) -> list[str]:
        return self.card.classes

    def explain_tiles(self, tiles: np.ndarray, mpp: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (N, classes), heatmaps (N, classes, H, W) in 0–1) of (N, H, W, 3) uint8
        tiles at the model's input size, as the module docstring says; ``good``'s heatmap is 0.
        ``mpp``: the tiles' µm/px, where not the model's."""
        probabilities, heatmaps = [], []
        for start in range(0, len(tiles), BATCH):
            chunk = np.ascontiguousarray(tiles[start:start + BATCH], dtype=np.uint8)
            chunk_probabilities, cams = self._grad_cam(chunk)
            top = cams.max(axis=(2, 3), keepdims=True)
            chunk_heatmaps = np.where(top > 0, cams / np.where(top > 0, top, 1.0), 0.0).astype(np.float32)
            chunk_probabilities = judge_measured(chunk_probabilities, self.classes, chunk, self.measured, mpp=mpp)
            chunk_heatmaps *= chunk_probabilities[:, :, None, None].astype(np.float32)
            if "noise" in self.measured:
                chunk_heatmaps[:, self.classes.index("noise")] = [
                    enlarge(measured_noise_probability(noise_sigma_patches(tile)), chunk.shape[1:3]) for tile in chunk]
            probabilities.append(chunk_probabilities)
            heatmaps.append(chunk_heatmaps)
        return np.concatenate(probabilities), np.concatenate(heatmaps)

    def _grad_cam(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        features: list = []
        hook = self.network.backbone.register_forward_hook(lambda module, inputs, output: features.append(output))
        try:
            x = torch.from_numpy(tiles).to(self.device).permute(0, 3, 1, 2).float()
            logits = self.network(x * self.classifier.scale - self.classifier.offset)
        finally:
            hook.remove()
        maps = features[0]
        good = self.card.good_index
        cams = np.zeros((len(tiles), len(self.classes), *tiles.shape[1:3]), np.float32)
        for index in range(len(self.classes)):
            if index == good:
                continue
            # Tiles do not interact in eval mode, so the gradient of the batch's sum is each tile's own.
            (gradient,) = torch.autograd.grad(logits[:, index].sum(), maps, retain_graph=True)
            weights = gradient.mean(dim=(2, 3), keepdim=True)
            cam = torch.relu((weights * maps).sum(dim=1)).detach().cpu().numpy()
            cams[:, index] = [enlarge(c, tiles.shape[1:3]) for c in cam]
        probabilities = torch.softmax(logits, dim=1).detach().cpu().numpy()
        return probabilities, cams


def enlarge(cells: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A coarse map stretched bilinearly over ``shape`` (cell centres on the pixels they cover)."""
    return np.asarray(Image.fromarray(np.asarray(cells, np.float32)).resize((shape[1], shape[0]),
                                                                            Image.Resampling.BILINEAR))


def explain_field(path: str | Path, model: str | Path = "default", mpp: float | None = None,
                  device: str = "cpu", explainer: "CellMaps | GradCam | None" = None,
                  method: str = "auto") -> Explanation:
    """Heatmaps of a field image (PNG, JPEG, TIFF; a tile is a small field), shrunk to the model's
    µm/px as ``slideiqa predict`` does; ``mpp`` overrides the file's (with neither, the field is
    taken to be at the model's); ``method`` as :func:`explainer_for`."""
    explainer = explainer or explainer_for(model, device, method)
    image, stated = read_field(path)
    model_mpp = explainer.card.mpp
    field_mpp = float(mpp) if mpp is not None else (float(stated) if stated else model_mpp)
    size = explainer.card.input_size
    field, judged_mpp = at_judging_scale(image, field_mpp, model_mpp, str(path), size)
    explanation = explain_image(mirrored_to_tile(field, size), explainer, str(path),
                                measured_at(judged_mpp, model_mpp))
    # A field mirrored out to a tile is shown as itself: its mirror images are the model's view only.
    height, width = field.shape[:2]
    return replace(explanation, image=explanation.image[:height, :width],
                   heatmaps={name: heat[:height, :width] for name, heat in explanation.heatmaps.items()})


def explain_image(image: np.ndarray, explainer: "CellMaps | GradCam", name: str = "image",
                  mpp: float | None = None) -> Explanation:
    """Heatmaps of an (H, W, 3) uint8 image already at the scale it is judged at (``mpp``: the
    model's µm/px where None, else a slightly coarser slide's own), tile by tile."""
    size = explainer.card.input_size
    origins = tile_origins(image, size, name)
    tiles = np.stack([image[y:y + size, x:x + size] for y, x in origins])
    probabilities, tile_heatmaps = explainer.explain_tiles(tiles, mpp)
    heatmaps = {}
    for index, name_of_class in enumerate(explainer.classes):
        if index == explainer.card.good_index:
            continue
        heat = np.zeros(image.shape[:2], np.float32)
        for (y, x), tile_heat in zip(origins, tile_heatmaps[:, index]):
            # Tiles shifted inwards at the far edges overlap: keep the stronger reading.
            np.maximum(heat[y:y + size, x:x + size], tile_heat, out=heat[y:y + size, x:x + size])
        heatmaps[name_of_class] = heat
    return Explanation(image, mpp or explainer.card.mpp, explainer.classes, origins, probabilities, heatmaps,
                       explainer.method, explainer.where_floor)


def explain_map_tile(map_path: str | Path, row: int, col: int, slide_path: str | Path | None = None,
                     explainer: "CellMaps | GradCam | None" = None) -> Explanation:
    """Heatmaps of tile (``row``, ``col``) of a quality map, read from its slide exactly as the map
    read it (same level, decoder and resize), by the map's own model."""
    from .grid import TileGrid, read_plan, read_tile
    from .slide import open_slide
    from .store import open_map

    quality = open_map(map_path)
    attributes = quality.attributes
    grid = TileGrid(**{name: attributes["grid"][name]
                       for name in ("width", "height", "slide_mpp", "model_mpp", "tile_size")})
    rows, cols = grid.shape
    if not (0 <= row < rows and 0 <= col < cols):
        raise ValueError(f"{quality.path}: no tile ({row}, {col}); the map has {rows} × {cols}")
    explainer = explainer or explainer_for((attributes.get("options") or {}).get("model", "default"))
    with open_slide(slide_path or attributes["slide"]["path"]) as slide:
        tile, _ = read_tile(slide, grid, read_plan(slide, grid), row, col)
    return explain_image(tile, explainer, f"{quality.path} tile ({row}, {col})", grid.model_mpp)


def explanation_picture(explanation: Explanation, title: str) -> Image.Image:
    """The field, then one panel per defect class: the field in grey with the heatmap over it in
    yellow → red (opacity = heat), captioned with the class and its highest tile probability."""
    from PIL import ImageDraw

    from .report import fonts

    font, small, _ = fonts()
    image = explanation.image
    height, width = image.shape[:2]
    grey = np.repeat(image.mean(axis=-1, keepdims=True), 3, axis=-1) * 0.8 + 40
    panels = [("field", image.astype(np.float32))]
    for name, heat in explanation.heatmaps.items():
        colour = np.stack([np.full_like(heat, 255.0), 255.0 * (1.0 - heat), np.zeros_like(heat)], axis=-1)
        alpha = np.clip(heat, 0.0, 1.0)[..., None] * 0.85
        highest = float(explanation.probabilities[:, explanation.classes.index(name)].max())
        panels.append((f"{name} (P up to {highest:.2f})", grey * (1 - alpha) + colour * alpha))
    margin, top = 8, 44
    canvas = Image.new("RGB", (margin + len(panels) * (width + margin), top + height + margin), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((margin, 6), title, fill="black", font=font)
    for number, (caption, pixels) in enumerate(panels):
        left = margin + number * (width + margin)
        canvas.paste(Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8)), (left, top))
        draw.text((left, top - 16), caption, fill="black", font=small)
    return canvas
