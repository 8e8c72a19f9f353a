"""Units (attention heads) and how users name them.

A unit is a head ``(layer, head)``; its flat id is ``layer * n_heads + head``.
Users may write a head as ``(9, 9)``, ``"9.9"``, ``"L9H9"`` or a flat id; every
public function goes through :func:`parse_units` so that a bad name fails the same
clear way everywhere.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Union

UnitLike = Union["Unit", tuple, list, str, int]

_NAME = re.compile(r"^\s*(?:L)?(\d+)\s*[.,:H ]\s*(\d+)\s*$", re.IGNORECASE)


@dataclass(frozen=True, order=True)
class Unit:
    layer: int
    head: int

    def __str__(self) -> str:
        return f"{self.layer}.{self.head}"

    def __iter__(self):  # so tuple(unit) / list(unit) give (layer, head)
        return iter((self.layer, self.head))

    def flat(self, n_heads: int) -> int:
        return self.layer * n_heads + self.head


def parse_unit(spec: UnitLike, n_layers: int, n_heads: int) -> Unit:
    """Turn any accepted head spelling into a checked :class:`Unit`."""
    if isinstance(spec, Unit):
        layer, head = spec.layer, spec.head
    elif isinstance(spec, bool):
        raise TypeError(f"{spec!r} is not a head; write (layer, head) or 'layer.head'")
    elif isinstance(spec, int):
        if not 0 <= spec < n_layers * n_heads:
            raise ValueError(
                f"head id {spec} is outside the model: flat ids run 0..{n_layers * n_heads - 1} "
                f"({n_layers} layers x {n_heads} heads)"
            )
        layer, head = divmod(spec, n_heads)
    elif isinstance(spec, str):
        m = _NAME.match(spec)
        if not m:
            raise ValueError(f"cannot read head {spec!r}; write it as 'layer.head', e.g. '9.9'")
        layer, head = int(m.group(1)), int(m.group(2))
    elif isinstance(spec, (tuple, list)) and len(spec) == 2:
        layer, head = int(spec[0]), int(spec[1])
    else:
        raise TypeError(f"{spec!r} is not a head; write (layer, head) or 'layer.head'")
    if not (0 <= layer < n_layers and 0 <= head < n_heads):
        raise ValueError(
            f"head {layer}.{head} is outside the model: layers run 0..{n_layers - 1}, "
            f"heads 0..{n_heads - 1}"
        )
    return Unit(layer, head)


def parse_units(specs: Iterable[UnitLike] | UnitLike | None, n_layers: int, n_heads: int) -> list[Unit]:
    """Parse a collection of heads, keeping order and dropping repeats."""
    if specs is None:
        return []
    if isinstance(specs, (str, int, Unit)) or (
        isinstance(specs, tuple) and len(specs) == 2 and all(isinstance(x, int) for x in specs)
    ):
        specs = [specs]
    out: list[Unit] = []
    for s in specs:
        u = parse_unit(s, n_layers, n_heads)
        if u not in out:
            out.append(u)
    return out


def all_units(n_layers: int, n_heads: int) -> list[Unit]:
    return [Unit(layer, head) for layer in range(n_layers) for head in range(n_heads)]
