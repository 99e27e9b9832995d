"""Image-folder datasets: building them from sharp sources, and reading them for training.

The on-disk layout is the one a lab's own labelled data uses — one sub-folder per class — plus two
optional files the builders write: ``classes.json`` (class order, e.g. the ordinal
``bad < fair < good < excellent``) and ``manifest.csv`` (source image, reference crop, family and
severity of every file). The manifest lets splits keep every distorted copy of a reference crop in
the same fold as the reference, which the seed's random split did not guarantee.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from slideiqa.errors import SlideIQAError
from slideiqa.synthetic.distortions import FAMILIES, SEED_FAMILIES, distort

from .sources import IMAGE_SUFFIXES, Source, SourceError, open_source, tissue_fraction

BLOOD_CLASSES = ("bad", "fair", "good", "excellent")
#: Severity band of each blood-style class: ordered, with gaps so neighbouring grades stay separable.
BLOOD_SEVERITY = {"excellent": (0.0, 0.05), "good": (0.1, 0.25), "fair": (0.3, 0.55), "bad": (0.6, 1.0)}
#: Severities of a "bad" copy in the binary and defect datasets: every copy must be a clear defect,
#: also on sources that are already JPEG-compressed (scanners write quality 30–90) or pale or dark.
BAD_SEVERITY = {
    "defocus": (0.3, 1.0),
    "motion": (0.3, 1.0),
    "noise": (0.3, 1.0),
    "jpeg": (0.5, 1.0),
    "exposure": (0.5, 1.0),
}
MANIFEST_FIELDS = ("path", "label", "source", "reference", "family", "severity", "x", "y", "lab")


class DatasetError(SlideIQAError):
    """A dataset cannot be built or read; the message names the folder or file and the cause."""


@dataclass
class BuildConfig:
    crops_per_source: int = 100
    crop_size: int = 224
    mpp: float = 0.5
    min_tissue: float = 0.3
    seed: int = 0
    #: Vary each reference (scale, stain, mild compression) before distorting it, so that a model
    #: learns the defects rather than the look of the few sources it was trained on.
    vary_references: bool = False
    #: µm/px of sources by file stem, for fields whose files do not say (slides usually do).
    source_mpp: dict[str, float] = field(default_factory=dict)
    #: The lab (microscope, scanner, source group) of sources by file stem; a source without one is
    #: its own lab. Splits keep every lab in every fold, and the cross-lab control needs it.
    source_lab: dict[str, str] = field(default_factory=dict)
    #: ``blood`` only: share of each grade in BLOOD_CLASSES order. The seed's blood dataset is
    #: imbalanced, which its oversampling ablation needs; None draws the grades uniformly.
    class_shares: tuple[float, ...] | None = None


def vary_appearance(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stain and illumination variation that is *not* a defect, plus, half the time, the mild JPEG
    compression (quality 60–95) that scanners write: the model must accept both as good."""
    values = crop.astype(np.float64) / 255.0
    values = values ** rng.uniform(0.85, 1.15) * rng.uniform(0.92, 1.08, size=3)
    varied = np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        buffer = io.BytesIO()
        Image.fromarray(varied).save(buffer, format="JPEG", quality=int(rng.integers(60, 96)))
        varied = np.asarray(Image.open(buffer).convert("RGB"))
    return varied


def source_downsample(source: Source, config: BuildConfig) -> float:
    """How much to shrink a source towards the dataset's µm/px before cropping.

    A blood smear photographed at 0.08 µm/px shows red cells 95 px wide; at the 0.5 µm/px a map
    reads, they are 15 px. Crops are therefore read at the dataset's scale where the source is finer,
    as far as the source is large enough to give crops; coarser sources are used as they are
    (upsampling would blur them)."""
    mpp = config.source_mpp.get(source.name) or source.slide.mpp or config.mpp
    return downsample_factor(source, mpp, config.mpp, config.crop_size)


def downsample_factor(
    source: Source, source_mpp: float, target_mpp: float, crop_size: int, margin: float = 1.25
) -> float:
    """Shrink ``target_mpp / source_mpp`` where the source is finer, but never so far that a crop of
    ``crop_size`` (times ``margin``, to leave room for random positions) no longer fits."""
    largest = min(source.width, source.height) / (crop_size * margin)
    return float(max(1.0, min(target_mpp / source_mpp, largest)))


