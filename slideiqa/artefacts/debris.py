"""Debris in a tile: dust, dirt and foreign particles on or under the coverslip — and specks of
tissue-marking dye, which are not debris.

A particle a few to tens of µm across is too small for the thumbnail, so it is looked for in each
tile the map already reads for the model, at the model's µm/px. Like a bubble's rim, debris is
**colourless** or brownish-grey: it blocks light in every channel about equally, where stains
darken some channels far more than others (haematoxylin absorbs little blue, eosin little red,
DAB little red). A tile has debris where, in some particle of at least :data:`MIN_PARTICLE_UM2`:

1. the optical density rises above what an opening of :data:`MAX_PARTICLE_UM` leaves (an OD
   top-hat: only structures smaller than a large particle) by :data:`CONTRAST` or more in every
   channel;
2. the rise is colourless or brownish grey: blue rises at least :data:`BLUE_TO_GREEN` of green's
   rise (haematoxylin and eosin absorb little blue), red at least :data:`RED_TO_MOST` and green at
   least :data:`GREEN_TO_MOST` of the largest (DAB absorbs little red; green, blue and teal marking
   dyes absorb red most), and
   green no more than :data:`GREEN_EXCESS` of the mean rise above the mean of red and blue. Every
   stain absorbs green more than that — haematoxylin, eosin, and DAB over haematoxylin, whose mixture
   in a Ki67-positive nucleus is nearly grey otherwise (its rise about 0.42 / 0.55 / 0.51: green
   0.17 of the mean above red and blue's) — where grey dust has no excess and brown dirt a deficit.
   Without this rule every tile of DAB-dense IHC was labelled debris;
3. the particle is compact: no longer than :data:`MAX_PARTICLE_UM` either way (a bubble's rim or a
   coverslip edge running into the tile is a colourless line too).

**Marking dye.** Grossing inks (green, teal) leave specks on and in the tissue that no stain
resembles: they absorb red most, then blue, green least (haematoxylin absorbs green at least as much
as red; eosin and DAB absorb little red). They are not a scanning defect, and "clean the coverslip
and rescan" is the wrong advice for them, so a tile where at least :data:`DYE_MIN_SHARE` of the
pixels rise so (by :data:`CONTRAST` in red, green at most :data:`DYE_GREEN_TO_RED` of red) is
reported as holding dye: judged as usual, named in a warning, never labelled; a grey particle that
touches dye is part of it (faint ink over eosin adds up to a grey at its core), not debris. On every clean source
of ``benchmarks/clean_tissue.py`` (H&E and IHC, 400 tissue tiles; three smear collections, 4330
tiles) no tile holds dye but on the CMU slide, whose green ink is in 7 of its 53 whole tissue tiles
(``training/analysis/dye_specks.py``) and in 10 of the 57 the sample's map assesses.

Tiles are searched at a quarter of their resolution (2 µm/px for the 0.5 µm/px model), their
optical densities averaged (:func:`density_shrunk`), where an 8 µm particle still covers a dozen
pixels, in a fraction of the time (debris takes 8.5 % of a map's
busy time: ``benchmarks/map_profile.py``). The thresholds were set on synthetic
debris (``slideiqa.synthetic.artefacts.debris``) on the training sources and checked for false
alarms on every clean source of ``training/sources.toml`` (``benchmarks/synthetic_artefacts.py``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from slideiqa.artefacts.pen import optical_density
from slideiqa.measure.block_means import block_means

MAX_PARTICLE_UM = 45.0
CONTRAST = 0.2
BLUE_TO_GREEN = 0.8
RED_TO_MOST = GREEN_TO_MOST = 0.6
GREEN_EXCESS = 0.12
#: A marking dye's rise: green at most this share of red's (and no more than blue's).
DYE_GREEN_TO_RED = 0.6
#: Least share of a tile's pixels (at the working resolution) risen as a dye for the tile to hold dye:
#: a few pixels (one 8 µm speck is about 13 at 2 µm/px).
DYE_MIN_SHARE = 0.001
#: An 8 µm particle: smaller dark specks are common in clean tissue (pigment, crushed nuclei).
MIN_PARTICLE_UM2 = np.pi * 4.0**2
#: Classes of the quality model whose verdict explains colourless specks (see :func:`debris_tiles`).
COMPRESSION_CLASSES = ("jpeg",)
#: Tiles are searched at about this µm/px.
WORKING_UM_PER_PX = 2.0


def density_shrunk(tiles: np.ndarray, factor: int) -> np.ndarray:
    """(N, 3, H / factor, W / factor) float32 optical density of (N, H, W, 3) uint8 ``tiles`` shrunk
    ``factor`` times (a power of two): 2 × 2 pixels averaged as light, then the density of those
    averaged over the rest of each block.

    Why densities are averaged. Stains add in optical density, so a mean density keeps a mixture's
    ratios: a DAB-brown pixel beside a haematoxylin-blue one stays a brown-over-blue mixture, which the
    colour rules know as stain, where their averaged light is a grey the rules take for dirt. Why every
    pixel: two decodes of one scan (a JPEG decoded at half size in the DCT, or in full and shrunk with
    Lanczos) differ by a few grey levels per pixel but agree on block means; read on every other pixel,
    2.8 % of the 40× benchmark slide's tiles were labelled debris on one decode and not the other, on
    every pixel 0.9 % (``benchmarks/decoders_part.py``). The first 2 × 2 step is averaged as light
    because the density of every pixel costs four times as much and a 1 µm step seldom straddles two
    stains."""
    if factor <= 1:
        return optical_density(np.ascontiguousarray(tiles.transpose(0, 3, 1, 2)))
    light = block_means(tiles, 2)
    density = optical_density(np.ascontiguousarray(light.transpose(0, 3, 1, 2)))
    block = factor // 2  # rows, then columns, summed as strided slices: a float mean over both costs more
    height, width = density.shape[2] // block * block, density.shape[3] // block * block
    rows = density[:, :, 0:height:block, :width].copy()
    for offset in range(1, block):
        rows += density[:, :, offset:height:block, :width]
    total = rows[..., 0:width:block].copy()
    for offset in range(1, block):
        total += rows[..., offset:width:block]
    total *= 1.0 / (block * block)
    return total


def speck_pixels(tiles: np.ndarray, mpp: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(N, h, w) masks of colourless dark particles and of marking dye in (N, H, W, 3) uint8 ``tiles``
    of ``mpp`` µm/px, at the working resolution, and that resolution's µm/px."""
    factor = 2 ** max(0, int(np.floor(np.log2(max(WORKING_UM_PER_PX / mpp, 1.0)))))
    # Channel planes, (N, 3, h, w): the rules below then run on contiguous planes (NumPy's reductions
    # over a last axis of three cost several times as much).
    od = density_shrunk(tiles, factor)
    um_per_px = mpp * factor
    size = int(MAX_PARTICLE_UM / um_per_px) | 1
    rise = od - ndimage.grey_opening(od, size=(1, 1, size, size))
    red, green, blue = rise[:, 0], rise[:, 1], rise[:, 2]
    most = np.maximum(np.maximum(red, green), blue)
    # Not haematoxylin or eosin (which absorb little blue), not DAB (which absorbs little red), not a
    # marking dye (which absorbs red most), not a mixture of stains (green in excess).
    colourless = blue >= BLUE_TO_GREEN * green
    colourless &= red >= RED_TO_MOST * most
    colourless &= green >= GREEN_TO_MOST * most
    colourless &= green - (red + blue) / 2 <= GREEN_EXCESS * ((red + green + blue) / 3)
    colourless &= np.minimum(np.minimum(red, green), blue) >= CONTRAST
    dyed = (red >= CONTRAST) & (red >= blue) & (blue >= green) & (green <= DYE_GREEN_TO_RED * red)
    return colourless, dyed, um_per_px


