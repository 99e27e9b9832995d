"""The models that ship inside the package, selectable by name (``--model fast``)."""

from __future__ import annotations

from pathlib import Path

from slideiqa.models.card import ModelError, checkpoint_paths

PRETRAINED_DIR = Path(__file__).parent / "pretrained"

#: Shipped model names → checkpoint stem in ``pretrained/``. ``default`` is what ``slideiqa map`` uses:
#: the fast model, about 7× the tiles per second of ``accurate`` on a CPU (benchmarks/README.md);
#: ``accurate`` is MobileNetV2 fine-tuned from ImageNet, for GPUs or when time is no object.
PRETRAINED: dict[str, str] = {
    "default": "iqanet-fast",
    "fast": "iqanet-fast",
    "accurate": "mobilenet_v2-accurate",
}


def available_pretrained() -> dict[str, Path]:
    """Shipped names whose files are present in this installation."""
    found = {}
    for name, stem in PRETRAINED.items():
        tensors, card = checkpoint_paths(PRETRAINED_DIR / stem)
        if tensors.exists() and card.exists():
            found[name] = PRETRAINED_DIR / stem
    return found


def resolve_model(name_or_path: str | Path) -> Path:
    """A checkpoint stem for a shipped model name or a path to a ``.safetensors``/``.json`` checkpoint."""
    text = str(name_or_path)
    if text in PRETRAINED:
        stem = PRETRAINED_DIR / PRETRAINED[text]
        if not checkpoint_paths(stem)[0].exists():
            raise ModelError(f"model {text!r}: its files are missing from this installation ({stem})")
        return stem
    tensors, card = checkpoint_paths(text)
    if tensors.exists() or card.exists():
        return tensors.with_suffix("")
    raise ModelError(f"unknown model {text!r}: not a shipped model ({', '.join(PRETRAINED)}) nor a checkpoint file")
