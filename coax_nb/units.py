"""Units (attention heads and MLP layers) and how users name them.

A unit is a head ``(layer, head)``; its flat id (an index into per-head arrays) is
``layer * n_heads + head``. Heads are labelled the TransformerLens way, ``L9H9``.
A layer's MLP is a unit too, ``Unit.mlp(3)``, written ``L3MLP`` or ``M3``: it can be
ablated and conditioned on wherever units are accepted, but per-head arrays (the
columns of a scan) have no entry for it.

Accepted spellings of one head: ``Unit(9, 9)``, ``(9, 9)`` or ``[9, 9]`` (numpy
integers too), and the strings ``"9.9"``, ``"L9H9"``, ``"L9.H9"``, ``"a9.h9"``,
``"9:9"``. **The rule for lists:** a collection is a list of heads, each written as
above; a pair of integers on its own is one head. A bare integer is never a head
(``10`` could mean head 0.10 or layer 10), and neither is a float: ``9.10`` read as a
number is ``9.1`` (papermill ``-p``, YAML and CSV do that), so write heads as strings.
Every public function goes through :func:`parse_units`, so a bad name fails the same
clear way everywhere.
"""
from __future__ import annotations

import numbers
import re
from dataclasses import dataclass
from typing import Iterable, Union

UnitLike = Union["Unit", tuple, list, str]

_NAME = re.compile(r"^\s*(?:L|a)?\s*(\d+)\s*(?:[.,:]\s*(?:H|h)?|H)\s*(\d+)\s*$", re.IGNORECASE)
_MLP_NAME = re.compile(r"^\s*(?:L\s*(\d+)\s*[.:]?\s*MLP|M\s*(\d+)|(\d+)\s*[.:]\s*MLP)\s*$", re.IGNORECASE)
MLP = -1  # the "head" index of a layer's MLP unit


@dataclass(frozen=True, order=True)
class Unit:
    layer: int
    head: int  # MLP (-1) for the layer's MLP

    @staticmethod
    def mlp(layer: int) -> "Unit":
        return Unit(int(layer), MLP)

    @property
    def is_mlp(self) -> bool:
        return self.head == MLP

    def __str__(self) -> str:
        return f"L{self.layer}MLP" if self.is_mlp else f"L{self.layer}H{self.head}"

    def __iter__(self):  # so tuple(unit) / list(unit) give (layer, head)
        return iter((self.layer, self.head))

    def flat(self, n_heads: int) -> int:
        if self.is_mlp:
            raise ValueError(f"{self} is an MLP unit, and per-head arrays (a scan's columns, head maps, ground "
                             "truth) hold heads only; use it as a primary, in a variant or in synergy")
        return self.layer * n_heads + self.head

    @staticmethod
    def from_flat(index: int, n_heads: int) -> "Unit":
        return Unit(*divmod(int(index), n_heads))


@dataclass(frozen=True, order=True)
class UnitGroup:
    """A named set of units scored as one unit (ablated together), e.g. the name movers
    as one module of a synergy grid: ``synergy(engine, {"movers": ["L9H9", "L9H6"], ...})``."""

    name: str
    members: tuple  # of Unit

    def __str__(self) -> str:
        return self.name

    def to_dict(self) -> dict:
        return {"name": self.name, "members": [str(u) for u in self.members]}


def parse_groups(groups: dict, n_layers: int, n_heads: int) -> list[UnitGroup]:
    """``{name: units}`` -> groups, in order; each name and each set must be non-empty."""
    out = []
    for name, specs in groups.items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a group's name must be a non-empty string, got {name!r}")
        members = parse_units(specs, n_layers, n_heads)
        if not members:
            raise ValueError(f"group {name!r} is empty; give it at least one unit")
        out.append(UnitGroup(name, tuple(members)))
    return out


def members(units) -> list[Unit]:
    """Units with every group replaced by its members."""
    out = []
    for u in units:
        out.extend(u.members if isinstance(u, UnitGroup) else (u,))
    return out


