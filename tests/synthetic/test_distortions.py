import io

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from slideiqa.synthetic import distortions as d

from support import degradation_strength

SEVERITIES = [0.1, 0.3, 0.5, 0.7, 1.0]


@pytest.mark.parametrize("family", d.FAMILIES)
def test_deterministic_for_a_seed(tissue_crop, family):
    first = d.distort(tissue_crop, family, 0.6, seed=7)
    again = d.distort(tissue_crop, family, 0.6, seed=7)
    assert np.array_equal(first, again)
    assert first.dtype == np.uint8 and first.shape == tissue_crop.shape


@pytest.mark.parametrize("family", d.FAMILIES)
def test_severity_zero_is_identity_and_positive_severity_changes_pixels(tissue_crop, family):
    assert np.array_equal(d.distort(tissue_crop, family, 0.0, seed=1), tissue_crop)
    assert not np.array_equal(d.distort(tissue_crop, family, 0.5, seed=1), tissue_crop)


@pytest.mark.parametrize("family", d.FAMILIES)
def test_any_size_in_any_size_out(tumour_field, family):
    odd = np.ascontiguousarray(tumour_field[:37, :53])
    out = d.distort(odd, family, 0.8, seed=3)
    assert out.shape == (37, 53, 3) and out.dtype == np.uint8


def test_noise_depends_on_the_seed(tissue_crop):
    assert not np.array_equal(d.noise(tissue_crop, 0.5, seed=1), d.noise(tissue_crop, 0.5, seed=2))


@pytest.mark.parametrize("family", ["defocus", "motion"])
def test_sharpness_falls_with_blur_severity(tissue_crop, family):
    values = [d.sharpness(tissue_crop)] + [d.sharpness(d.distort(tissue_crop, family, s, seed=0)) for s in SEVERITIES]
    assert all(a > b for a, b in zip(values, values[1:])), values


def test_defocus_radius_is_physical(tissue_crop):
    # The same physical defocus blurs more pixels at a finer pixel size.
    coarse = d.sharpness(d.defocus(tissue_crop, 0.3, mpp=1.0))
    fine = d.sharpness(d.defocus(tissue_crop, 0.3, mpp=0.25))
    assert fine < coarse
    kernel = d.disk_psf(3.0)
    assert kernel.sum() == pytest.approx(1.0) and kernel.shape == (9, 9)


def test_psnr_falls_with_noise_severity(tissue_crop):
    psnr = [peak_signal_noise_ratio(tissue_crop, d.noise(tissue_crop, s, seed=0)) for s in SEVERITIES]
    assert all(a > b for a, b in zip(psnr, psnr[1:])), psnr
    assert psnr[0] > 30 and psnr[-1] < 20


def test_jpeg_size_and_fidelity_fall_with_severity(tissue_crop):
    sizes, psnr = [], []
    for severity in SEVERITIES:
        buffer = io.BytesIO()
        Image.fromarray(tissue_crop).save(buffer, format="JPEG", quality=d.jpeg_quality_for(severity), subsampling=2)
        sizes.append(len(buffer.getvalue()))
        psnr.append(peak_signal_noise_ratio(tissue_crop, d.jpeg(tissue_crop, severity)))
    assert all(a > b for a, b in zip(sizes, sizes[1:])), sizes
    assert all(a > b for a, b in zip(psnr, psnr[1:])), psnr
    assert d.jpeg_quality_for(0.0) == 95 and d.jpeg_quality_for(1.0) == 5


def test_exposure_moves_brightness_and_flattens_contrast(tissue_crop):
    brighter = [d.exposure(tissue_crop, s, direction=1).mean() for s in [0.0, *SEVERITIES[:3]]]
    darker = [d.exposure(tissue_crop, s, direction=-1).mean() for s in [0.0, *SEVERITIES]]
    assert all(a < b for a, b in zip(brighter, brighter[1:])), brighter
    assert all(a > b for a, b in zip(darker, darker[1:])), darker
    assert d.exposure(tissue_crop, 0.5, direction=-1).std() < tissue_crop.std()


