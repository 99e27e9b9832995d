"""Test slides written from real pixels: pyramidal TIFF, OME-TIFF, truncated copies, spatial phantoms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image


def pyramid(image: np.ndarray, levels: int, step: int = 2) -> list[np.ndarray]:
    out = [image]
    for _ in range(levels - 1):
        previous = out[-1]
        out.append(
            np.asarray(
                Image.fromarray(previous).resize(
                    (max(1, previous.shape[1] // step), max(1, previous.shape[0] // step)), Image.Resampling.BOX
                )
            )
        )
    return out


def write_pyramidal_tiff(
    path: Path,
    image: np.ndarray,
    mpp: float,
    levels: int = 3,
    tile: int = 256,
    ome: bool = False,
    compression: str = "jpeg",
    level_step: int = 2,
    quality: int | None = None,
) -> Path:
    """A tiled pyramidal TIFF as scanners write it: reduced levels (each ``level_step`` times
    coarser; Aperio writes 4) as separate pages with ``subfiletype=1`` (OpenSlide does not see SubIFD
    pyramids), resolution tags in pixels per cm. tifffile stores RGB JPEG tiles as YCbCr with 2×2
    chroma subsampling, as most scanners do (Aperio keeps RGB: see the bundled SVS); ``quality`` is
    the JPEG quality (tifffile's default where None)."""
    images = pyramid(image, levels, level_step)
    with tifffile.TiffWriter(path, bigtiff=False, ome=ome) as tif:
        for index, level in enumerate(images):
            scale = level_step**index
            options = dict(
                tile=(tile, tile),
                photometric="rgb",
                compression=compression,
                compressionargs={"level": quality} if quality is not None else None,
                resolution=(1e4 / (mpp * scale), 1e4 / (mpp * scale)),
                resolutionunit="CENTIMETER",
            )
            if ome and index == 0:
                options["metadata"] = {
                    "axes": "YXS",
                    "PhysicalSizeX": mpp,
                    "PhysicalSizeY": mpp,
                    "PhysicalSizeXUnit": "µm",
                    "PhysicalSizeYUnit": "µm",
                }
                options["subifds"] = levels - 1
                tif.write(level, **options)
            elif ome:
                tif.write(level, subfiletype=1, **options)
            else:
                tif.write(level, subfiletype=1 if index else 0, metadata=None, **options)
    return path


def truncated_copy(source: Path, destination: Path, fraction: float) -> Path:
    data = source.read_bytes()
    destination.write_bytes(data[: int(len(data) * fraction)])
    return destination


def with_garbage_tile(source: Path, destination: Path, tile_index: int, page: int = 0) -> tuple[int, int, int, int]:
    """A copy of a tiled TIFF whose compressed bytes of one tile are replaced by random bytes, as a
    failing disk or a broken transfer leaves them; returns that tile's box (x0, y0, x1, y1) in the
    page's pixels."""
    with tifffile.TiffFile(source) as tiff:
        tiles = tiff.pages[page]
        offset, count = int(tiles.dataoffsets[tile_index]), int(tiles.databytecounts[tile_index])
        per_row = -(-tiles.imagewidth // tiles.tilewidth)
        row, col = divmod(tile_index, per_row)
        box = (col * tiles.tilewidth, row * tiles.tilelength, (col + 1) * tiles.tilewidth, (row + 1) * tiles.tilelength)
    data = bytearray(source.read_bytes())
    data[offset : offset + count] = np.random.default_rng(tile_index).integers(0, 256, count, dtype=np.uint8).tobytes()
    destination.write_bytes(bytes(data))
    return box


def tiles_over(box: tuple[int, int, int, int], step: float, shape: tuple[int, int]) -> np.ndarray:
    """Grid cells (of ``step`` level-0 px, ``shape`` rows × columns) whose footprint overlaps ``box``."""
    rows, cols = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    x0, y0 = np.round(cols * step), np.round(rows * step)
    return (x0 < box[2]) & (x0 + step > box[0]) & (y0 < box[3]) & (y0 + step > box[1])


def enlarged_slide(path: Path, image: np.ndarray, factor: int, mpp: float = 0.5) -> Path:
    """A pyramidal slide at ``mpp`` µm/px whose pixels are ``image`` enlarged ``factor`` times: a
    low-magnification picture (a slide thumbnail with its artefacts) made mappable."""
    size = (image.shape[1] * factor, image.shape[0] * factor)
    enlarged = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))
    return write_pyramidal_tiff(path, enlarged, mpp=mpp, levels=4, compression="jpeg")


