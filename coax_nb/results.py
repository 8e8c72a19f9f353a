"""Result types, apart from the code that computes them, with one protocol.

Every result has ``to_dict()`` / ``to_json(path=None)`` / ``from_json(text_or_path)``
(a ``type`` and a ``schema_version`` in the JSON; :func:`load` reads any result back
without knowing its type in advance), ``to_frame()``, ``plot(ax=None)`` and
``_repr_html_`` for notebooks. Per-head scores are also available as a
``[n_layers, n_heads]`` grid (``UnitScores.grid``).
"""
from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import ClassVar, Optional

import numpy as np

from .units import Unit, all_units, parse_name, parse_units

SCHEMA_VERSION = 1
_TYPES: dict[str, type] = {}


def _nan_to_none(values) -> list:
    """JSON has no NaN: write it as null (nested lists too)."""
    out = []
    for x in values:
        if isinstance(x, (list, tuple, np.ndarray)):
            out.append(_nan_to_none(x))
        elif x is None or (isinstance(x, float) and math.isnan(x)):
            out.append(None)
        else:
            out.append(float(x) if isinstance(x, (float, np.floating)) else x)
    return out


def _none_to_nan(values) -> np.ndarray:
    return np.array([[np.nan if x is None else x for x in row] if isinstance(row, list) else
                     (np.nan if row is None else row) for row in values], float)


def _read_text(text_or_path) -> str:
    if isinstance(text_or_path, os.PathLike) or not str(text_or_path).lstrip().startswith(("{", "[")):
        return Path(text_or_path).read_text()
    return str(text_or_path)


class Result:
    """The protocol every result follows. Subclasses implement ``_payload()`` (the
    JSON-ready fields) and ``_from_payload(d)``; ``to_frame`` and ``plot`` as fits."""

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _TYPES[cls.__name__] = cls

    def _payload(self) -> dict:  # pragma: no cover - every result overrides it
        raise NotImplementedError

    @classmethod
    def _from_payload(cls, d: dict):  # pragma: no cover - every result overrides it
        raise NotImplementedError

    def to_dict(self) -> dict:
        return {"type": type(self).__name__, "schema_version": SCHEMA_VERSION, **self._payload()}

    def to_json(self, path: Optional[os.PathLike] = None, indent: Optional[int] = 1) -> str:
        """The result as JSON text; written atomically to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            from .io import atomic_write_text

            atomic_write_text(path, text)
        return text

    @classmethod
    def from_dict(cls, d: dict):
        kind = d.get("type")
        if kind not in _TYPES:
            raise ValueError(f"not a coax-nb result (type {kind!r}); known types: {', '.join(sorted(_TYPES))}")
        target = _TYPES[kind]
        if cls is not Result and not issubclass(target, cls):
            raise ValueError(f"this JSON holds a {kind}, not a {cls.__name__}; read it with coax_nb.results.load")
        version = d.get("schema_version", 0)
        if version > SCHEMA_VERSION:
            raise ValueError(f"this {kind} was written by a newer coax-nb (schema {version}, this one reads "
                             f"up to {SCHEMA_VERSION}); upgrade coax-nb")
        return target._from_payload(d)

    @classmethod
    def from_json(cls, text_or_path):
        """Read a result back from JSON text or a file path."""
        return cls.from_dict(json.loads(_read_text(text_or_path)))

    def to_frame(self):  # pragma: no cover - every result overrides it
        raise NotImplementedError

    def plot(self, ax=None):  # pragma: no cover - every result overrides it
        raise NotImplementedError

    def _repr_html_(self) -> str:
        title = f"<b>{type(self).__name__}</b>"
        try:
            table = self.to_frame().to_html(max_rows=20, float_format=lambda v: f"{v:.4g}", na_rep="–")
        except NotImplementedError:
            table = ""
        return f"<div class='coax-result'>{title}{table}</div>"


def load(text_or_path) -> Result:
    """Read any coax-nb result from JSON (text or a path)."""
    return Result.from_json(text_or_path)


@dataclass
class UnitScores(Result):
    """Per-head scores. ``scores[name]`` is an array over flat head ids
    (``layer * n_heads + head``); NaN where a score is undefined (e.g. comp on the
    primaries). ``grid(name)`` gives the same as ``[n_layers, n_heads]``."""

    n_layers: int
    n_heads: int
    primaries: list
    scores: dict
    meta: dict = field(default_factory=dict)

    @property
    def seed(self) -> list:
        warnings.warn("UnitScores.seed is renamed primaries", DeprecationWarning, stacklevel=2)
        return self.primaries

    @property
    def units(self) -> list[Unit]:
        return all_units(self.n_layers, self.n_heads)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.scores:
            raise KeyError(f"no score {name!r}; available: {', '.join(self.scores)}")
        return self.scores[name]

    def grid(self, name: str) -> np.ndarray:
        """Score ``name`` as a ``[n_layers, n_heads]`` array."""
        return self[name].reshape(self.n_layers, self.n_heads)

    def value(self, name: str, unit) -> float:
        u = parse_units([unit], self.n_layers, self.n_heads)[0]
        return float(self[name][u.flat(self.n_heads)])

    def is_primary(self) -> np.ndarray:
        mask = np.zeros(self.n_layers * self.n_heads, bool)
        for u in self.primaries:
            mask[u.flat(self.n_heads)] = True
        return mask

    def top(self, k: int = 10, by: str = "comp", exclude_primaries: bool = True) -> list[tuple[Unit, float]]:
        """The k highest-scoring heads by ``by`` (the primaries left out by default)."""
        vals = self[by].astype(float).copy()
        if exclude_primaries:
            vals[self.is_primary()] = np.nan
        order = [i for i in np.argsort(-np.nan_to_num(vals, nan=-np.inf), kind="stable") if not np.isnan(vals[i])]
        return [(self.units[i], float(vals[i])) for i in order[:k]]

    def to_frame(self):
        import pandas as pd

        units = self.units
        df = pd.DataFrame({"layer": [u.layer for u in units], "head": [u.head for u in units],
                           "name": [str(u) for u in units], "primary": self.is_primary()})
        for name, arr in self.scores.items():
            df[name] = arr
        return df.set_index("name", drop=False)

    def _payload(self) -> dict:
        return {"n_layers": self.n_layers, "n_heads": self.n_heads, "primaries": [str(u) for u in self.primaries],
                "scores": {k: _nan_to_none(v.astype(float)) for k, v in self.scores.items()}, "meta": self.meta}

    @classmethod
    def _from_payload(cls, d: dict) -> "UnitScores":
        scores = {k: np.array([np.nan if x is None else x for x in v], float) for k, v in d["scores"].items()}
        primaries = parse_units(d.get("primaries", d.get("seed")), d["n_layers"], d["n_heads"])
        return cls(d["n_layers"], d["n_heads"], primaries, scores, d.get("meta", {}))

    def merged(self, other: "UnitScores") -> "UnitScores":
        """These scores plus ``other``'s columns (same model shape and primaries)."""
        if ((other.n_layers, other.n_heads) != (self.n_layers, self.n_heads)
                or set(other.primaries) != set(self.primaries)):
            raise ValueError("can only merge scores of the same model with the same primaries")
        return UnitScores(self.n_layers, self.n_heads, list(self.primaries), {**self.scores, **other.scores},
                          {**self.meta, **{k: v for k, v in other.meta.items() if k not in self.meta}})

    def table(self, k: int = 10, by: str = "comp") -> str:
        cols = [c for c in ("single", "conditional", "comp", "ratio", "wakeup") if c in self.scores]
        lines = [f"{'rank':>4}  {'head':>6}  " + "  ".join(f"{c:>12}" for c in cols)]
        for r, (u, _) in enumerate(self.top(k, by), 1):
            i = u.flat(self.n_heads)
            lines.append(f"{r:>4}  {str(u):>6}  " + "  ".join(f"{self.scores[c][i]:>12.4g}" for c in cols))
        return "\n".join(lines)

    def plot(self, ax=None, by: str = "comp"):
        """Head map of score ``by`` (layer x head)."""
        from .plots import head_map

        return head_map(self.grid(by), by, primaries=self.primaries, ax=ax)

    def __repr__(self) -> str:
        prim = ", ".join(map(str, self.primaries))
        return (f"UnitScores({self.n_layers}x{self.n_heads} heads, primaries [{prim}], "
                f"scores {list(self.scores)})\n" + self.table(5))