def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def parse_unit(spec: UnitLike, n_layers: int, n_heads: int) -> Unit:
    """Turn any accepted head spelling into a checked :class:`Unit`."""
    if isinstance(spec, Unit):
        layer, head = spec.layer, spec.head
    elif _is_int(spec):
        raise ValueError(f"{spec!r} alone is not a head (it could be a layer or a flat id); "
                         "write a head as 'L9H9' or a (layer, head) pair")
    elif isinstance(spec, numbers.Real) and not isinstance(spec, bool):
        raise ValueError(f"the number {spec!r} is not a head: written as a number, 9.10 becomes 9.1 "
                         "(papermill -p, YAML and CSV do this); pass heads as strings, e.g. 'L9H10' or '9.10'")
    elif isinstance(spec, str) and _MLP_NAME.match(spec):
        layer, head = int(next(g for g in _MLP_NAME.match(spec).groups() if g is not None)), MLP
    elif isinstance(spec, str):
        m = _NAME.match(spec)
        if not m:
            raise ValueError(f"cannot read unit {spec!r}; write a head as 'L9H9' or '9.9' (layer.head), "
                             "a layer's MLP as 'L9MLP' or 'M9'")
        layer, head = int(m.group(1)), int(m.group(2))
    elif isinstance(spec, (tuple, list)) and len(spec) == 2 and all(_is_int(x) for x in spec):
        layer, head = int(spec[0]), int(spec[1])
    else:
        raise ValueError(f"{spec!r} is not a head; write (layer, head) or 'L9H9'")
    if head == MLP:
        if not 0 <= layer < n_layers:
            raise ValueError(f"L{layer}MLP is outside the model: layers run 0..{n_layers - 1}")
        return Unit(layer, MLP)
    if not (0 <= layer < n_layers and 0 <= head < n_heads):
        raise ValueError(
            f"head L{layer}H{head} is outside the model: layers run 0..{n_layers - 1}, "
            f"heads 0..{n_heads - 1}"
        )
    return Unit(layer, head)


def parse_units(specs: Iterable[UnitLike] | UnitLike | None, n_layers: int, n_heads: int) -> list[Unit]:
    """Parse a collection of heads, keeping order and dropping repeats. A string may
    hold several heads separated by spaces or commas (``"L9H9, L10H0"``)."""
    if specs is None:
        return []
    if isinstance(specs, str):
        parts = [x for x in re.split(r"\s+|,(?=\s|[LaMm])", specs) if x]
        specs = parts if len(parts) != 1 else [specs]
    elif isinstance(specs, Unit) or (isinstance(specs, (tuple, list)) and len(specs) == 2
                                     and all(_is_int(x) for x in specs)):
        specs = [specs]
    elif _is_int(specs) or isinstance(specs, numbers.Real):
        specs = [specs]
    out: list[Unit] = []
    for s in specs:
        u = parse_unit(s, n_layers, n_heads)
        if u not in out:
            out.append(u)
    return out


def all_units(n_layers: int, n_heads: int) -> list[Unit]:
    return [Unit(layer, head) for layer in range(n_layers) for head in range(n_heads)]


def parse_name(spec: UnitLike) -> Unit:
    """A head from its name alone, without a model to check it against (reading files)."""
    return parse_unit(spec, 1 << 30, 1 << 30)


def ranked(values) -> list[int]:
    """Flat head ids, the largest value first (+inf first; -inf and NaN last). Finite values are
    compared on a grid of a millionth of the largest finite magnitude: values in one cell are
    rounding apart (mirror-image heads score the same but for it, and which came first would
    change with the kernels that computed them), so they keep layer-and-head order. Two values
    a hair apart on either side of a cell's edge still come in value order."""
    import numpy as np

    vals = np.asarray(values, float)
    finite = np.isfinite(vals)
    scale = float(np.abs(vals[finite]).max()) if finite.any() else 0.0
    key = np.where(np.isnan(vals), -np.inf, vals)
    if scale > 0:
        key = np.where(finite, np.round(vals / (1e-6 * scale)), key)
    return [int(i) for i in np.argsort(-key, kind="stable")]