def debris_tiles(
    tiles: np.ndarray, mpp: float, probabilities: np.ndarray | None = None, classes: list[str] | None = None
) -> np.ndarray:
    """(N,) True for each of (N, H, W, 3) uint8 ``tiles`` of ``mpp`` µm/px that holds debris.

    With the quality model's ``probabilities`` and ``classes``, a tile the model finds most likely
    compressed (:data:`COMPRESSION_CLASSES`) is not called debris: strong JPEG averages colour over
    8–16 px blocks, which greys the small dark nuclei in them into colourless specks."""
    return specks_in_tiles(tiles, mpp, probabilities, classes)[0]


def specks_in_tiles(
    tiles: np.ndarray, mpp: float, probabilities: np.ndarray | None = None, classes: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(N,) True for each tile that holds debris (as :func:`debris_tiles`), and (N,) True for each
    that holds specks of marking dye (see the module docstring), from one pass over the tiles."""
    found = np.zeros(len(tiles), bool)
    if not len(tiles):
        return found, found.copy()
    if probabilities is not None and classes is not None:
        compressed = np.isin(
            np.nanargmax(probabilities, axis=1), [classes.index(c) for c in COMPRESSION_CLASSES if c in classes]
        )
    else:
        compressed = found
    particles, dyed, um_per_px = speck_pixels(tiles, mpp)
    min_px, max_side = MIN_PARTICLE_UM2 / um_per_px**2, MAX_PARTICLE_UM / um_per_px
    for index in np.flatnonzero((particles.sum(axis=(1, 2)) >= min_px) & ~compressed):
        labels, count = ndimage.label(particles[index])
        areas, boxes = np.bincount(labels.ravel())[1:], ndimage.find_objects(labels)
        # Pixels at or beside a dye's colour: faint ink over eosin adds up to a grey at its core
        # and keeps the dye's colour at its thinner rim, so a grey speck touching dye is dye.
        near_dye = ndimage.binary_dilation(dyed[index]) if dyed[index].any() else None
        for number in np.flatnonzero(areas >= min_px):
            rows, cols = boxes[number]
            # A particle is compact: a colourless line longer than the largest particle is the rim
            # of a bubble or a coverslip edge running into the tile.
            if max(rows.stop - rows.start, cols.stop - cols.start) > max_side:
                continue
            if near_dye is not None and near_dye[rows, cols][labels[rows, cols] == number + 1].any():
                continue
            found[index] = True
            break
    return found, dyed.mean(axis=(1, 2)) >= DYE_MIN_SHARE