@dataclass
class PairScores(Result):
    """Head x head matrices (``values[name]`` is ``[M, M]`` over ``units``)."""

    units: list
    values: dict
    meta: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[name]

    def top_pairs(self, k: int = 10, by: Optional[str] = None) -> list[tuple[Unit, Unit, float]]:
        by = by or next(iter(self.values))
        m = self.values[by]
        pairs = [(self.units[i], self.units[j], float(m[i, j])) for i, j in combinations(range(len(self.units)), 2)
                 if not np.isnan(m[i, j])]
        return sorted(pairs, key=lambda t: -t[2])[:k]

    def _payload(self) -> dict:
        return {"units": [str(u) for u in self.units],
                "values": {k: _nan_to_none(np.asarray(v, float)) for k, v in self.values.items()}, "meta": self.meta}

    @classmethod
    def _from_payload(cls, d: dict) -> "PairScores":
        units = [parse_name(u) for u in d["units"]]
        return cls(units, {k: _none_to_nan(v) for k, v in d["values"].items()}, d.get("meta", {}))

    def to_frame(self, name: Optional[str] = None):
        import pandas as pd

        name = name or next(iter(self.values))
        labels = [str(u) for u in self.units]
        return pd.DataFrame(self.values[name], index=labels, columns=labels)

    def plot(self, ax=None, name: Optional[str] = None):
        from .plots import synergy_grid

        name = name or next(iter(self.values))
        return synergy_grid(self.values[name], [str(u) for u in self.units], name, ax=ax)


@dataclass
class Completion(Result):
    """Greedy conditional completion: heads in the order they were added, with the
    ablation energy each had given everything selected before it."""

    primaries: list
    added: list
    gains: list
    meta: dict = field(default_factory=dict)

    def _payload(self) -> dict:
        return {"primaries": [str(u) for u in self.primaries], "added": [str(u) for u in self.added],
                "gains": [float(g) for g in self.gains], "meta": self.meta}

    @classmethod
    def _from_payload(cls, d: dict) -> "Completion":
        units = lambda xs: [parse_name(u) for u in xs]  # noqa: E731
        return cls(units(d["primaries"]), units(d["added"]), list(d["gains"]), d.get("meta", {}))

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({"step": range(1, len(self.added) + 1), "head": [str(u) for u in self.added],
                             "gain": self.gains})

    def plot(self, ax=None):
        from .plots import bars

        return bars([str(u) for u in self.added], self.gains, "energy given the heads before it",
                    "Greedy conditional completion", ax=ax)

    def __repr__(self) -> str:
        steps = ", ".join(f"{u} ({g:.3g})" for u, g in zip(self.added, self.gains))
        return f"Completion(primaries [{', '.join(map(str, self.primaries))}] + {steps})"
