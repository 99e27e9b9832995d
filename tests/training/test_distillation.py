"""Knowledge distillation: the loss, the teacher's predictions, and a student that learns from them."""

import numpy as np
import pytest
import torch
from torch import nn

from slideiqa.models import ModelCard, build_model, save_checkpoint
from slideiqa_training.datasets import BuildConfig, ImageFolder, build_dataset
from slideiqa_training.distillation import DistillationError, DistillationLoss, WithTeacher, teacher_logits
from slideiqa_training.experiments import ModelSpec, evaluation_set
from slideiqa_training.trainer import TrainConfig, TransformedSubset, predict, train
from slideiqa_training.transforms import build_transform

from paths import FIELDS

pytestmark = pytest.mark.training


def test_loss_is_cross_entropy_at_weight_zero_and_scaled_kl_at_weight_one():
    torch.manual_seed(0)
    student, teacher = torch.randn(8, 6), torch.randn(8, 6)
    labels = torch.randint(6, (8,))
    ce = nn.functional.cross_entropy(student, labels)
    assert torch.allclose(DistillationLoss(0.0, 4.0)(student, (labels, teacher)), ce)
    p_teacher = torch.softmax(teacher / 4, 1)
    kl = (p_teacher * (p_teacher.log() - torch.log_softmax(student / 4, 1))).sum(1).mean()
    assert torch.allclose(DistillationLoss(1.0, 4.0)(student, (labels, teacher)), 16 * kl, atol=1e-6)
    # A student that already says what the teacher says has nothing left to learn from it.
    assert float(DistillationLoss(1.0, 4.0)(teacher, (labels, teacher))) == pytest.approx(0.0, abs=1e-6)
    # Label smoothing reaches the label term: one-hot targets softened by 0.1 over the six classes.
    smoothed = (
        (-(torch.full((8, 6), 0.1 / 6) + 0.9 * nn.functional.one_hot(labels, 6)) * torch.log_softmax(student, 1))
        .sum(1)
        .mean()
    )
    assert torch.allclose(DistillationLoss(0.0, 4.0, label_smoothing=0.1)(student, (labels, teacher)), smoothed)


def test_bad_settings_are_errors():
    with pytest.raises(DistillationError, match="weight"):
        DistillationLoss(1.5, 4.0)
    with pytest.raises(DistillationError, match="temperature"):
        DistillationLoss(0.5, 0.0)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> ImageFolder:
    root = tmp_path_factory.mktemp("distil") / "data"
    build_dataset("defects", [FIELDS / "he_tumour_target.png"], root, BuildConfig(6, 48, seed=3))
    return ImageFolder(root)


def test_teacher_with_other_classes_is_refused_by_name(small_dataset, tmp_path):
    card = ModelCard("iqanet", ["good", "bad"], input_size=48)
    save_checkpoint(build_model("iqanet", 2), card, tmp_path / "binary")
    with pytest.raises(DistillationError, match="binary.*classes"):
        teacher_logits(tmp_path / "binary", small_dataset, range(len(small_dataset)))


def test_student_learns_the_teachers_answers(small_dataset, tmp_path):
    # The teacher is an untrained network whose logits are standardised over the images: its answers
    # are confident but arbitrary, unrelated to the labels, so a student can only come to agree with
    # it by learning from its logits.
    classes = small_dataset.classes
    card = ModelCard("iqanet", classes, input_size=48)
    indices = np.arange(len(small_dataset))
    torch.manual_seed(1)
    teacher = build_model("iqanet", len(classes))
    save_checkpoint(teacher, card, tmp_path / "teacher")
    raw = torch.as_tensor(teacher_logits(tmp_path / "teacher", small_dataset, indices))
    scale = 3.0 / raw.std(0)
    with torch.no_grad():
        teacher.head[1].weight.mul_(scale[:, None])
        teacher.head[1].bias.sub_(raw.mean(0)).mul_(scale)
    save_checkpoint(teacher, card, tmp_path / "teacher")
    logits = teacher_logits(tmp_path / "teacher", small_dataset, indices)
    assert logits.shape == (len(small_dataset), len(classes))

    spec = ModelSpec("iqanet", input_size=48)
    images = TransformedSubset(small_dataset, indices, build_transform(48, *spec.mean_std, "none"))
    student = build_model("iqanet", len(classes))
    before = predict(student, evaluation_set(small_dataset, spec, indices))[0]
    train(
        student,
        WithTeacher(images, logits),
        None,
        TrainConfig(epochs=40, batch_size=12, lr=3e-3, progress=False),
        DistillationLoss(1.0, 1.0),
    )
    after = predict(student, evaluation_set(small_dataset, spec, indices))[0]

    target = torch.softmax(torch.as_tensor(logits), 1).numpy()

    def distance(p):  # mean total-variation distance to the teacher's probabilities
        return float(np.abs(p - target).sum(1).mean() / 2)

    assert distance(after) < 0.5 * distance(before)
    agreement = float((after.argmax(1) == target.argmax(1)).mean())
    assert agreement > 0.6, agreement
