"""An edge tile's own part: where the mirror image that fills it past the slide's border begins.

A map's tile that runs past the slide's right or bottom edge is filled by mirroring the image about
that edge (``grid.mirrored_past_edge``), so that it is never judged on white padding. Measurements
that read a structure the mirror does not keep read only the part before the mirror line: the JPEG
block grid (the mirror image's blocks lie on another grid) and a streak's direction (mirrored, a
streak at θ adds one at −θ, and the tile looks less streaked than it is). The line is found from the
pixels, so it needs nothing from the tiler; a tile read from a finer level is shrunk before it is
mirrored (``grid.read_tile``), so that its line stays exact.
"""

from __future__ import annotations

import numpy as np


def own_extent(tiles: np.ndarray) -> np.ndarray:
    """(N, 2) rows and columns of each (N, H, W, 3) uint8 tile that are its own image (all of them
    for a tile wholly inside): the line is where the rest of the tile repeats what precedes it,
    line for line, in reverse. A flat tile reads as 1 × 1: callers keep a least size."""
    green = np.asarray(tiles)[..., 1]
    extent = np.empty((len(green), 2), np.int64)
    extent[:, 0] = _mirror_lines(green)
    extent[:, 1] = _mirror_lines(green.transpose(0, 2, 1))
    return extent


def _mirror_lines(images: np.ndarray) -> np.ndarray:
    """(N,) the first row of each (N, H, W) image from which every row to the end repeats the rows
    above it as symmetric padding does (reflected, and reflected again where fewer rows precede), or H."""
    count, length = images.shape[:2]
    lines = np.full(count, length, np.int64)
    # Symmetric padding repeats the last own row first: candidates are rows equal to the one above,
    # found on every 16th column for the whole batch at once (a tile's rows almost never agree
    # there, so most tiles have none) and checked in full one by one.
    sampled = images[:, :, ::16]
    candidates = (sampled[:, 1:] == sampled[:, :-1]).all(axis=2)
    for index in np.flatnonzero(candidates.any(axis=1)):
        image = images[index]
        for line in np.flatnonzero(candidates[index]) + 1:
            source = np.pad(np.arange(line), (0, int(length - line)), mode="symmetric")[line:]
            if np.array_equal(image[-1], image[source[-1]]) and np.array_equal(image[line:], image[source]):
                lines[index] = line
                break
    return lines
