"""Defects still found on sources the model never saw, each field mapped alone, as a lab maps it.

    python benchmarks/defects_found.py [--data ../shared/data] [--model default] [--sources a,b]
                                       [--fields-per-source N] [--at-mpp UM] [--json PATH]

The counterpart of ``clean_tissue.py``: a judgement that stops false alarms must not stop finding
defects. Every clean held-out field (``clean_tissue.HELD_OUT``) is degraded *as a whole*, at its own
µm/px, at each family's floor — the weakest defect a pathologist notices (``FLOORS``: defocus 1 µm,
a 5 µm streak, noise σ 15, JPEG quality 15, ±1 EV; noise and JPEG, strengths per pixel, at the
model's 0.5 µm/px: ``at_defect_scale``) — by every kind of slideiqa's own code and by two
other libraries' (OpenCV, albumentations, scikit-image: ``training/cross_implementation.py``), then
written losslessly and mapped alone through ``map_slide`` with every default, exactly as the clean
field was. Per source, family and implementation: the share of defective tissue tiles flagged (what
the verdict counts: below the threshold, an artefact, unreadable), the share flagged as the right
family, and the AUC of P(good) between the clean fields' tissue tiles and the defective ones'.

A ``clip`` copy that clips less than 1 % of its pixels beyond the clean field (one lying inside the
clipping points) is only stretched in contrast, as a camera's contrast setting does, and is left
out, as in the generalisation benchmark (``training/generalisation.shows_its_defect``).

A field exposed wrongly *throughout* is its own reference: only what a single tile shows (a white
point no light leaves, clipped stain, a crushed black level: ``slideiqa.measure.exposure_evidence``) can flag
it. A tone curve (γ) clips nothing and leaves the glass calibrated — it is a stain of another
density — so its rows measure what a single field cannot show: such a slide is named by its batch
(``batch_report``) or, for a part of a slide, by the slide's own tone (``slide_tone``).

The pair of real tiles in ``natural_focus/`` (an out-of-focus tile and its clean sibling) is mapped
too: the blurred one must fail, the clean one pass. Exit status 0 always: this is a measurement.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from clean_tissue import HELD_OUT, ROOT, Field, at_mpp, resampled

from slideiqa.errors import SlideIQAError
from slideiqa.io.slide import open_slide
from slideiqa.outputs.store import FIXED_LABELS, open_map
from slideiqa.pipeline.mapping import map_slide
from slideiqa.settings.options import MapOptions
from slideiqa.synthetic.distortions import KINDS, distort, exposure
from training.cross_implementation import IMPLEMENTATIONS
from training.generalisation import FLOORS, MIN_NEWLY_CLIPPED, clipped_share

#: The bars on every held-out source: share of defective tiles flagged, AUC clean vs defective.
BARS = {"flagged": 0.90, "auc": 0.97}
FIXED_NAMES = {value: name for name, value in FIXED_LABELS.items()}


def implementations(family: str) -> list[tuple[str, object]]:
    """(name, degrade(image, mpp, seed) → image) for every kind of slideiqa's code and every other
    library's implementation of ``family``; exposure in both directions."""
    severity = FLOORS[family]
    found: list[tuple[str, object]] = []
    for kind in KINDS[family]:
        if family == "exposure":
            for direction, word in ((-1, "darker"), (1, "brighter")):
                found.append(
                    (
                        f"slideiqa {kind} {word}",
                        lambda image, mpp, seed, k=kind, d=direction: exposure(
                            image, severity, mpp=mpp, seed=seed, kind=k, direction=d
                        ),
                    )
                )
        else:
            found.append(
                (
                    f"slideiqa {kind}",
                    lambda image, mpp, seed, k=kind: distort(image, family, severity, mpp=mpp, seed=seed, kind=k),
                )
            )
    for name, degrade in IMPLEMENTATIONS[family].items():
        if family == "exposure":  # the library draws the direction: run it both ways, with fixed draws
            for draw, word in ((0.9, "darker"), (0.1, "brighter")):
                found.append(
                    (
                        f"{name} {word}",
                        lambda image, mpp, seed, g=degrade, u=draw: g(image, severity, mpp, _FixedDraw(u, seed)),
                    )
                )
        else:
            found.append(
                (name, lambda image, mpp, seed, g=degrade: g(image, severity, mpp, np.random.default_rng(seed)))
            )
    return found


