"""``slideiqa models``: the shipped quality models and their classes."""

from __future__ import annotations

from slideiqa.cli.base import command, output


@command(short="List the shipped quality models and their classes")
def models() -> None:
    """List the shipped quality models and what they were trained for."""
    from slideiqa.models.card import load_card
    from slideiqa.models.zoo import PRETRAINED, available_pretrained

    rows = []
    found = available_pretrained()
    for name in PRETRAINED:
        if name in found:
            card = load_card(found[name])
            rows.append(
                (
                    name,
                    card.architecture,
                    ", ".join(card.classes),
                    f"{card.mpp:g}",
                    str(card.tile_size),
                    found[name].name,
                )
            )
        else:
            rows.append((name, "—", "not installed", "", "", ""))
    output.table(("name", "architecture", "classes", "µm/px", "tile", "checkpoint"), rows)
