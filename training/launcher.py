"""``slideiqa-train``'s entry point: a one-line message, not a traceback, when the extra is missing.

``pip install slideiqa`` installs the ``slideiqa-train`` command too, but the training library needs
the ``training`` extra (PyTorch, scikit-learn, tqdm, albumentations, OpenCV, matplotlib); without it the
command says so.
"""

from __future__ import annotations

import sys

from slideiqa.extras import TORCH_MODULES

#: Modules of the ``training`` extra (import names), which includes the ``torch`` extra's.
EXTRA_MODULES = {"sklearn", "tqdm", "albumentations", "cv2", "matplotlib", *TORCH_MODULES}


def main() -> None:
    try:
        from .cli import main as cli_main
    except ModuleNotFoundError as error:
        missing = (error.name or "").split(".")[0]
        if missing not in EXTRA_MODULES:
            raise
        print(
            f"error: slideiqa-train needs the training extra (module {missing!r} is missing): "
            "pip install 'slideiqa[training]'",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
    cli_main()