class _FixedDraw(np.random.Generator):
    """A generator whose ``random()`` is fixed (the libraries' direction of exposure), the rest seeded."""

    def __init__(self, value: float, seed: int) -> None:
        super().__init__(np.random.PCG64(seed))
        self.value = value

    def random(self, *args, **kwargs):  # type: ignore[override]
        return self.value


def tile_scores(item: Field, path: Path, out: Path, model: str) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """(P(good) of each tissue tile with artefact or unreadable tiles at 0, flagged, labels) of a
    field mapped alone; None where the map is refused."""
    try:
        result = map_slide(path, out, MapOptions(model=model, mpp=item.mpp, overwrite=True))
    except SlideIQAError:
        return None
    quality = open_map(result.path)
    score, label, probs = quality.array("score"), quality.array("label"), quality.array("probs")
    classes = list(result.summary.share_per_class)[: probs.shape[0]]
    tissue = label > 0  # assessed, under an artefact or unreadable: what the verdict counts
    fixed = label >= min(FIXED_LABELS.values())
    scores = np.where(fixed, 0.0, np.nan_to_num(score, nan=0.0))[tissue]
    flagged = (fixed | (np.nan_to_num(score, nan=1.0) < result.summary.threshold))[tissue]
    names = [
        FIXED_NAMES[int(v)] if v >= min(FIXED_LABELS.values()) else classes[1 + int(np.argmax(probs[1:, r, c]))]
        for (r, c), v in zip(np.argwhere(tissue), label[tissue])
    ]
    return scores, flagged, names


#: Families whose floor is a strength per pixel at the model's scale (noise σ, JPEG quality): a 40×
#: field's own pixels are averaged four to one on the way to 0.5 µm/px, which halves noise and
#: blurs JPEG blocks away, so these are written on the field shrunk to the model's scale first.
PER_PIXEL = ("noise", "jpeg")
MODEL_MPP = 0.5


def at_defect_scale(pixels: np.ndarray, mpp: float, family: str) -> tuple[np.ndarray, float]:
    """The field and its µm/px as the defect is written on it: at its own scale for defects of a
    physical size (blur in µm, exposure), at the model's for :data:`PER_PIXEL` ones."""
    if family not in PER_PIXEL or mpp >= MODEL_MPP:
        return pixels, mpp
    return resampled(pixels, mpp, MODEL_MPP), MODEL_MPP


