"""Synthetic preparation artefacts with physical parameters: pen ink, folds, bubbles, edges, debris.

The counterpart of :mod:`slideiqa.synthetic.distortions` for what happens to a slide before it reaches the
scanner. Every function takes a ``uint8`` RGB image of any size, its ``mpp`` (µm per pixel), a
``severity`` in [0, 1] and a ``seed``, and returns ``(image, mask)``: the artefact drawn where
``mask`` is True, every other pixel unchanged. Severity 0 returns the input and an empty mask;
the result is deterministic for a given seed. Light is composed in optical density (OD, Beer–Lambert:
absorbers in one light path add), which is how ink, a second tissue layer or a dust particle darken
what lies under them.

* ``pen`` — a marker stroke along a random smooth curve, ``PEN_WIDTH_UM`` wide, of one of the ink
  ink colours of :data:`INK_OD` (three measured on HistoQC's real pen images); its OD is
  ``2 × severity`` times the measured one (severity 0.5: the real ink; less: a thin, dry stroke).
* ``fold`` — tissue folded over itself: a band of ``100 + 400 × severity`` µm across the image where
  a mirrored copy of the tissue beside it lies on top (its OD added to the tissue's).
* ``bubble`` — air under the coverslip: a disk of radius ``40 + 260 × severity`` µm whose interior
  is washed out (the air gap's reflections add ``60 % × severity`` of white) inside a dark refracting
  rim ``4 + 8 × severity`` µm wide (OD ``0.8 × severity``, neutral).
* ``edge`` — a coverslip or slide edge: a straight dark line ``3 + 12 × severity`` µm wide (neutral OD
  ``1.2 × severity``) across the image, with a shadow fading over 100 µm on one side.
* ``debris`` — dust and particles out of the focal plane: ``2 + 18 × severity`` dark particles of
  5–40 µm (neutral or brownish OD up to ``1.5 × severity``), each blurred by a defocus of 1–4 µm.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from slideiqa.synthetic.distortions import Seed, _check_image, _check_severity, _rng

#: OD (R, G, B) of ink: green, red and black are the median ink pixel of HistoQC's real pen images;
#: blue, of which there is no real image here, is a typical blue marker's (absorbs red and green).
INK_OD: dict[str, tuple[float, float, float]] = {
    "green": (0.33, 0.12, 0.14),
    "red": (0.09, 0.63, 0.46),
    "black": (1.03, 1.11, 1.26),
    "blue": (0.55, 0.40, 0.08),
}
PEN_WIDTH_UM = 400.0
ARTEFACTS: tuple[str, ...] = ("pen", "fold", "bubble", "edge", "debris")


def _to_od(image: np.ndarray) -> np.ndarray:
    return -np.log10(np.clip(image.astype(np.float64), 1.0, 255.0) / 255.0)


def _from_od(od: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(255.0 * 10.0**-od), 0, 255).astype(np.uint8)


Drawn = tuple[np.ndarray, np.ndarray]


def _synthesiser(draw: Callable[..., Drawn]) -> Callable[..., Drawn]:
    """The public form of a drawing function ``draw(image, severity, mpp, rng, **options)``: checked
    input, a seeded generator, and the input itself (with an empty mask) at severity 0."""

    @functools.wraps(draw)
    def synthesise(image: np.ndarray, severity: float, mpp: float, seed: Seed = None, **options) -> Drawn:
        image, severity = _check_image(image), _check_severity(severity)
        if severity == 0:
            return image.copy(), np.zeros(image.shape[:2], bool)
        return draw(image, severity, mpp, _rng(seed), **options)

    return synthesise


def _grid(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    height, width = image.shape[:2]
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    return rows, cols


def _distance_to_curve(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Distance in pixels to a quadratic Bézier curve that crosses the image from side to side."""
    height, width = image.shape[:2]
    y, x = _grid(image)
    if rng.random() < 0.5:  # left to right, else top to bottom
        ends = [(rng.uniform(0, height), 0.0), (rng.uniform(0, height), width - 1.0)]
    else:
        ends = [(0.0, rng.uniform(0, width)), (height - 1.0, rng.uniform(0, width))]
    control = (rng.uniform(0, height), rng.uniform(0, width))
    t = np.linspace(0, 1, 4 * max(height, width))[:, None]
    points = (1 - t) ** 2 * np.array(ends[0]) + 2 * (1 - t) * t * np.array(control) + t**2 * np.array(ends[1])
    curve = np.zeros((height, width), bool)
    rows = np.clip(np.rint(points[:, 0]).astype(int), 0, height - 1)
    cols = np.clip(np.rint(points[:, 1]).astype(int), 0, width - 1)
    curve[rows, cols] = True
    return ndimage.distance_transform_edt(~curve)


@_synthesiser
def pen(image: np.ndarray, severity: float, mpp: float, rng: np.random.Generator, colour: str | None = None) -> Drawn:
    """A marker stroke of ``colour`` (random among :data:`INK_OD` if None) across the image."""
    colour = colour or str(rng.choice(sorted(INK_OD)))
    distance_um = _distance_to_curve(image, rng) * mpp
    cover = np.clip((PEN_WIDTH_UM / 2 - distance_um) / max(mpp, 1e-9) + 0.5, 0.0, 1.0)  # 1 px soft edge
    od = _to_od(image) + cover[..., None] * np.asarray(INK_OD[colour]) * 2.0 * severity
    return _from_od(od), cover > 0


