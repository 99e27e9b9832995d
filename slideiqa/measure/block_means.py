"""Tiles shrunk by averaging blocks of pixels, for a measurement that reads a tile at a coarser scale
than the network: its tone against its slide's.

Why averages and not every n-th pixel. A single pixel carries the decoder's fine detail: two decodes
of one scan — a JPEG decoded at half size in the DCT, or in full and then shrunk with Lanczos — give
the same tile's pixels that differ by a few grey levels each, while their block means agree. Read on
every 4th pixel, the same tiles' glass came out 1.3 grey levels apart between the two decodes and
4.5 % of them were judged to depart from their slide's tone on one and not the other; read on 4 × 4
means, 0.25 and 0.5 % (``benchmarks/decoders_part.py``). Debris starts from 2 × 2 means too and
averages the rest as optical densities (``debris.density_shrunk``): averaged as light, a DAB-brown
pixel and its haematoxylin-blue neighbour make a grey that its colour rule takes for dirt.
"""

from __future__ import annotations

import numpy as np


def block_means(tiles: np.ndarray, block: int) -> np.ndarray:
    """(N, H / block, W / block, 3) uint8: the mean of each ``block`` × ``block`` pixels of (N, H, W, 3)
    uint8 ``tiles``, rounded. Rows are summed first, then columns, in uint16: a float mean over both
    axes costs ten times as much."""
    tiles = np.asarray(tiles)
    count, height, width, channels = tiles.shape
    height, width = height // block * block, width // block * block
    rows = tiles[:, :height, :width].reshape(count, height // block, block, width, channels)
    summed = rows[:, :, 0].astype(np.uint16)
    for offset in range(1, block):
        summed += rows[:, :, offset]
    columns = summed.reshape(count, height // block, width // block, block, channels)
    total = columns[:, :, :, 0].copy()
    for offset in range(1, block):
        total += columns[:, :, :, offset]
    total += block * block // 2
    total //= block * block
    return total.astype(np.uint8)