@pytest.mark.parametrize("family", d.FAMILIES)
def test_local_distortion_only_inside_the_mask(tissue_crop, family):
    mask = np.zeros(tissue_crop.shape[:2], bool)
    mask[50:150, 60:180] = True
    out = d.distort_local(tissue_crop, mask, family, 0.8, seed=5)
    assert np.array_equal(out[~mask], tissue_crop[~mask])
    assert np.abs(out[mask].astype(int) - tissue_crop[mask]).mean() > 1.0


def test_bad_arguments_are_rejected(tissue_crop):
    with pytest.raises(ValueError, match="unknown distortion family 'smudge'"):
        d.distort(tissue_crop, "smudge", 0.5)
    with pytest.raises(ValueError, match="severity"):
        d.defocus(tissue_crop, 1.5)
    with pytest.raises(ValueError, match="uint8 RGB"):
        d.noise(tissue_crop.astype(np.float32), 0.5)
    with pytest.raises(ValueError, match="mask shape"):
        d.distort_local(tissue_crop, np.ones((3, 3), bool), "noise", 0.5)


FAMILY_KINDS = [(family, kind) for family, kinds in d.KINDS.items() for kind in kinds]


@pytest.mark.parametrize("family, kind", FAMILY_KINDS)
def test_every_kind_is_deterministic_and_identity_at_zero(tissue_crop, family, kind):
    first = d.distort(tissue_crop, family, 0.6, seed=11, kind=kind)
    assert np.array_equal(first, d.distort(tissue_crop, family, 0.6, seed=11, kind=kind))
    assert first.dtype == np.uint8 and first.shape == tissue_crop.shape
    assert np.array_equal(d.distort(tissue_crop, family, 0.0, seed=11, kind=kind), tissue_crop)


@pytest.mark.parametrize("family, kind", FAMILY_KINDS)
def test_every_kind_grows_with_severity(tissue_crop, family, kind):
    # One seed for every severity: the random parts (angle, noise field, direction) stay the same,
    # so only the strength changes.
    strengths = [
        degradation_strength(family, tissue_crop, d.distort(tissue_crop, family, s, seed=3, kind=kind))
        for s in SEVERITIES
    ]
    assert all(a < b for a, b in zip(strengths, strengths[1:])), strengths


def test_the_first_kind_is_the_original_formula(tissue_crop):
    for family, kinds in d.KINDS.items():
        assert np.array_equal(
            d.distort(tissue_crop, family, 0.7, seed=4), d.distort(tissue_crop, family, 0.7, seed=4, kind=kinds[0])
        )


def test_kinds_of_a_family_differ(tissue_crop):
    for family, kinds in d.KINDS.items():
        outputs = [d.distort(tissue_crop, family, 0.7, seed=4, kind=kind) for kind in kinds]
        assert all(not np.array_equal(a, b) for i, a in enumerate(outputs) for b in outputs[i + 1 :]), family


def test_gaussian_defocus_has_the_disks_rms_radius():
    # σ√2 of the Gaussian equals R/√2 of the disk: a pathologist's "1 µm σ" is the 2 µm disk.
    radius = 8.0
    disk, gauss = d.disk_psf(radius), d.gaussian_psf(radius / 2)

    def rms(kernel):
        y, x = np.mgrid[: kernel.shape[0], : kernel.shape[1]] - kernel.shape[0] // 2
        return float(np.sqrt((kernel * (x**2 + y**2)).sum()))

    assert rms(gauss) == pytest.approx(rms(disk), rel=0.03)


def test_noise_kinds_reach_sigma_15_at_severity_half():
    grey = np.full((256, 256, 3), 128, np.uint8)
    for kind in d.KINDS["noise"]:
        sigma = d.noise(grey, 0.5, seed=0, kind=kind).astype(np.float64).std()
        assert sigma >= 14.0, (kind, sigma)


def test_unknown_kind_is_rejected(tissue_crop):
    with pytest.raises(ValueError, match="unknown defocus kind 'square'"):
        d.defocus(tissue_crop, 0.5, kind="square")
