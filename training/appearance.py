"""How a *good* scan may look: stain, colour profile, sharpening and compression that are not defects.

Labs and scanners differ in staining (intensity and hue of haematoxylin, eosin, DAB or Giemsa),
in colour calibration, in the sharpening filter the scanner applies and in the compression it writes
(JPEG at quality 30–95, Aperio's default being 30; JPEG 2000). A quality model that has seen only a few sources
takes any unfamiliar look for a defect, so every reference crop is shown to it in many such looks,
all labelled good, while the defects (``slideiqa.synthetic.distortions``) are applied on top of them.

Stain is varied in optical density (``RandomStainJitter.jitter``), where glass stays white: a paler or
darker *stain* changes how much light the tissue absorbs, not how much light the lamp gives, which
is what an exposure error changes. Keeping that difference in the training data is what lets a model
tell a pale stain from an over-exposed scan.

Hue is varied the same way (``restain``): the crop's haematoxylin and eosin densities are mixed back
with the colours of another lab's stain pair (DAB, Giemsa's methylene blue, fast red, methyl green,
PAS, trichrome… — the stain vectors scikit-image ships). A model that has only seen pink and purple
tissue calls the brown of an unseen IHC slide a defect; the same tissue in other stains teaches it that
the stain's colour is not the scan's quality.
"""

from __future__ import annotations

import io

import imagecodecs
import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from skimage.color import colorconv

from .transforms import RandomStainJitter

#: Ranges of the variations (uniform draws): per-stain density scale and shift (natural-log OD),
#: per-channel gain of the colour calibration, global exposure in EV, unsharp-mask radius (px) and
#: amount, JPEG quality and JPEG 2000 target PSNR (dB) of the scanner's compression.
STAIN_SCALE, STAIN_SHIFT = 0.3, 0.04
CHANNEL_GAIN, EXPOSURE_EV = 0.04, 0.15
SHARPEN_RADIUS, SHARPEN_AMOUNT = (0.5, 1.2), (0.2, 0.9)
JPEG_QUALITY, JPEG2000_PSNR = (30, 96), (38.0, 50.0)
#: How often each variation is applied.
P_SHARPEN, P_JPEG, P_JPEG2000, P_RESTAIN = 0.35, 0.35, 0.15, 0.35
#: Stain pairs a crop may be restained with: the first two stain vectors (optical density per RGB
#: channel) of every stain matrix scikit-image ships (H&E, H-DAB, Giemsa, Alcian blue, Feulgen, methyl
#: green-DAB, H-AEC, H-PAS, fast red-fast blue, Masson trichrome, methyl blue-Ponceau), each drawn
#: with a jitter of ``STAIN_VECTOR_JITTER`` per component before normalising.
STAIN_PAIRS = tuple(
    getattr(colorconv, f"rgb_from_{name}")[:2].copy()
    for name in ("hed", "hdx", "bex", "ahx", "fgx", "gdx", "hax", "hpx", "rbd", "bro", "bpx")
)
STAIN_VECTOR_JITTER = 0.05

_JITTER = RandomStainJitter(0.0)


def vary_stain(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each stain's optical density scaled by ``1 ± STAIN_SCALE`` and shifted by ``± STAIN_SHIFT``."""
    scale = torch.tensor(1.0 + rng.uniform(-STAIN_SCALE, STAIN_SCALE, 3), dtype=torch.float32).view(3, 1, 1)
    shift = torch.tensor(rng.uniform(-STAIN_SHIFT, STAIN_SHIFT, 3), dtype=torch.float32).view(3, 1, 1)
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 255.0
    varied = _JITTER.jitter(tensor, scale, shift)
    return (varied * 255.0).round().byte().permute(1, 2, 0).numpy()


def restain(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The crop as if stained with another pair (``STAIN_PAIRS``): haematoxylin and eosin densities
    unmixed (Ruifrok–Johnston) and mixed back with the new pair's colours; the residual (DAB) channel
    keeps its own colour, so glass stays white and nothing but hue and density changes."""
    pair = STAIN_PAIRS[int(rng.integers(len(STAIN_PAIRS)))]
    vectors = np.abs(pair + rng.normal(0.0, STAIN_VECTOR_JITTER, pair.shape))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    to_rgb = np.vstack([vectors, colorconv.rgb_from_hed[2]])
    density = -np.log((image.astype(np.float64) + 1.0) / 256.0)
    stains = density @ colorconv.hed_from_rgb
    mixed = np.exp(-(stains @ to_rgb)) * 256.0 - 1.0
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def vary_calibration(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A scanner's colour calibration: per-channel gains and a small global exposure offset."""
    gain = (1.0 + rng.uniform(-CHANNEL_GAIN, CHANNEL_GAIN, 3)) * 2.0 ** rng.uniform(-EXPOSURE_EV, EXPOSURE_EV)
    return np.clip(np.rint(image * gain), 0, 255).astype(np.uint8)


def sharpen(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The unsharp mask scanners apply to every scan."""
    radius, amount = rng.uniform(*SHARPEN_RADIUS), rng.uniform(*SHARPEN_AMOUNT)
    # Written out with SciPy's Gaussian: scikit-image 0.26's unsharp_mask with channel_axis returns
    # garbage (NaN pixels for uint8 input, a near-black image for float input).
    values = image.astype(np.float64)
    blurred = ndimage.gaussian_filter(values, sigma=(radius, radius, 0), mode="reflect")
    return np.clip(np.rint(values + amount * (values - blurred)), 0, 255).astype(np.uint8)


def scanner_jpeg(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(
        buffer, format="JPEG", quality=int(rng.integers(*JPEG_QUALITY)), subsampling=int(rng.choice([0, 2]))
    )
    return np.asarray(Image.open(buffer).convert("RGB"))


def scanner_jpeg2000(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    encoded = imagecodecs.jpeg2k_encode(np.ascontiguousarray(image), level=float(rng.uniform(*JPEG2000_PSNR)))  # type: ignore[arg-type]  # a PSNR target in dB: the stub says int, the codec takes any number
    return imagecodecs.jpeg2k_decode(encoded)


def vary_good(image: np.ndarray, rng: np.random.Generator, compressed: bool = True) -> np.ndarray:
    """One good look of a sharp crop: maybe another stain pair, stain density and calibration always,
    then maybe the scanner's sharpening, then maybe its compression (JPEG or JPEG 2000, never both).
    ``compressed=False`` for a field shown much coarser than its camera wrote it (a camera field at
    1000× shrunk to the model's scale): the camera's blocks were shrunk away with it, so blocks seen
    at the model's scale are a defect of the field, not a look of a good one."""
    varied = restain(image, rng) if rng.random() < P_RESTAIN else image
    varied = vary_calibration(vary_stain(varied, rng), rng)
    if rng.random() < P_SHARPEN:
        varied = sharpen(varied, rng)
    draw = rng.random()
    if not compressed:
        return varied
    if draw < P_JPEG:
        varied = scanner_jpeg(varied, rng)
    elif draw < P_JPEG + P_JPEG2000:
        varied = scanner_jpeg2000(varied, rng)
    return varied