def phantom_slide(
    path: Path,
    tumour: np.ndarray,
    cmu_region: np.ndarray,
    tile: int,
    defocus_box: tuple[int, int, int, int],
    noise_box: tuple[int, int, int, int],
    mpp: float = 0.5,
) -> Path:
    """A slide of real tissue — a 2×2 mosaic of 4×4-tile pieces of the H&E tumour field and of the CMU
    slide, seams on tile borders — with a defocused and a noisy rectangle given in tile units
    (row0, col0, row1, col1)."""
    piece = 4 * tile
    mosaic = np.concatenate(
        [
            np.concatenate([tumour[:piece, :piece], cmu_region[:piece, :piece]], axis=1),
            np.concatenate([cmu_region[piece : 2 * piece, :piece], tumour[::-1][:piece, :piece]], axis=1),
        ],
        axis=0,
    )
    return slide_with_defects(path, mosaic, tile, defocus_box, noise_box, mpp)


def slide_with_defects(
    path: Path,
    pixels: np.ndarray,
    tile: int,
    defocus_box: tuple[int, int, int, int],
    noise_box: tuple[int, int, int, int],
    mpp: float = 0.5,
) -> Path:
    """``pixels`` written as a pyramidal TIFF with a defocused and a noisy rectangle given in tile
    units (row0, col0, row1, col1)."""
    from slideiqa.synthetic.distortions import defocus, noise

    mosaic = np.array(pixels, copy=True)
    for box, distortion in (
        (defocus_box, lambda a: defocus(a, 0.6, mpp=mpp)),
        (noise_box, lambda a: noise(a, 0.7, seed=0)),
    ):
        r0, c0, r1, c1 = (v * tile for v in box)
        mosaic[r0:r1, c0:c1] = distortion(np.ascontiguousarray(mosaic[r0:r1, c0:c1]))
    return write_pyramidal_tiff(path, mosaic, mpp=mpp, levels=3, compression="zlib")


def mosaic_pixels(sources: list[np.ndarray], tiles: int, tile: int, seed: int) -> np.ndarray:
    """A ``tiles`` × ``tiles`` mosaic of random ``tile``-px crops of ``sources``, one per grid cell."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(tiles):
        row = []
        for _ in range(tiles):
            source = sources[rng.integers(len(sources))]
            y, x = rng.integers(0, source.shape[0] - tile), rng.integers(0, source.shape[1] - tile)
            row.append(source[y : y + tile, x : x + tile])
        rows.append(np.concatenate(row, axis=1))
    return np.ascontiguousarray(np.concatenate(rows, axis=0))


def mosaic_slide(
    path: Path,
    sources: list[np.ndarray],
    tiles: int,
    tile: int,
    seed: int,
    defocus_share: float = 0.0,
    mpp: float = 0.5,
) -> Path:
    """A slide of :func:`mosaic_pixels` whose top ``defocus_share`` of rows is defocused: slides that
    pass or fail the quality rule, as large as a test needs."""
    from slideiqa.synthetic.distortions import defocus

    mosaic = mosaic_pixels(sources, tiles, tile, seed)
    blurred = int(round(defocus_share * tiles)) * tile
    if blurred:
        mosaic[:blurred] = defocus(np.ascontiguousarray(mosaic[:blurred]), 0.6, mpp=mpp)
    return write_pyramidal_tiff(path, mosaic, mpp=mpp, levels=3, compression="zlib")


#: Where a map's finish step can be cut by a kill: just before the status "complete" is written, or
#: just after it, before the overview, regions and summary.json.
FINISH_KILL_POINTS = {
    "before the status": "update_attributes",
    "after the status": "_write_reports",
}


def map_killed_in_its_finish(slide: Path, out: Path, point: str) -> int:
    """Map ``slide`` to ``out`` in a child process that SIGKILLs itself at ``point`` of the finish step
    (:data:`FINISH_KILL_POINTS`); returns its exit code (-9). The child wraps a function of
    ``slideiqa.pipeline.finish`` — the real process is killed by a real signal, the code under test is unchanged."""
    import subprocess
    import sys

    script = (
        "import os, signal, sys\n"
        "import slideiqa.pipeline.finish as finish\n"
        "from slideiqa.pipeline.mapping import map_slide\n"
        f"name = {FINISH_KILL_POINTS[point]!r}\n"
        "original = getattr(finish, name)\n"
        "def killed(*args, **kwargs):\n"
        "    if name != 'update_attributes' or kwargs.get('status') == 'complete':\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return original(*args, **kwargs)\n"
        "setattr(finish, name, killed)\n"
        "map_slide(sys.argv[1], sys.argv[2])\n"
    )
    return subprocess.run([sys.executable, "-c", script, str(slide), str(out)], timeout=300).returncode