def random_crops(source: Source, config: BuildConfig, rng: np.random.Generator) -> list[tuple[int, int, np.ndarray]]:
    """Random crops with at least ``min_tissue`` stained matter; gives up after many empty draws."""
    size = config.crop_size
    if source.width < size or source.height < size:
        raise SourceError(f"{source.path}: {source.width}×{source.height} px is smaller than one {size} px crop")
    base = source_downsample(source, config)
    crops: list[tuple[int, int, np.ndarray]] = []
    attempts = 0
    while len(crops) < config.crops_per_source and attempts < 50 * config.crops_per_source:
        attempts += 1
        # Half the varied references are also seen at a random coarser scale (down to half):
        # downsampling with an antialiasing filter keeps them sharp and widens the range of object
        # sizes. The other half stay at the source's own scale, where the scanner's compression
        # artefacts are as a map will see them (resampling would smooth them away).
        extra = rng.uniform(1.0, 2.0) if config.vary_references and rng.random() < 0.5 else 1.0
        read = min(int(round(size * base * extra)), source.width, source.height)
        x, y = int(rng.integers(0, source.width - read + 1)), int(rng.integers(0, source.height - read + 1))
        crop = source.crop(x, y, read)
        if read != size:
            crop = np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.LANCZOS))
        if config.vary_references:
            crop = vary_appearance(crop, rng)
        if tissue_fraction(crop) >= config.min_tissue:
            crops.append((x, y, crop))
    if not crops:
        raise SourceError(f"{source.path}: no crop with ≥ {config.min_tissue:.0%} tissue found")
    return crops


# A plan says, for one reference crop, which (label, family, severity) copies to write.
Plan = Callable[[np.random.Generator], list[tuple[str, str, float]]]


def _graded_copy(label: str, rng: np.random.Generator) -> list[tuple[str, str, float]]:
    """One copy of grade ``label``: a random seed family at a severity inside the grade's band."""
    low, high = BLOOD_SEVERITY[label]
    family = SEED_FAMILIES[int(rng.integers(len(SEED_FAMILIES)))]
    return [(label, family, float(rng.uniform(low, high)))]


def _blood_plan(rng: np.random.Generator) -> list[tuple[str, str, float]]:
    return _graded_copy(BLOOD_CLASSES[int(rng.integers(len(BLOOD_CLASSES)))], rng)


def _blood_plan_with_shares(shares: Sequence[float]) -> Plan:
    """The blood plan with grades drawn in the given proportions instead of uniformly."""
    probabilities = np.asarray(shares, dtype=np.float64)
    if probabilities.shape != (len(BLOOD_CLASSES),) or (probabilities < 0).any() or probabilities.sum() <= 0:
        raise DatasetError(
            f"class shares must be {len(BLOOD_CLASSES)} non-negative numbers "
            f"({', '.join(BLOOD_CLASSES)}), got {list(shares)}"
        )
    probabilities = probabilities / probabilities.sum()

    def plan(rng: np.random.Generator) -> list[tuple[str, str, float]]:
        return _graded_copy(BLOOD_CLASSES[int(rng.choice(len(BLOOD_CLASSES), p=probabilities))], rng)

    return plan


def _copies_plan(families: Sequence[str], bad_label: Callable[[str], str]) -> Plan:
    def plan(rng: np.random.Generator) -> list[tuple[str, str, float]]:
        copies = [("good", "none", 0.0)]
        copies += [(bad_label(family), family, float(rng.uniform(*BAD_SEVERITY[family]))) for family in families]
        return copies

    return plan


KINDS: dict[str, tuple[tuple[str, ...], Plan]] = {
    # Seed model 1: four ordered grades from graded severity of one random family.
    "blood": (BLOOD_CLASSES, _blood_plan),
    # Seed model 2: every reference is good, and one copy per seed family is bad.
    "cytology": (("good", "bad"), _copies_plan(SEED_FAMILIES, lambda family: "bad")),
    # slideiqa's default model: good plus one class per defect family, so a map can say why.
    "defects": (("good", *FAMILIES), _copies_plan(FAMILIES, lambda family: family)),
}