@_synthesiser
def fold(image: np.ndarray, severity: float, mpp: float, rng: np.random.Generator) -> Drawn:
    """A band where the tissue beside it, mirrored across the band's edge, lies on top of it."""
    height, width = image.shape[:2]
    band_px = (100.0 + 400.0 * severity) / mpp
    y, x = _grid(image)
    angle = rng.uniform(0, np.pi)
    normal = np.cos(angle) * x + np.sin(angle) * y  # distance along the band's normal
    start = rng.uniform(normal.min(), max(normal.min(), normal.max() - band_px))
    inside = (normal >= start) & (normal < start + band_px)
    # The layer on top comes from the far side of the fold line, mirrored: tissue at depth d under
    # the fold is covered by the tissue at distance d before it.
    mirror = 2 * start - normal
    source_y = np.clip(np.rint(y + (mirror - normal) * np.sin(angle)), 0, height - 1).astype(int)
    source_x = np.clip(np.rint(x + (mirror - normal) * np.cos(angle)), 0, width - 1).astype(int)
    od = _to_od(image)
    od[inside] += od[source_y[inside], source_x[inside]] * min(1.0, 0.5 + severity)
    return _from_od(od), inside


@_synthesiser
def bubble(image: np.ndarray, severity: float, mpp: float, rng: np.random.Generator) -> Drawn:
    """An air bubble: a washed-out disk inside a dark refracting rim."""
    height, width = image.shape[:2]
    y, x = _grid(image)
    radius = (40.0 + 260.0 * severity) / mpp
    rim = (4.0 + 8.0 * severity) / mpp
    centre = rng.uniform(0, height), rng.uniform(0, width)
    distance = np.hypot(y - centre[0], x - centre[1])
    interior, ring = distance < radius - rim, (distance >= radius - rim) & (distance < radius)
    out = image.astype(np.float64)
    out[interior] += (255.0 - out[interior]) * 0.6 * severity
    od = _to_od(np.clip(np.rint(out), 0, 255).astype(np.uint8))
    od[ring] += 0.8 * severity
    return _from_od(od), interior | ring


@_synthesiser
def edge(image: np.ndarray, severity: float, mpp: float, rng: np.random.Generator) -> Drawn:
    """A coverslip or slide edge: a straight dark line with a shadow on one side."""
    y, x = _grid(image)
    angle = rng.uniform(0, np.pi)
    normal = np.cos(angle) * x + np.sin(angle) * y
    where = rng.uniform(np.percentile(normal, 20), np.percentile(normal, 80))
    signed_um = (normal - where) * mpp
    half = (3.0 + 12.0 * severity) / 2
    line = np.abs(signed_um) < half
    past = signed_um - half
    shadow = np.where((past >= 0) & (past < 500.0), np.exp(-past / 100.0), 0.0) * 0.3 * severity  # 5 decays
    od = _to_od(image) + (line * 1.2 * severity + shadow)[..., None]
    return _from_od(od), line | (shadow > 0)


@_synthesiser
def debris(image: np.ndarray, severity: float, mpp: float, rng: np.random.Generator) -> Drawn:
    """Dark particles out of the focal plane, a few to tens of µm."""
    height, width = image.shape[:2]
    y, x = _grid(image)
    density = np.zeros((height, width))
    tint = np.zeros((height, width, 3))
    for _ in range(int(round(2 + 18 * severity))):
        radius = rng.uniform(2.5, 20.0) / mpp
        centre = rng.uniform(0, height), rng.uniform(0, width)
        particle = (np.hypot(y - centre[0], x - centre[1]) < radius).astype(np.float64)
        particle = ndimage.gaussian_filter(particle, rng.uniform(1.0, 4.0) / mpp)
        particle[particle < 1e-3] = 0.0  # the blur's far tail changes no grey level: keep the mask exact
        strength = rng.uniform(0.5, 1.0) * 1.5 * severity
        colour = np.array([1.0, 1.0, 1.0]) if rng.random() < 0.6 else np.array([0.8, 1.0, 1.3])  # grey or brown
        density += particle * strength
        tint += particle[..., None] * strength * colour
    od = _to_od(image) + tint
    return _from_od(od), density > 0


SYNTHESISERS: dict[str, Callable[..., Drawn]] = {
    "pen": pen,
    "fold": fold,
    "bubble": bubble,
    "edge": edge,
    "debris": debris,
}


def add_artefact(kind: str, image: np.ndarray, severity: float, mpp: float, seed: Seed = None, **options) -> Drawn:
    """``kind`` (one of :data:`ARTEFACTS`) drawn on ``image``; ``options`` go to its function (the
    pen's ``colour``); see the module docstring."""
    if kind not in SYNTHESISERS:
        raise ValueError(f"unknown artefact {kind!r}; known: {', '.join(ARTEFACTS)}")
    return SYNTHESISERS[kind](image, severity, mpp, seed, **options)