def native_pixels(item: Field) -> np.ndarray:
    with open_slide(item.path) as slide:
        return slide.read_region((0, 0), 0, slide.dimensions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--model", default="default")
    parser.add_argument("--sources", help="comma-separated held-out sources (default: all)")
    parser.add_argument("--families", help="comma-separated families (default: all)")
    parser.add_argument("--fields-per-source", type=int, default=0, help="at most this many fields of each (0: all)")
    parser.add_argument(
        "--at-mpp",
        type=float,
        help="resize every field to this µm/px first (0.55: 10 %% coarser than the model, as a 20× scanner writes it)",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sources = {
        name: [
            Field(name, path, mpp, seen=False) for pattern, mpp in patterns for path in sorted(args.data.glob(pattern))
        ]
        for name, patterns in HELD_OUT.items()
    }
    if args.sources:
        unknown = [name for name in args.sources.split(",") if name not in sources]
        if unknown:
            parser.error(f"unknown source(s) {', '.join(unknown)}; known: {', '.join(sources)}")
        sources = {name: sources[name] for name in args.sources.split(",")}
    families = args.families.split(",") if args.families else list(FLOORS)
    started = time.perf_counter()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        for source, items in sources.items():
            items = items[: args.fields_per_source] if args.fields_per_source else items
            if args.at_mpp:  # each field as a scanner writing that µm/px gives it, then degraded there
                items = [at_mpp(item, work, args.at_mpp) for item in items]
            clean = [tile_scores(item, item.path, work / "clean.quality.zarr", args.model) for item in items]
            if not any(c is not None for c in clean):
                print(f"{source}: no field could be mapped", flush=True)
                continue
            clean_scores = np.concatenate([c[0] for c in clean if c is not None])
            for family in families:
                for name, degrade in implementations(family):
                    scores, flagged, right = [], [], []
                    for index, item in enumerate(items):
                        field, mpp = at_defect_scale(native_pixels(item), item.mpp, family)
                        pixels = np.ascontiguousarray(degrade(field, mpp, 1000 * index + 7))
                        if (
                            "clip" in name
                            and clipped_share(pixels[None])[0] - clipped_share(field[None])[0] < MIN_NEWLY_CLIPPED
                        ):
                            continue  # a field inside the clipping points is only stretched in contrast
                        # Never the field's own name: with --at-mpp the clean field itself is a PNG
                        # in this folder, and each copy must start from it, not from the last copy.
                        path = work / f"{item.path.stem}.degraded.png"
                        Image.fromarray(pixels).save(path)
                        mapped = tile_scores(
                            Field(item.source, item.path, mpp, False), path, work / "defect.quality.zarr", args.model
                        )
                        if mapped is None:
                            continue
                        scores.append(mapped[0])
                        flagged.append(mapped[1])
                        right += [f and n == family for f, n in zip(mapped[1], mapped[2])]
                    if not scores:
                        print(f"{source:14s} {family:9s} {name:34s} no field shows this defect", flush=True)
                        continue
                    scores_all, flagged_all = np.concatenate(scores), np.concatenate(flagged)
                    truth = np.r_[np.ones(len(clean_scores)), np.zeros(len(scores_all))]
                    auc = roc_auc_score(truth, np.r_[clean_scores, scores_all])
                    row = {
                        "source": source,
                        "family": family,
                        "implementation": name,
                        "tiles": len(scores_all),
                        "flagged": float(flagged_all.mean()),
                        "right_family": float(np.mean(right)),
                        "auc": float(auc),
                    }
                    rows.append(row)
                    print(
                        f"{source:14s} {family:9s} {name:34s} tiles {row['tiles']:4d}  flagged {row['flagged']:.2f}  "
                        f"right family {row['right_family']:.2f}  AUC {auc:.3f}",
                        flush=True,
                    )
        pair = {}
        for name in ("histoart_blur_1.png", "histoart_artifact_free_1.png"):
            item = Field("natural focus", args.data / "natural_focus" / name, 0.5, seen=False)
            result = map_slide(
                item.path, work / "pair.quality.zarr", MapOptions(model=args.model, mpp=0.5, overwrite=True)
            )
            pair[name] = {"verdict": result.summary.verdict, "mean_score": result.summary.mean_score}
        print(
            f"\nreal out-of-focus tile (0.5 µm/px assumed): {pair['histoart_blur_1.png']}; "
            f"its clean sibling: {pair['histoart_artifact_free_1.png']}"
        )
    print("\nBelow the bars (flagged < 0.90 or AUC < 0.97):")
    for row in rows:
        if row["flagged"] < BARS["flagged"] or row["auc"] < BARS["auc"]:
            print(
                f"  {row['source']} {row['family']} {row['implementation']}: flagged {row['flagged']:.2f}, "
                f"AUC {row['auc']:.3f}"
            )
    print(f"\n{len(rows)} rows in {time.perf_counter() - started:.0f} s.")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"model": args.model, "floors": FLOORS, "bars": BARS, "rows": rows, "natural_focus": pair}, indent=1
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
