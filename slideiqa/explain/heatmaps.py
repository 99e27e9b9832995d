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
  (``slideiqa.measure.noise_level``): the same wavelet estimate per 16 px patch, through the same logistic
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

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from slideiqa.errors import SlideIQAError
from slideiqa.extras import require_torch
from slideiqa.measure.judgement import judge_measured, measured_families
from slideiqa.measure.noise_level import measured_noise_probability, noise_sigma_patches
from slideiqa.pipeline.fields import at_judging_scale, measured_at, mirrored_to_tile, read_field, tile_origins
from slideiqa.settings.defaults import DEFAULT_THRESHOLD

if TYPE_CHECKING:
    from slideiqa.io.grid import TileGrid

#: A heatmap's pixels at or above this share of its maximum are where the model sees the defect.
WHERE_SHARE = 0.3
#: ... and, in a cell map (a probability), at least this P: on a clean field the largest P of a class
#: may be 0.003, and a share of it marks nothing real. Measured on the holdout crops of
#: ``benchmarks/explain_masks.py``: the clean crops' marked area falls from 22 % to 6 %, the IoU with
#: true defect masks moves by at most 0.05 (other libraries' exposure, 0.68 → 0.63).
CELL_WHERE_FLOOR = 0.1
#: Tiles explained per pass through the network (each pass holds their feature maps for the gradients).
BATCH = 16
#: The largest region of a slide explained at once, in tiles a side: one map block (1.8 mm at
#: 0.5 µm/px). Its pixels and heat maps bound the memory, whatever the slide's size: 16 × 16 tiles of
#: the 40 960 × 30 720 px benchmark slide peaked at 721 MB (the whole process, model included).
MAX_REGION_TILES = 16
#: The widest picture ``explanation_picture`` draws unless asked for more (a screen's width), its
#: panels per row, its title and caption sizes (px), and the opacity of full heat over the field.
PICTURE_WIDTH, PANELS_PER_ROW = 2500, 3
PICTURE_TITLE_PX, PICTURE_LABEL_PX = 20, 16
HEAT_OPACITY = 0.85


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
    tile_size: int = 224  # the side of each tile at ``origins``
    #: Which tiles a map would assess (tissue enough), where that is known (a slide's region); a
    #: field's tiles are all assessed, as ``slideiqa predict`` assesses them.
    assessed: np.ndarray | None = None

    def found_tiles(self, name: str, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
        """Per tile, whether ``name`` is found in it: assessed, with P(``name``) at least ``threshold``."""
        found = self.probabilities[:, self.classes.index(name)] >= threshold
        return found if self.assessed is None else found & self.assessed

    def found_in(self, name: str, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
        """Pixels of the assessed tiles whose P(``name``) reaches ``threshold``: where a verdict can
        rest on ``name``. A heat map elsewhere (the cells of a tile the measurements cleared, a
        Grad-CAM map of a class at P 0.01, glass) is an impression, not a finding."""
        mask = np.zeros(self.image.shape[:2], bool)
        for (y, x), found in zip(self.origins, self.found_tiles(name, threshold)):
            if found:
                mask[y : y + self.tile_size, x : x + self.tile_size] = True
        return mask

    def tiles_found_in(self, name: str, threshold: float = DEFAULT_THRESHOLD) -> int:
        return int(self.found_tiles(name, threshold).sum())

    def highest(self, name: str) -> float:
        """The highest P(``name``) of an assessed tile (0 where none is assessed)."""
        column = self.probabilities[:, self.classes.index(name)]
        column = column if self.assessed is None else column[self.assessed]
        return float(column.max(initial=0.0))

    @property
    def assessed_tiles(self) -> int:
        return len(self.origins) if self.assessed is None else int(self.assessed.sum())

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
        from slideiqa.models.predictor import Predictor

        self.predictor = Predictor(model, device=device)
        self.card = self.predictor.card

    @property
    def classes(self) -> list[str]:
        return self.card.classes

    def explain_tiles(
        self, tiles: np.ndarray, mpp: float | None = None, native: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (N, classes), heatmaps (N, classes, H, W) in 0–1): each class's P per cell,
        enlarged over the tile; ``good``'s heatmap is 0. ``mpp``: the tiles' µm/px, where not the
        model's; ``native`` as ``Predictor.predict``."""
        probabilities, cells = self.predictor.predict_with_cells(tiles, mpp, native)
        heatmaps = np.zeros((len(tiles), len(self.classes), *tiles.shape[1:3]), np.float32)
        for index in range(len(self.classes)):
            if index != self.card.good_index:
                heatmaps[:, index] = [enlarge(tile_cells[..., index], tiles.shape[1:3]) for tile_cells in cells]
        return probabilities, heatmaps


def explainer_for(model: str | Path = "default", device: str = "cpu", method: str = "auto") -> CellMaps | GradCam:
    """The model's cell map where it has a cell head (``auto``) or when asked (``cells``), else Grad-CAM."""
    if method not in ("auto", "cells", "gradcam"):
        raise ValueError(f"unknown explanation method {method!r}; use auto, cells or gradcam")
    if method == "gradcam":
        return GradCam(model, device)
    from slideiqa.models.card import ModelError, load_card
    from slideiqa.models.zoo import resolve_model

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

        from slideiqa.models.checkpoint import load_checkpoint
        from slideiqa.models.export import TileClassifier
        from slideiqa.models.zoo import resolve_model

        network, self.card = load_checkpoint(resolve_model(model))
        self.device = device
        self.classifier = TileClassifier(network, self.card).eval().to(device)
        self.network = network
        self.measured = measured_families(self.card.classes, self.card.mpp)
        self._torch = torch

    @property
    def classes(self) -> list[str]:
        return self.card.classes

    def explain_tiles(
        self, tiles: np.ndarray, mpp: float | None = None, native: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (N, classes), heatmaps (N, classes, H, W) in 0–1) of (N, H, W, 3) uint8
        tiles at the model's input size, as the module docstring says; ``good``'s heatmap is 0.
        ``mpp``: the tiles' µm/px, where not the model's; ``native`` as ``Predictor.predict``."""
        probabilities, heatmaps = [], []
        for start in range(0, len(tiles), BATCH):
            chunk = np.ascontiguousarray(tiles[start : start + BATCH], dtype=np.uint8)
            chunk_probabilities, cams = self._grad_cam(chunk)
            top = cams.max(axis=(2, 3), keepdims=True)
            chunk_heatmaps = np.where(top > 0, cams / np.where(top > 0, top, 1.0), 0.0).astype(np.float32)
            chunk_probabilities = judge_measured(
                chunk_probabilities, self.classes, chunk, self.measured, mpp=mpp, native=native
            )
            chunk_heatmaps *= chunk_probabilities[:, :, None, None].astype(np.float32)
            if "noise" in self.measured:
                chunk_heatmaps[:, self.classes.index("noise")] = [
                    enlarge(measured_noise_probability(noise_sigma_patches(tile)), chunk.shape[1:3]) for tile in chunk
                ]
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
    return np.asarray(
        Image.fromarray(np.asarray(cells, np.float32)).resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    )


def explain_field(
    path: str | Path,
    model: str | Path = "default",
    mpp: float | None = None,
    device: str = "cpu",
    explainer: CellMaps | GradCam | None = None,
    method: str = "auto",
) -> Explanation:
    """Heatmaps of a field image (PNG, JPEG, TIFF; a tile is a small field), shrunk to the model's
    µm/px as ``slideiqa predict`` does; ``mpp`` overrides the file's (with neither, the field is
    taken to be at the model's); ``method`` as :func:`explainer_for`. A slide file is refused: it is
    explained a region at a time (:func:`explain_slide_region`)."""
    explainer = explainer or explainer_for(model, device, method)
    image, stated = read_field(
        path, f"explain one region of it at a time: slideiqa explain {path} --region X,Y,W,H (level-0 px)"
    )
    model_mpp = explainer.card.mpp
    field_mpp = float(mpp) if mpp is not None else (float(stated) if stated else model_mpp)
    size = explainer.card.input_size
    field, judged_mpp, native = at_judging_scale(image, field_mpp, model_mpp, str(path), size)
    explanation = explain_image(
        mirrored_to_tile(field, size), explainer, str(path), measured_at(judged_mpp, model_mpp), native
    )
    # A field mirrored out to a tile is shown as itself: its mirror images are the model's view only.
    height, width = field.shape[:2]
    return replace(
        explanation,
        image=explanation.image[:height, :width],
        heatmaps={name: heat[:height, :width] for name, heat in explanation.heatmaps.items()},
    )


def explain_image(
    image: np.ndarray,
    explainer: CellMaps | GradCam,
    name: str = "image",
    mpp: float | None = None,
    native: bool = False,
) -> Explanation:
    """Heatmaps of an (H, W, 3) uint8 image already at the scale it is judged at (``mpp``: the
    model's µm/px where None, else a slightly coarser slide's own), tile by tile; ``native``: the
    image is its file's own pixels, not resampled (judged as a map judges such tiles)."""
    size = explainer.card.input_size
    origins = tile_origins(image, size, name)
    defects = [
        (index, name_of_class)
        for index, name_of_class in enumerate(explainer.classes)
        if index != explainer.card.good_index
    ]
    heatmaps = {name_of_class: np.zeros(image.shape[:2], np.float32) for _, name_of_class in defects}
    probabilities: list[np.ndarray] = []
    # A batch at a time: a region's tiles' own heat maps would take 1.2 MB a tile at once.
    for start in range(0, len(origins), BATCH):
        batch = origins[start : start + BATCH]
        tiles = np.stack([image[y : y + size, x : x + size] for y, x in batch])
        batch_probabilities, tile_heatmaps = explainer.explain_tiles(tiles, mpp, native)
        probabilities.append(batch_probabilities)
        for index, name_of_class in defects:
            heat = heatmaps[name_of_class]
            for (y, x), tile_heat in zip(batch, tile_heatmaps[:, index]):
                # Tiles shifted inwards at the far edges overlap: keep the stronger reading.
                np.maximum(heat[y : y + size, x : x + size], tile_heat, out=heat[y : y + size, x : x + size])
    return Explanation(
        image,
        mpp or explainer.card.mpp,
        explainer.classes,
        origins,
        np.concatenate(probabilities),
        heatmaps,
        explainer.method,
        explainer.where_floor,
        size,
    )


def explain_map_tile(
    map_path: str | Path,
    row: int,
    col: int,
    slide_path: str | Path | None = None,
    explainer: CellMaps | GradCam | None = None,
) -> Explanation:
    """Heatmaps of tile (``row``, ``col``) of a quality map, read from its slide exactly as the map
    read it (same level, decoder and resize), by the map's own model."""
    from slideiqa.io.grid import read_plan, read_tile
    from slideiqa.io.slide import open_slide
    from slideiqa.outputs.store import open_map

    quality = open_map(map_path)
    grid = quality.grid
    rows, cols = grid.shape
    if not (0 <= row < rows and 0 <= col < cols):
        raise ValueError(f"{quality.path}: no tile ({row}, {col}); the map has {rows} × {cols}")
    explainer = explainer or explainer_for(quality.options.model)
    with open_slide(slide_path or quality.slide.path) as slide:
        plan = read_plan(slide, grid)
        tile, _ = read_tile(slide, grid, plan, row, col)
    return explain_image(tile, explainer, f"{quality.path} tile ({row}, {col})", grid.model_mpp, plan.native)


@dataclass(frozen=True)
class RegionTiles:
    """The map grid's tiles that cover a region of a slide: rows ``row0``… and columns ``col0``…."""

    row0: int
    col0: int
    rows: int
    cols: int


def region_tiles(grid: TileGrid, region: tuple[int, int, int, int], where: str) -> RegionTiles:
    """The tiles of ``grid`` covering ``region`` (level-0 x, y, width, height), or a one-line error
    naming ``where`` for a region off the slide, empty, or larger than :data:`MAX_REGION_TILES` a side."""
    x, y, width, height = region
    if width <= 0 or height <= 0 or x < 0 or y < 0 or x + width > grid.width or y + height > grid.height:
        raise SlideIQAError(
            f"{where}: region {x},{y},{width},{height} is not inside the slide's "
            f"{grid.width} × {grid.height} level-0 px"
        )
    rows, cols = grid.shape
    row0, col0 = int(y // grid.step), int(x // grid.step)
    row1, col1 = min(rows, math.ceil((y + height) / grid.step)), min(cols, math.ceil((x + width) / grid.step))
    if max(row1 - row0, col1 - col0) > MAX_REGION_TILES:
        side = MAX_REGION_TILES * grid.tile_um
        raise SlideIQAError(
            f"{where}: region {x},{y},{width},{height} spans {row1 - row0} × {col1 - col0} tiles; "
            f"explain at most {MAX_REGION_TILES} × {MAX_REGION_TILES} "
            f"({side / 1000:.1f} × {side / 1000:.1f} mm) at a time"
        )
    return RegionTiles(row0, col0, row1 - row0, col1 - col0)


def explain_slide_region(
    path: str | Path,
    region: tuple[int, int, int, int],
    model: str | Path = "default",
    mpp: float | None = None,
    device: str = "cpu",
    explainer: CellMaps | GradCam | None = None,
    method: str = "auto",
) -> tuple[Explanation, RegionTiles]:
    """Heatmaps of the map grid's tiles covering ``region`` (level-0 x, y, width, height) of a slide,
    each read exactly as ``slideiqa map`` reads it (same grid, level, decoder and resize), so their
    probabilities are the map's, and assessed where the map assesses them (tissue by its default
    share); only those tiles are read, never the whole slide. ``mpp`` overrides the file's µm/px, as
    ``map --mpp`` does."""
    from slideiqa.io.grid import read_plan, read_tile
    from slideiqa.io.slide import open_slide
    from slideiqa.pipeline.plan import slide_grid, tissue_map
    from slideiqa.settings.options import DEFAULT_MIN_TISSUE

    explainer = explainer or explainer_for(model, device, method)
    size = explainer.card.input_size
    with open_slide(path) as slide:
        grid = slide_grid(slide, mpp, explainer.card)
        tiles = region_tiles(grid, region, str(path))
        tissue = tissue_map(slide, grid, artefacts=()).tissue[
            tiles.row0 : tiles.row0 + tiles.rows, tiles.col0 : tiles.col0 + tiles.cols
        ]
        plan = read_plan(slide, grid)
        image = np.zeros((tiles.rows * size, tiles.cols * size, 3), np.uint8)
        for row in range(tiles.rows):
            for col in range(tiles.cols):
                pixels, _ = read_tile(slide, grid, plan, tiles.row0 + row, tiles.col0 + col)
                image[row * size : (row + 1) * size, col * size : (col + 1) * size] = pixels
    explanation = explain_image(
        image, explainer, str(path), measured_at(grid.model_mpp, explainer.card.mpp), plan.native
    )
    # Shown as far as the slide goes (an edge tile's mirror image is the model's view only), its
    # tiles in explain_image's order (row by row) assessed where the map would: tissue enough.
    height = min(image.shape[0], math.ceil((grid.height / grid.step - tiles.row0) * size))
    width = min(image.shape[1], math.ceil((grid.width / grid.step - tiles.col0) * size))
    return replace(
        explanation,
        image=explanation.image[:height, :width],
        heatmaps={name: heat[:height, :width] for name, heat in explanation.heatmaps.items()},
        assessed=(tissue >= DEFAULT_MIN_TISSUE).reshape(-1),
    ), tiles


def explanation_picture(
    explanation: Explanation, title: str, threshold: float = DEFAULT_THRESHOLD, max_width: int = PICTURE_WIDTH
) -> Image.Image:
    """The field, then one panel per defect class: the field in grey with the class's heat map over it
    in yellow → red (opacity = heat), drawn only on the tiles whose P(class) reaches ``threshold`` —
    what a verdict can rest on (:meth:`Explanation.found_in`); a panel without such a tile says so
    and shows no heat. Each panel is captioned with its class and highest tile P (the figures of the
    command's table) and has a colour bar. Panels are laid three to a row and shrunk so that the
    picture is at most ``max_width`` px wide."""
    from PIL import ImageDraw

    from slideiqa.outputs.report import fonts

    title_font, font, _ = fonts(PICTURE_TITLE_PX, PICTURE_LABEL_PX)
    image = explanation.image
    columns = min(PANELS_PER_ROW, 1 + len(explanation.heatmaps))
    margin, caption, bar = 12, 2 * PICTURE_LABEL_PX + 12, 34
    scale = min(1.0, (max_width - margin * (columns + 1)) / (columns * image.shape[1]))
    width, height = max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))

    def shrunk(pixels: np.ndarray, resample: Image.Resampling = Image.Resampling.BILINEAR) -> np.ndarray:
        """``pixels`` at the panel's size: composited there, a large region costs panel-sized arrays."""
        if scale == 1.0:
            return pixels
        return np.asarray(Image.fromarray(pixels).resize((width, height), resample))

    field = shrunk(image, Image.Resampling.LANCZOS)
    grey = np.repeat(field.mean(axis=-1, keepdims=True, dtype=np.float32), 3, axis=-1) * 0.8 + 40
    panels: list[tuple[list[str], Image.Image, str | None]] = [
        (
            [f"the field ({image.shape[1]} × {image.shape[0]} px at {explanation.mpp:g} µm/px)"],
            Image.fromarray(field),
            None,
        )
    ]
    tiles = explanation.assessed_tiles
    kind = "tile" if explanation.assessed is None else "tissue tile"
    if explanation.assessed is not None:
        panels[0][0].append(f"{tiles} of {len(explanation.origins)} tiles tissue, assessed as the map does")
    for name, heat in explanation.heatmaps.items():
        highest = explanation.highest(name)
        found = explanation.tiles_found_in(name, threshold)
        if found:
            shown = shrunk(np.where(explanation.found_in(name, threshold), heat, np.float32(0.0)))
            lines = [
                f"{name}: P up to {highest:.2f}",
                f"found in {found} of {tiles} {kind}{'s' if tiles > 1 else ''} (outlined)",
            ]
        else:
            shown = np.zeros(grey.shape[:2], np.float32)
            lines = [f"{name}: P up to {highest:.2f}", f"below {threshold:g}: not found, no heat shown"]
        picture = Image.fromarray(np.clip(np.rint(_heat_over(grey, shown)), 0, 255).astype(np.uint8))
        _outline_tiles(picture, explanation, name, threshold, scale)
        panels.append((lines, picture, name))
    rows = math.ceil(len(panels) / columns)
    cell_height = caption + height + bar
    canvas = Image.new(
        "RGB",
        (margin + columns * (width + margin), 2 * margin + PICTURE_TITLE_PX + rows * (cell_height + margin)),
        "white",
    )
    draw = ImageDraw.Draw(canvas)
    draw.text((margin, margin), title, fill="black", font=title_font)
    what = "P per cell" if explanation.method == "cell map" else "heat"
    for number, (lines, picture, heat_name) in enumerate(panels):
        left = margin + (number % columns) * (width + margin)
        top = 2 * margin + PICTURE_TITLE_PX + (number // columns) * (cell_height + margin)
        for line_number, line in enumerate(lines):
            draw.text((left, top + line_number * (PICTURE_LABEL_PX + 4)), line, fill="black", font=font)
        canvas.paste(picture, (left, top + caption))
        if heat_name is not None:
            _colour_bar(draw, font, left, top + caption + height + 6, min(width, 240), f"{heat_name}: {what}")
    return canvas


def _heat_over(grey: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """``heat`` (0–1) drawn in yellow → red over ``grey``, its opacity the heat itself."""
    heat = np.clip(heat, 0.0, 1.0).astype(np.float32)
    colour = np.stack([np.full_like(heat, 255.0), 255.0 * (1.0 - heat), np.zeros_like(heat)], axis=-1)
    alpha = heat[..., None] * HEAT_OPACITY
    return grey * (1 - alpha) + colour * alpha


def _outline_tiles(picture: Image.Image, explanation: Explanation, name: str, threshold: float, scale: float) -> None:
    """Outline, on a panel drawn at ``scale``, each tile in which ``name`` is found: the verdict rests
    on the tile (a motion streak is measured over a whole tile), the heat says where in it."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(picture)
    found = explanation.found_tiles(name, threshold)
    for (y, x), is_found in zip(explanation.origins, found):
        if is_found:
            size = explanation.tile_size * scale
            draw.rectangle(
                (round(x * scale), round(y * scale), round(x * scale + size) - 1, round(y * scale + size) - 1),
                outline=(200, 0, 0),
                width=max(2, round(3 * scale)),
            )


def _colour_bar(draw, font, left: int, top: int, width: int, label: str) -> None:
    """The heat scale from 0 to 1 as drawn over a mid-grey field, with its ends marked."""
    ramp = _heat_over(np.full((1, width, 3), 128.0), np.linspace(0.0, 1.0, width)[None])[0]
    for x, colour in enumerate(np.rint(ramp).astype(int)):
        draw.line((left + x, top, left + x, top + 8), fill=tuple(colour))
    draw.rectangle((left, top, left + width - 1, top + 8), outline="black")
    draw.text((left, top + 10), "0", fill="black", font=font)
    draw.text((left + width - 10, top + 10), "1", fill="black", font=font)
    draw.text((left + width + 10, top - 4), label, fill="black", font=font)
