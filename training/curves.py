"""Learning curves: loss and accuracy per epoch on the training and validation images, as PNG.

They show whether a run was still learning when it stopped (too few epochs) or over-fitting (the
validation loss turning up while the training loss falls) — what a table of final metrics hides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

KEYS = (("train_loss", "val_loss", "loss"), ("train_accuracy", "val_accuracy", "accuracy"))


def mean_curve(histories: Sequence[Sequence[Mapping[str, float]]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Epochs and the mean of ``key`` over folds (folds may have run for different numbers of epochs)."""
    length = max((len(h) for h in histories), default=0)
    epochs, means = [], []
    for epoch in range(length):
        values = [h[epoch][key] for h in histories if epoch < len(h) and key in h[epoch]]
        if values:
            epochs.append(epoch + 1)
            means.append(float(np.mean(values)))
    return np.array(epochs), np.array(means)


def plot_learning_curves(
    panels: Mapping[str, Sequence[Sequence[Mapping[str, float]]]], out: str | Path, title: str = ""
) -> Path:
    """One column per run (e.g. per base), loss on top and accuracy below, mean over folds."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    columns = max(1, len(panels))
    figure, axes = plt.subplots(2, columns, figsize=(3.2 * columns, 5), squeeze=False)
    for column, (name, histories) in enumerate(panels.items()):
        for row, (train_key, val_key, label) in enumerate(KEYS):
            axis = axes[row][column]
            for key, style in ((train_key, "o-"), (val_key, "s--")):
                epochs, values = mean_curve(histories, key)
                if len(epochs):
                    axis.plot(epochs, values, style, markersize=3, label=key.split("_")[0])
            axis.set_xlabel("epoch")
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            axis.set_ylabel(label)
            if row == 0:
                axis.set_title(name, fontsize=9)
            axis.legend(fontsize=7)
            axis.grid(alpha=0.3)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(out, dpi=72)
    plt.close(figure)
    return out