def build_dataset(kind: str, sources: Sequence[str | Path], out: str | Path, config: BuildConfig) -> Path:
    """Write an image-folder dataset of ``kind`` (blood, cytology, defects) from sharp ``sources``."""
    if kind not in KINDS:
        raise DatasetError(f"unknown dataset kind {kind!r}; known: {', '.join(KINDS)}")
    classes, plan = KINDS[kind]
    if config.class_shares is not None:
        if kind != "blood":
            raise DatasetError(f"class shares apply to the blood dataset only, not {kind!r}")
        plan = _blood_plan_with_shares(config.class_shares)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out}: exists and is not empty; choose a new folder (old images would mix in)")
    sources = list(sources)
    names = _unique_names(sources)
    opened = [open_source(path) for path in sources]  # every source must open before anything is written
    for label in classes:
        (out / label).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    rows = []
    skipped: list[str] = []
    for source, name in tqdm(list(zip(opened, names)), desc=f"{kind} dataset", unit="source"):
        lab = config.source_lab.get(source.name, name)
        try:
            crops = random_crops(source, config, rng)
        except SourceError as error:
            # One empty field among hundreds (a smear field with a few cells) is left out and listed;
            # a dataset with nothing left is an error below.
            skipped.append(str(error))
            continue
        for index, (x, y, crop) in enumerate(crops):
            reference = f"{name}_{index:05d}"
            for label, family, severity in plan(rng):
                image = crop if family == "none" else distort(crop, family, severity, mpp=config.mpp, seed=rng)
                relative = f"{label}/{reference}_{family}_{severity:.2f}.png"
                Image.fromarray(image).save(out / relative)
                rows.append((relative, label, name, reference, family, f"{severity:.4f}", x, y, lab))
    if not rows:
        raise DatasetError(f"{out}: no source gave a crop; " + "; ".join(skipped))
    with open(out / "manifest.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MANIFEST_FIELDS)
        writer.writerows(rows)
    summary = {
        "kind": kind,
        "classes": list(classes),
        "sources": names,
        "crop_size": config.crop_size,
        "crops_per_source": config.crops_per_source,
        "mpp": config.mpp,
        "seed": config.seed,
        "images": len(rows),
        "skipped_sources": skipped,
    }
    (out / "classes.json").write_text(json.dumps(summary, indent=2) + "\n")
    return out


def _unique_names(sources: Sequence[str | Path]) -> list[str]:
    """File stems, made unique with the parent folder's name where two sources share one."""
    stems = [Path(s).stem for s in sources]
    return [f"{Path(s).parent.name}-{stem}" if stems.count(stem) > 1 else stem for s, stem in zip(sources, stems)]


@dataclass
class Sample:
    path: Path
    label: int
    source: str  # the field or slide the image was cut from
    group: str  # the reference crop: every distorted copy of one crop shares it
    lab: str = ""


class ImageFolder(Dataset):
    """Labelled images in one sub-folder per class; decoded to uint8 HWC then ``transform``-ed.

    Unlike torchvision's ImageFolder it reads the class order from ``classes.json`` when present and
    the source/reference of each image from ``manifest.csv``, and it reports an unreadable image by
    name instead of failing deep inside a DataLoader worker.
    """

    def __init__(self, root: str | Path, transform: Callable[[np.ndarray], torch.Tensor] | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: no such dataset folder")
        self.classes = self._read_classes()
        self.samples = self._read_samples()
        if not self.samples:
            raise DatasetError(f"{self.root}: no images found (expected one sub-folder of images per class)")
        self.transform = transform

    def _read_classes(self) -> list[str]:
        index = self.root / "classes.json"
        if index.exists():
            return list(json.loads(index.read_text())["classes"])
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def _read_samples(self) -> list[Sample]:
        manifest: dict[str, dict[str, str]] = {}
        if (self.root / "manifest.csv").exists():
            with open(self.root / "manifest.csv", newline="") as handle:
                manifest = {row["path"]: row for row in csv.DictReader(handle)}
        samples = []
        for label, name in enumerate(self.classes):
            for path in sorted((self.root / name).glob("*")):
                if path.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                row = manifest.get(f"{name}/{path.name}", {})
                source = row.get("source", "")
                samples.append(Sample(path, label, source, row.get("reference", path.stem), row.get("lab") or source))
        return samples

    @property
    def targets(self) -> np.ndarray:
        return np.array([s.label for s in self.samples])

    @property
    def groups(self) -> np.ndarray:
        return np.array([s.group for s in self.samples])

    @property
    def sources(self) -> np.ndarray:
        return np.array([s.source for s in self.samples])

    @property
    def labs(self) -> np.ndarray:
        return np.array([s.lab for s in self.samples])

    def load(self, index: int) -> np.ndarray:
        path = self.samples[index].path
        try:
            with Image.open(path) as image:
                return np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError, ValueError) as error:
            raise DatasetError(f"{path}: unreadable image ({error})") from None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.load(index)
        tensor = self.transform(image) if self.transform else torch.from_numpy(image.copy()).permute(2, 0, 1)
        return tensor, self.samples[index].label


def model_mpp(folder: Path, input_size: int, default: float = 0.5) -> float:
    """µm/px a model trained on ``folder`` sees: a built dataset's crops (``crop_size`` px at its
    ``mpp``, in ``classes.json``) resized to ``input_size``. A lab's own folder says nothing about pixel
    size; ``default`` is then taken as it is."""
    index = Path(folder) / "classes.json"
    if not index.exists():
        return default
    built = json.loads(index.read_text())
    return float(built.get("mpp", default)) * float(built.get("crop_size", input_size)) / input_size
