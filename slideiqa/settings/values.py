"""What kind a value read from a file is: the checks the settings, cluster-settings and model-card
parsers share. TOML and JSON tell ``true`` from ``1`` and ``"8"`` from ``8``, and Python's ``bool`` is
an ``int``: a switch is never a count, and text is never a number."""

from __future__ import annotations

import math
from typing import Any


def is_number(value: Any) -> bool:
    """An int or a finite float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_whole(value: Any) -> bool:
    """An int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)
