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
import numbers
import os
import warnings
from dataclasses import dataclass, field, fields
from itertools import combinations
from pathlib import Path
from typing import ClassVar, Optional

import numpy as np

from .units import Unit, UnitGroup, all_units, parse_name, parse_units, ranked

SCHEMA_VERSION = 1
_TYPES: dict[str, type] = {}


def _check_k(k) -> int:
    """How many entries a ``top`` list returns: a whole number >= 0."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"k must be a whole number >= 0, got {k!r} ({type(k).__name__}); pass an int, e.g. k=10")
    if k < 0:
        raise ValueError(f"k must be >= 0 (how many heads to list), got {k}; a negative k would silently drop "
                         "heads from the end of the ranking. Pass e.g. k=10")
    return int(k)


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


def _seeds_of(results, prompt_seeds, kind: type) -> list[int]:
    """The prompt seeds of ``results`` to average, one result of ``kind`` per seed,
    checked (at least two)."""
    from .tasks import check_prompt_seeds

    seeds = check_prompt_seeds(prompt_seeds)
    results = list(results)
    wrong = [type(r).__name__ for r in results if not isinstance(r, kind)]
    if wrong:
        raise TypeError(f"can only average {kind.__name__} results, got a {wrong[0]}")
    if len(results) != len(seeds) or len(seeds) < 2:
        raise ValueError(f"give one {kind.__name__} per prompt seed, at least two; got {len(results)} result(s) "
                         f"for {len(seeds)} seed(s)")
    return seeds


def _read_text(text_or_path) -> tuple[str, str]:
    """The JSON text and where it came from (for messages): a path is read, text is
    taken as it is."""
    if not isinstance(text_or_path, (str, os.PathLike)):
        raise TypeError(f"expected JSON text or a path to a JSON file, got {type(text_or_path).__name__}"
                        + ("; for a dict use Result.from_dict(d)" if isinstance(text_or_path, dict) else ""))
    if isinstance(text_or_path, str) and not text_or_path.strip():
        raise ValueError("got an empty string, which is neither JSON text nor a path")
    if isinstance(text_or_path, os.PathLike) or not text_or_path.lstrip().startswith(("{", "[")):
        path = Path(text_or_path)
        if path.is_dir():
            raise ValueError(f"{str(path)!r} is a folder; give the result's JSON file in it")
        return path.read_text(), f"file {str(path)!r}"
    return text_or_path, "the text given"


class Result:
    """The protocol every result follows. Subclasses implement ``_payload()`` (the
    JSON-ready fields) and ``_from_payload(d)``; ``to_frame`` and ``plot`` as fits."""

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):  # shared bases are not results of their own
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
            from .io import atomic_write_text, check_writable_file

            check_writable_file(path, "the result file")
            atomic_write_text(path, text)
        return text

    @classmethod
    def from_dict(cls, d: dict):
        if not isinstance(d, dict):
            raise ValueError(f"not a coax-nb result: the JSON holds a {type(d).__name__}, not an object with a "
                             "'type' and a 'schema_version'")
        kind = d.get("type")
        if kind not in _TYPES:
            raise ValueError(f"not a coax-nb result (type {kind!r}); known types: {', '.join(sorted(_TYPES))}")
        target = _TYPES[kind]
        if cls is not Result and not issubclass(target, cls):
            raise ValueError(f"this JSON holds a {kind}, not a {cls.__name__}; read it with coax_nb.results.load")
        version = d.get("schema_version", 0)
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ValueError(f"this {kind} has schema_version {version!r}; a coax-nb result's schema_version is a "
                             "whole number >= 0 (the file was edited or written by another tool)")
        if version > SCHEMA_VERSION:
            raise ValueError(f"this {kind} was written by a newer coax-nb (schema {version}, this one reads "
                             f"up to {SCHEMA_VERSION}); upgrade coax-nb")
        try:
            return target._from_payload(d)
        except KeyError as e:
            raise ValueError(f"this {kind} JSON is missing the field {e.args[0]!r}; the file is incomplete or "
                             "was edited by hand") from None
        except (TypeError, AttributeError, IndexError) as e:
            raise ValueError(f"this {kind} JSON is malformed ({type(e).__name__}: {e}); the file is damaged or "
                             "was edited by hand") from None

    @classmethod
    def from_json(cls, text_or_path):
        """Read a result back from JSON text or a file path."""
        text, source = _read_text(text_or_path)
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{source} is not valid JSON ({e}); was it cut short or edited by hand?") from None
        return cls.from_dict(d)

    def to_frame(self):  # pragma: no cover - every result overrides it
        raise NotImplementedError

    def plot(self, ax=None):  # pragma: no cover - every result overrides it
        raise NotImplementedError

    def choices(self) -> str:
        """The analyst's choices behind these numbers, as one line ("" when the defaults)."""
        meta = getattr(self, "meta", {}) or {}
        parts = [f"{meta[k]} {label}" for k, label in (("ablation", "ablation"), ("effect", "effect")) if k in meta]
        if meta.get("over_prompt_seeds"):
            parts.append("mean ± std over prompt seeds " + " ".join(map(str, meta["over_prompt_seeds"]["seeds"])))
        return ", ".join(parts)

    def _repr_html_(self) -> str:
        title = f"<b>{type(self).__name__}</b>"
        if self.choices():
            title += f" <span style='color:#555'>({self.choices()})</span>"
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
            if not u.is_mlp:
                mask[u.flat(self.n_heads)] = True
        return mask

    def top(self, k: int = 10, by: str = "comp", exclude_primaries: bool = True) -> list[tuple[Unit, float]]:
        """The k highest-scoring heads by ``by`` (the primaries left out by default)."""
        k = _check_k(k)
        vals = self[by].astype(float).copy()
        if exclude_primaries:
            vals[self.is_primary()] = np.nan
        order = [i for i in ranked(vals) if not np.isnan(vals[i])]
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
        L, H = d["n_layers"], d["n_heads"]
        if not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in (L, H)):
            raise ValueError(f"this UnitScores has n_layers={L!r}, n_heads={H!r}; both must be whole numbers >= 1")
        try:
            scores = {k: np.array([np.nan if x is None else x for x in v], float) for k, v in d["scores"].items()}
        except ValueError as e:
            raise ValueError(f"this UnitScores holds a score that is not a number ({e})") from None
        wrong = {k: len(v) for k, v in scores.items() if v.shape != (L * H,)}
        if wrong:
            raise ValueError(f"this UnitScores is for {L} x {H} = {L * H} heads, but score(s) {wrong} have another "
                             "length; the file is damaged or mixes two models")
        primaries = parse_units(d.get("primaries", d.get("seed")), d["n_layers"], d["n_heads"])
        return cls(d["n_layers"], d["n_heads"], primaries, scores, d.get("meta", {}))

    @classmethod
    def mean_over_seeds(cls, scans, prompt_seeds) -> "UnitScores":
        """The mean of scans of one model with one S, each on the prompt set of one
        prompt seed: ``scores`` are the means (a head NaN on any seed stays NaN), :meth:`spread`
        each score's std over the seeds (ddof 0, as RecoveryResult's), ``meta`` the first
        scan's with the cost summed and ``over_prompt_seeds`` (the seeds, the stds)."""
        seeds = _seeds_of(scans, prompt_seeds, cls)
        first = scans[0]
        if any((s.n_layers, s.n_heads) != (first.n_layers, first.n_heads) or set(s.primaries) != set(first.primaries)
               or set(s.scores) != set(first.scores) for s in scans):
            raise ValueError("can only average scans of the same model with the same primaries and scores")
        stacked = {k: np.stack([s.scores[k] for s in scans]) for k in first.scores}
        meta = dict(first.meta)
        for key in ("wall_seconds", "seconds", "forward_passes", "backward_passes"):  # what the whole cost
            if key in meta:
                meta[key] = float(sum(s.meta.get(key, 0) for s in scans))
        if "mlp_share" in meta:
            meta["mlp_share"] = float(np.mean([s.meta.get("mlp_share", 0) for s in scans]))
        meta["over_prompt_seeds"] = {"seeds": seeds, "std": {k: _nan_to_none(v.std(0)) for k, v in stacked.items()}}
        return cls(first.n_layers, first.n_heads, list(first.primaries), {k: v.mean(0) for k, v in stacked.items()},
                   meta)

    def spread(self, name: str) -> Optional[np.ndarray]:
        """Score ``name``'s std over the prompt seeds of a :meth:`mean_over_seeds` result;
        None for the scan of one prompt set."""
        self[name]  # a clear error for a score this result does not have
        over = self.meta.get("over_prompt_seeds")
        return None if not over else _none_to_nan(over["std"][name])

    def merged(self, other: "UnitScores") -> "UnitScores":
        """These scores plus ``other``'s columns (same model shape and primaries)."""
        if not isinstance(other, UnitScores):
            raise TypeError(f"can only merge per-head scores (UnitScores), got {type(other).__name__}")
        if ((other.n_layers, other.n_heads) != (self.n_layers, self.n_heads)
                or set(other.primaries) != set(self.primaries)):
            raise ValueError("can only merge scores of the same model with the same primaries")
        return UnitScores(self.n_layers, self.n_heads, list(self.primaries), {**self.scores, **other.scores},
                          {**self.meta, **{k: v for k, v in other.meta.items() if k not in self.meta}})

    def table(self, k: int = 10, by: Optional[str] = None) -> str:
        """The top ``k`` heads by ``by`` (default ``comp``, or ``single`` for a single scan);
        a :meth:`mean_over_seeds` result shows each mean ± its std over the seeds."""
        by = by or ("comp" if "comp" in self.scores else next(iter(self.scores)))
        cols = [c for c in ("single", "conditional", "comp", "ratio", "wakeup") if c in self.scores]
        spread = {c: self.spread(c) for c in cols}
        width = 12 if spread[cols[0]] is None else 21
        lines = [f"({self.choices()})"] if self.choices() else []
        lines += [f"{'rank':>4}  {'head':>6}  " + "  ".join(f"{c:>{width}}" for c in cols)]
        for r, (u, _) in enumerate(self.top(k, by), 1):
            i = u.flat(self.n_heads)
            lines.append(f"{r:>4}  {str(u):>6}  " + "  ".join(f"{self.cell(c, i):>{width}}" for c in cols))
        return "\n".join(lines)

    def cell(self, name: str, i: int) -> str:
        """Score ``name`` of flat head ``i`` as printed: ``0.597``, or ``0.597 ± 0.012`` for a
        :meth:`mean_over_seeds` result."""
        sd, value = self.spread(name), self.scores[name][i]
        return f"{value:.4g}" + ("" if sd is None or not np.isfinite(value) else f" ± {sd[i]:.2g}")

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
        if name not in self.values:
            raise KeyError(f"no pair score {name!r}; available: {', '.join(self.values)}")
        return self.values[name]

    def top_pairs(self, k: int = 10, by: Optional[str] = None) -> list[tuple[Unit, Unit, float]]:
        k = _check_k(k)
        by = by or next(iter(self.values))
        if by not in self.values:
            raise KeyError(f"no pair score {by!r}; available: {', '.join(self.values)}")
        m = self.values[by]
        pairs = [(self.units[i], self.units[j], float(m[i, j])) for i, j in combinations(range(len(self.units)), 2)
                 if not np.isnan(m[i, j])]
        return sorted(pairs, key=lambda t: -t[2])[:k]

    def modules(self, name: Optional[str] = None, n: Optional[int] = None) -> dict:
        """The matrix's modules: heads that interact strongly with each other, as groups
        ``{"M1": [heads], ...}`` (largest first; a head that belongs nowhere is a module of
        its own). Average-linkage merging on |values|; ``n`` modules, or (default) the
        merge step with the highest weighted modularity. The dict is what
        ``synergy(engine, units=...)`` takes to ablate each module as one unit (the grid
        collapsed to modules) and what ``SynergyGrid(..., groups="modules")`` draws."""
        by = name or next(iter(self.values))
        w = np.abs(np.nan_to_num(np.asarray(self[by], float)))
        w = (w + w.T) / 2
        np.fill_diagonal(w, 0)
        count = len(self.units)
        if n is not None:
            if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 1 <= n <= count:
                raise ValueError(f"n must be a whole number of modules from 1 to {count} (the heads in this "
                                 f"matrix), got {n!r}")
        total = w.sum()

        def modularity(parts):
            if total == 0:
                return 0.0
            deg = w.sum(1)
            return sum(w[np.ix_(p, p)].sum() / total - (deg[p].sum() / total) ** 2 for p in parts)

        parts = [[i] for i in range(count)]
        best = (modularity(parts), [list(p) for p in parts])
        while len(parts) > (n or 1):
            a, b = max(combinations(range(len(parts)), 2),
                       key=lambda ij: w[np.ix_(parts[ij[0]], parts[ij[1]])].mean())
            parts[a] = parts[a] + parts[b]
            del parts[b]
            q = modularity(parts)
            if n is None and q > best[0] + 1e-12:
                best = (q, [list(p) for p in parts])
        chosen = parts if n is not None else best[1]
        chosen = sorted((sorted(p) for p in chosen), key=lambda p: (-len(p), p[0]))
        return {f"M{k + 1}": [self.units[i] for i in p] for k, p in enumerate(chosen)}

    def _payload(self) -> dict:
        groups = [u.to_dict() for u in self.units if isinstance(u, UnitGroup)]
        return {"units": [str(u) for u in self.units], **({"groups": groups} if groups else {}),
                "values": {k: _nan_to_none(np.asarray(v, float)) for k, v in self.values.items()}, "meta": self.meta}

    @classmethod
    def _from_payload(cls, d: dict) -> "PairScores":
        groups = {g["name"]: UnitGroup(g["name"], tuple(parse_name(u) for u in g["members"]))
                  for g in d.get("groups", [])}
        units = [groups[u] if u in groups else parse_name(u) for u in d["units"]]
        return cls(units, {k: _none_to_nan(v) for k, v in d["values"].items()}, d.get("meta", {}))

    def to_frame(self, name: Optional[str] = None):
        import pandas as pd

        name = name or next(iter(self.values))
        labels = [str(u) for u in self.units]
        return pd.DataFrame(self[name], index=labels, columns=labels)

    def plot(self, ax=None, name: Optional[str] = None):
        from .plots import synergy_grid

        name = name or next(iter(self.values))
        return synergy_grid(self[name], [str(u) for u in self.units], name, ax=ax)


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


# ---------------------------------------------------------------------------- shared helpers
def _jsonable(x):
    """``x`` as plain JSON: heads as their names, nested results as dicts, numpy values as
    Python ones, and non-finite floats as null (JSON has no NaN)."""
    if isinstance(x, Result):
        return x.to_dict()
    if isinstance(x, Unit):
        return str(x)
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def roc_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate) at every distinct score, highest first,
    from (0, 0) to (1, 1), for finite ``scores`` and boolean ``labels`` (checked by
    :func:`coax_nb.evaluate.roc_curve`, the public entry)."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    pos, neg = labels.sum(), (~labels).sum()
    if pos == 0 or neg == 0:
        raise ValueError("an ROC curve needs at least one ground-truth head and one other head")
    values = np.unique(scores)[::-1]
    tp = np.array([0] + [int(labels[scores >= v].sum()) for v in values])
    fp = np.array([0] + [int((~labels)[scores >= v].sum()) for v in values])
    return fp / neg, tp / pos


def _heads(names) -> list[Unit]:
    return [parse_name(u) for u in names]


def _to_nan(x):
    return np.nan if x is None else x


def _panels(curves: dict, ax=None, which: Optional[str] = None):
    """One panel per Curves (a new figure), or only ``which`` (default the first) on ``ax``."""
    from .plots import curves as draw

    if ax is not None or which is not None:
        return draw(curves[which or next(iter(curves))], ax=ax)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.4))
    for a, c in zip(np.atleast_1d(axes), curves.values()):
        draw(c, ax=a)
    return fig


def _bars_with_draws(labels, values, draws, xlabel, title, colors, ax=None, errors=None):
    """Horizontal bars, the last one a mean over random draws shown as dots on it;
    ``errors``: error bars (one per bar)."""
    from .plots import bars

    fig = bars(labels, values, xlabel, title, errors=errors, colors=colors, ax=ax)
    a = ax if ax is not None else fig.axes[0]
    last = a.patches[len(labels) - 1]
    y = last.get_y() + last.get_height() / 2
    spread = 0.3 * last.get_height()
    a.scatter(draws, y + np.linspace(-spread, spread, max(1, len(draws))), color="#777777", zorder=3, s=12)
    a.axvline(0, color="k", lw=0.6)
    return fig


class _Fields(Result):
    """Results whose dataclass fields are JSON-ready once heads become names; the fields
    listed in ``_head_fields`` hold head lists and are read back with ``parse_name``."""

    _head_fields: ClassVar[tuple] = ()

    def _payload(self) -> dict:
        return _jsonable({f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def _kwargs(cls, d: dict) -> dict:
        kw = {f.name: d[f.name] for f in fields(cls) if f.name in d}
        for name in cls._head_fields:
            kw[name] = _heads(kw[name])
        return kw

    @classmethod
    def _from_payload(cls, d: dict):
        return cls(**cls._kwargs(d))


# ---------------------------------------------------------------------------- curves
@dataclass
class Curves(Result):
    """Named line series over a shared x axis, each with an optional band (e.g. mean ±
    sd of random controls): wake-up, knockout and pruning curves, and the Curves widget.
    ``series`` holds dicts with ``name``, ``x``, ``y`` and optional ``lo`` / ``hi``."""

    title: str
    xlabel: str
    ylabel: str
    series: list = field(default_factory=list)
    log_y: bool = False
    meta: dict = field(default_factory=dict)

    def add(self, name: str, x, y, lo=None, hi=None) -> "Curves":
        s = {"name": name, "x": [float(v) for v in x], "y": [float(v) for v in y]}
        if len(s["y"]) != len(s["x"]):
            raise ValueError(f"series {name!r} has {len(s['x'])} x values but {len(s['y'])} y values; give one y per x")
        if (lo is None) != (hi is None):
            raise ValueError(f"series {name!r}: a band needs both lo and hi (got only {'lo' if hi is None else 'hi'})")
        if lo is not None:
            s["lo"], s["hi"] = [float(v) for v in lo], [float(v) for v in hi]
            if not len(s["lo"]) == len(s["hi"]) == len(s["x"]):
                raise ValueError(f"series {name!r}: lo and hi need one value per x ({len(s['x'])}), got "
                                 f"{len(s['lo'])} and {len(s['hi'])}")
        self.series.append(s)
        return self

    def add_band(self, name: str, x, rows) -> "Curves":
        """A series of the mean over ``rows`` (axis 0) with a mean ± sd band."""
        rows = np.asarray(rows, float)
        if rows.ndim != 2 or rows.shape[0] == 0:
            raise ValueError(f"add_band takes rows of y values [draws, points], got shape {rows.shape}")
        m, sd = rows.mean(0), rows.std(0)
        return self.add(name, x, m, m - sd, m + sd)

    def get(self, name: str) -> dict:
        for s in self.series:
            if s["name"] == name:
                return s
        raise KeyError(f"no series {name!r}; have {[s['name'] for s in self.series]}")

    def _payload(self) -> dict:
        return _jsonable({"title": self.title, "xlabel": self.xlabel, "ylabel": self.ylabel, "series": self.series,
                          "log_y": self.log_y, "meta": self.meta})

    @classmethod
    def _from_payload(cls, d: dict) -> "Curves":
        series = [{k: (v if k == "name" else [float(_to_nan(x)) for x in v]) for k, v in s.items()}
                  for s in d.get("series", [])]
        return cls(d.get("title", ""), d.get("xlabel", ""), d.get("ylabel", ""), series, bool(d.get("log_y")),
                   d.get("meta", {}))

    def to_frame(self):
        """One row per point: series, x, y (and lo, hi where a band is drawn)."""
        import pandas as pd

        rows = [{"series": s["name"], "x": x, "y": y,
                 **({"lo": s["lo"][i], "hi": s["hi"][i]} if "lo" in s else {})}
                for s in self.series for i, (x, y) in enumerate(zip(s["x"], s["y"]))]
        return pd.DataFrame(rows, columns=["series", "x", "y", "lo", "hi"])

    def plot(self, ax=None):
        from .plots import curves

        return curves(self, ax=ax)


# ---------------------------------------------------------------------------- recovery
SELECTOR_LABELS = {
    "comp": "CoAx (conditional - single)", "ratio": "CoAx ratio", "conditional": "conditional energy",
    "single": "single ablation", "coact": "co-activation affinity", "atp": "AtP", "atp_gd": "AtP* GradDrop",
    "eap_ig": "EAP-IG", "cond_atp": "conditional AtP", "cond_atp_gd": "conditional AtP* GradDrop",
    "cond_eap_ig": "conditional EAP-IG", "delta_atp": "AtP two-state difference",
    "delta_atp_gd": "GradDrop two-state difference", "delta_eap_ig": "EAP-IG two-state difference",
}
_CONDITIONAL_SELECTORS = ("comp", "ratio", "conditional")  # drawn in the CoAx colour


@dataclass
class RecoveryResult(_Fields):
    """The backup-recovery table: one row per selector (mean and std over repeats) plus
    every repeat's per-head scores (one :class:`UnitScores` per repeat)."""

    rows: list
    scores: list
    truth: list
    primaries: list
    meta: dict = field(default_factory=dict)
    _head_fields = ("truth", "primaries")

    @property
    def seed(self) -> list:
        warnings.warn("RecoveryResult.seed is renamed primaries", DeprecationWarning, stacklevel=2)
        return self.primaries

    def row(self, selector: str) -> dict:
        for r in self.rows:
            if r["selector"] == selector:
                return r
        raise KeyError(f"no selector {selector!r} in this result; have {[r['selector'] for r in self.rows]}")

    def auc(self, selector: str) -> float:
        return self.row(selector)["roc_auc"]

    @classmethod
    def _from_payload(cls, d: dict) -> "RecoveryResult":
        kw = cls._kwargs(d)
        kw["scores"] = [UnitScores.from_dict(s) for s in kw["scores"]]
        return cls(**kw)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows)

    def table(self) -> str:
        k = self.rows[0]["k"] if self.rows else 0
        rep = self.meta.get("repeats", 1)
        pm = rep > 1
        paper = self.meta.get("paper") or {}  # a preset's published AUCs, beside the measured ones
        head = (f"{'selector':<28} {'ROC-AUC':>13}{'  paper' if paper else ''} {'AP':>13} {'P@' + str(k):>13} "
                f"{'seconds':>9} {'fwd':>7} {'bwd':>7}")
        lines = ([f"({self.choices()})"] if self.choices() else []) + [head]
        for r in self.rows:
            def cell(name):
                return f"{r[name]:.3f}" + (f" ± {r[name + '_std']:.3f}" if pm else "")
            published = (f"  {paper[r['selector']]:5.2f}" if r["selector"] in paper else "      –") if paper else ""
            lines.append(f"{SELECTOR_LABELS.get(r['selector'], r['selector']):<28} {cell('roc_auc'):>13}{published} "
                         f"{cell('ap'):>13} {cell('p_at_k'):>13} {r['seconds']:>9.3f} {r['forward_passes']:>7.1f} "
                         f"{r['backward_passes']:>7.1f}")
        lines.append(f"(truth: {len(self.truth)} backups; primaries {', '.join(map(str, self.primaries))}; "
                     f"{rep} prompt set{'s' if rep > 1 else ''}; cost columns are per repeat, shared by the "
                     "selectors one pass computes)")
        if paper:
            on = self.meta.get("paper_model", "")
            model = self.meta.get("model", on)
            lines.append(f"(paper: preset {self.meta.get('preset', '')}, measured by the paper on {on}"
                         + ("" if model == on else f"; this run is on {model}, so only the ordering compares") + ")")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.table()

    def roc(self, selector: str, repeat: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(false-positive rate, true-positive rate) of ``selector``'s ranking of the heads
        outside the primaries against the truth, on one repeat's prompts."""
        self.row(selector)  # a clear error for a selector this result does not have
        if not 0 <= repeat < len(self.scores):
            raise ValueError(f"repeat {repeat} is outside this result's {len(self.scores)} prompt set(s)")
        sc = self.scores[repeat]
        keep = ~sc.is_primary()
        labels = np.zeros(len(sc.units), bool)
        for u in self.truth:
            labels[u.flat(sc.n_heads)] = True
        vals = np.asarray(sc[selector], float)[keep]
        if not np.isfinite(vals).all():
            raise ValueError(f"score {selector!r} is NaN for some heads outside the primaries; cannot rank them")
        return roc_points(vals, labels[keep])

    def plot_roc(self, ax=None):
        """ROC curve of every selector (every repeat; the legend gives the mean AUC)."""
        from .plots import roc_curves

        curves = {SELECTOR_LABELS.get(r["selector"], r["selector"]):
                  [self.roc(r["selector"], i) for i in range(len(self.scores))] for r in self.rows}
        conditional = {SELECTOR_LABELS.get(s, s) for s in _CONDITIONAL_SELECTORS}
        return roc_curves(curves, {SELECTOR_LABELS.get(r["selector"], r["selector"]): r["roc_auc"] for r in self.rows},
                          f"{self.meta.get('title', 'Backup recovery')}: ROC per selector\n"
                          f"({len(self.truth)} backups among the heads outside S)", highlight=conditional, ax=ax)

    def plot(self, ax=None):
        """Horizontal bars of ROC-AUC (± std over repeats), chance at 0.5."""
        from .plots import bars

        rows = sorted(self.rows, key=lambda r: -r["roc_auc"])  # best on top
        colors = ["#0072B2" if r["selector"] in _CONDITIONAL_SELECTORS else "#999999" for r in rows]
        fig = bars([SELECTOR_LABELS.get(r["selector"], r["selector"]) for r in rows], [r["roc_auc"] for r in rows],
                   "ROC-AUC at recovering the ground-truth backups", self.meta.get("title", "Backup recovery"),
                   errors=[r.get("roc_auc_std", 0) for r in rows], colors=colors, ax=ax, chance=0.5)
        (ax if ax is not None else fig.axes[0]).set_xlim(0, 1.05)
        return fig


# ---------------------------------------------------------------------------- validation
@dataclass
class WakeUp(_Fields):
    """Wake-up curves (x = number of primaries ablated), one :class:`Curves` per signal
    (``norm``, ``effect``, ``dla``), and per signal the selected set's rise minus the
    random sets' mean rise (``margins``)."""

    curves: dict
    margins: dict
    primaries: list
    selected: list
    meta: dict = field(default_factory=dict)
    _head_fields = ("primaries", "selected")

    @classmethod
    def _from_payload(cls, d: dict) -> "WakeUp":
        kw = cls._kwargs(d)
        kw["curves"] = {k: Curves.from_dict(c) for k, c in kw["curves"].items()}
        return cls(**kw)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.margins).T.rename_axis("signal")

    def plot(self, ax=None, signal: Optional[str] = None):
        """One panel per signal; with ``ax`` (or ``signal``) only that signal (default the first)."""
        return _panels(self.curves, ax, signal)

    @classmethod
    def mean_over_seeds(cls, wakeups, prompt_seeds) -> "WakeUp":
        """The wake-up of one selected set on the prompt sets of several prompt seeds: a
        line becomes its mean with a ± std band over the seeds; a band over random sets
        (the same sets on every seed) becomes the mean ± sd over every set on every seed
        (the series keep their names, the titles say so);
        margins are means, with their per-seed values and stds in ``meta["over_prompt_seeds"]``."""
        seeds = _seeds_of(wakeups, prompt_seeds, cls)
        first = wakeups[0]
        if any(set(w.selected) != set(first.selected) or set(w.primaries) != set(first.primaries)
               or set(w.curves) != set(first.curves) for w in wakeups):
            raise ValueError("can only average the wake-up of the same selected set with the same primaries")
        n = len(seeds)
        curves = {}
        for signal, c in first.curves.items():
            out = Curves(f"{c.title}\n(mean over {n} prompt seeds, bands ± sd)", c.xlabel, c.ylabel, log_y=c.log_y,
                         meta={**c.meta, "prompt_seeds": seeds})
            for k, s in enumerate(c.series):
                y = np.array([w.curves[signal].series[k]["y"] for w in wakeups])
                m = y.mean(0)
                if "lo" in s:  # mean ± sd over draws: pooled over the seeds' equal numbers of draws
                    sd = np.array([w.curves[signal].series[k]["hi"] for w in wakeups]) - y
                    sd = np.sqrt((sd ** 2 + (y - m) ** 2).mean(0))
                else:  # one line per seed: ± sd over the seeds
                    sd = y.std(0)
                out.add(s["name"], s["x"], m, m - sd, m + sd)
            curves[signal] = out
        margins = {sig: {key: float(np.mean([w.margins[sig][key] for w in wakeups])) for key in first.margins[sig]}
                   for sig in first.margins}
        std = {sig: {key: float(np.std([w.margins[sig][key] for w in wakeups])) for key in first.margins[sig]}
               for sig in first.margins}
        meta = {**first.meta, "over_prompt_seeds": {"seeds": seeds, "margins_std": std,
                                                    "margins": [w.margins for w in wakeups]}}
        return cls(curves, margins, list(first.primaries), list(first.selected), meta)


@dataclass
class HandOff(_Fields):
    """Summed DLA of primaries / selected / the rest, intact vs primaries ablated:
    ``table[group] = {"intact": x, "primaries ablated": y}``."""

    table: dict
    primaries: list
    selected: list
    meta: dict = field(default_factory=dict)
    _head_fields = ("primaries", "selected")

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.table).T.rename_axis("group")

    def plot(self, ax=None):
        """Grouped bars: each group's DLA intact and with the primaries ablated."""
        import matplotlib.pyplot as plt

        from .plots import line_color

        groups = list(self.table)
        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.4))
        xs = np.arange(2)
        w = 0.8 / len(groups)
        for i, g in enumerate(groups):
            vals = [self.table[g]["intact"], self.table[g]["primaries ablated"]]
            ax.bar(xs + i * w - 0.4 + w / 2, vals, w, label=g, color=line_color(i))
        ax.set_xticks(xs, ["intact", "primaries ablated"])
        ax.axhline(0, color="k", lw=0.6)
        ax.set_ylabel("direct logit attribution")
        ax.set_title("DLA hand-off", fontsize=10)
        ax.legend(fontsize=8, frameon=False)
        ax.figure.tight_layout()
        return ax.figure


@dataclass
class Freezing(_Fields):
    """Fraction of the self-repair removed by freezing the selected heads at their clean
    outputs (``removed``), the same for size-matched random sets, and the metrics."""

    removed: float
    random_removed: list
    metric: dict
    primaries: list
    selected: list
    meta: dict = field(default_factory=dict)
    _head_fields = ("primaries", "selected")

    def to_frame(self):
        import pandas as pd

        sets = self.meta.get("random_sets", [None] * len(self.random_removed))
        return pd.DataFrame({"set": ["selected"] + [f"random #{i}" for i in range(len(self.random_removed))],
                             "heads": [" ".join(map(str, self.selected))] + [" ".join(s or []) for s in sets],
                             "removed": [self.removed] + list(self.random_removed)}).set_index("set")

    def plot(self, ax=None):
        """The selected set's bar and the random sets' mean (their dots); a
        :meth:`mean_over_seeds` result adds ± std over the seeds as error bars."""
        n = len(self.random_removed)
        over = self.meta.get("over_prompt_seeds")
        return _bars_with_draws(["selected", f"random (n={n})"], [self.removed, np.mean(self.random_removed)],
                                self.random_removed, "fraction of self-repair removed", "Causal freezing",
                                ["#0072B2", "#DDDDDD"], ax,
                                errors=None if not over else [over["removed_std"], over["random_mean_std"]])

    @classmethod
    def mean_over_seeds(cls, freezings, prompt_seeds) -> "Freezing":
        """Freezing of one selected set on the prompt sets of several prompt seeds:
        ``removed`` and each random set's fraction (the same sets on every seed) are means
        over the seeds; ``meta["over_prompt_seeds"]`` holds the seeds, the per-seed values,
        the std of ``removed`` and of the random sets' mean."""
        seeds = _seeds_of(freezings, prompt_seeds, cls)
        first = freezings[0]
        if any(set(f.selected) != set(first.selected) or f.meta.get("random_sets") != first.meta.get("random_sets")
               for f in freezings):
            raise ValueError("can only average the freezing of the same selected and random sets")
        removed = np.array([f.removed for f in freezings])
        rnd = np.array([f.random_removed for f in freezings])
        metric = {k: float(np.mean([f.metric[k] for f in freezings])) for k in first.metric}
        meta = {**first.meta, "over_prompt_seeds": {
            "seeds": seeds, "removed": removed.tolist(), "random_removed": rnd.tolist(),
            "removed_std": float(removed.std()), "random_mean_std": float(rnd.mean(1).std())}}
        return cls(float(removed.mean()), rnd.mean(0).tolist(), metric, list(first.primaries), list(first.selected),
                   meta)


@dataclass
class Patching(_Fields):
    """Fraction of the answer moved to the counterfactual one by patching the selected
    heads (primaries ablated), and the same for size-matched random sets."""

    moved: float
    random_moved: list
    primaries: list
    selected: list
    meta: dict = field(default_factory=dict)
    _head_fields = ("primaries", "selected")

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({"set": ["selected"] + [f"random #{i}" for i in range(len(self.random_moved))],
                             "moved": [self.moved] + list(self.random_moved)}).set_index("set")

    def plot(self, ax=None):
        n = len(self.random_moved)
        return _bars_with_draws(["selected", f"random (n={n})"], [self.moved, np.mean(self.random_moved)],
                                self.random_moved, "fraction of the answer moved",
                                "Counterfactual patching (primaries ablated)", ["#009E73", "#DDDDDD"], ax)


# ---------------------------------------------------------------------------- applications
@dataclass
class AttributionRepair(_Fields):
    """Metric change (ablated - clean) from ablating the primaries alone vs primaries +
    backups."""

    clean: float
    primaries_only: float
    with_backups: float
    primaries: list
    backups: list
    meta: dict = field(default_factory=dict)
    _head_fields = ("primaries", "backups")

    @property
    def factor(self) -> float:
        """How many times larger the effect is once the backups go too."""
        return self.with_backups / self.primaries_only if self.primaries_only else float("inf")

    def _payload(self) -> dict:
        return {**super()._payload(), "factor": _jsonable(self.factor)}  # derived: written, not read

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({"ablated": ["primaries alone", "primaries + backups"],
                             "metric_change": [self.primaries_only, self.with_backups]}).set_index("ablated")

    def plot(self, ax=None):
        from .plots import bars

        fig = bars(["primaries alone", "primaries + backups"], [self.primaries_only, self.with_backups],
                   "change of the behaviour metric", f"Attribution repair: {self.factor:.1f}x larger with backups",
                   colors=["#999999", "#0072B2"], ax=ax)
        (ax if ax is not None else fig.axes[0]).axvline(0, color="k", lw=0.6)
        return fig


@dataclass
class Knockout(_Fields):
    """Per selector and k: accuracy, metric, distance to the oracle knockout and KL on
    unrelated text (``rows``), and one :class:`Curves` over k per signal."""

    rows: list
    curves: dict
    primaries: list
    oracle: list
    meta: dict = field(default_factory=dict)
    _head_fields = ("primaries", "oracle")

    def row(self, selector: str, k: int) -> dict:
        for r in self.rows:
            if r["selector"] == selector and r["k"] == k:
                return r
        raise KeyError(f"no row for selector {selector!r} at k={k!r}; selectors: "
                       f"{sorted({r['selector'] for r in self.rows})}, k = 0..{self.meta.get('K')}")

    @classmethod
    def _from_payload(cls, d: dict) -> "Knockout":
        kw = cls._kwargs(d)
        kw["rows"] = [{k: _to_nan(v) for k, v in r.items()} for r in kw["rows"]]  # no KL without unrelated text
        kw["curves"] = {k: Curves.from_dict(c) for k, c in kw["curves"].items()}
        return cls(**kw)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows)

    def plot(self, ax=None, signal: Optional[str] = None):
        """One panel per signal; with ``ax`` (or ``signal``) only that signal (default the first)."""
        return _panels(self.curves, ax, signal)


@dataclass
class CircuitCompletion(_Fields):
    """Incompleteness of each kept circuit (lower is better), its response to the
    primaries' removal, and the full model's response."""

    incompleteness: dict
    responses: dict
    full_response: float
    primaries: list
    meta: dict = field(default_factory=dict)
    _head_fields = ("primaries",)

    def to_frame(self):
        import pandas as pd

        names = list(self.incompleteness)
        return pd.DataFrame({"circuit": names, "incompleteness": [self.incompleteness[n] for n in names],
                             "response": [self.responses.get(n, np.nan) for n in names]}).set_index("circuit")

    def plot(self, ax=None):
        from .plots import bars

        names = list(self.incompleteness)
        colors = ["#999999", "#0072B2", "#009E73", "#E69F00"][: len(names)] + ["#CCCCCC"] * max(0, len(names) - 4)
        return bars(names, [self.incompleteness[n] for n in names], "incompleteness (lower is better)",
                    "Circuit completion", colors=colors, ax=ax)


@dataclass
class Pruning(_Fields):
    """Held-out loss after each pruning step for every order: ``orders[name] =
    {"removed": [...], "loss": [...]}`` (``loss[0]``: nothing pruned); ``steps``: the
    repair-aware steps' seconds, forward passes and candidates; ``primaries``: the set the
    co_ablation order conditioned on."""

    orders: dict
    steps: list
    primaries: list
    meta: dict = field(default_factory=dict)
    _head_fields = ("primaries",)

    def fractions(self, name: str) -> list[float]:
        if name not in self.orders:
            raise KeyError(f"no pruning order {name!r} in this result; have {list(self.orders)}")
        g, total = self.meta["group_size"], self.meta["n_units"]
        return [min(1.0, g * i / total) for i in range(len(self.orders[name]["loss"]))]

    def curves(self) -> Curves:
        c = Curves("Repair-aware pruning", "fraction of heads pruned", "held-out loss (nats)", log_y=True,
                   meta={"ablation": self.meta.get("ablation"), "n_prompts": self.meta.get("evaluation"),
                         "about": f"loss on held-out prompts; {self.meta.get('calibration')} calibration prompts "
                                  f"rank the heads"})
        for name, o in self.orders.items():
            c.add(name, self.fractions(name), o["loss"])
        return c

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([{"order": n, "step": i, "fraction_pruned": x, "loss": o["loss"][i]}
                             for n, o in self.orders.items() for i, x in enumerate(self.fractions(n))])

    def plot(self, ax=None):
        return self.curves().plot(ax)


@dataclass
class InductionTransfer(_Fields):
    """The induction completion panel (:func:`coax_nb.induction_transfer`): one record
    per model (``models``: primaries by induction score, each selector's ranking, the
    controls' head sets, costs) and one row per model, k and selector or control
    (``rows``: ``drop`` of the induction metric on the evaluation split with primaries +
    those k heads ablated, and ``over_random`` / ``over_own`` / ``over_primary_only``,
    in nats of log-prob; ``truth_hits``: how many of the added heads are documented
    backups, for organisms, never used to select). :meth:`macro` averages the members of a
    family first, then the families."""

    models: list
    rows: list
    meta: dict = field(default_factory=dict)

    MEASURES: ClassVar[tuple] = ("drop", "over_random", "over_own", "over_primary_only")

    @classmethod
    def _from_payload(cls, d: dict):
        if "rows" not in d:  # written before the panel: one model, one k, CoAx against random
            return cls._from_single(d)
        return cls(**cls._kwargs(d))

    @classmethod
    def _from_single(cls, d: dict) -> "InductionTransfer":
        prim, comp, rand = list(d["primaries"]), list(d["completion"]), list(d["random_effects"])
        p, e, r = float(d["primaries_effect"]), float(d["effect"]), float(np.mean(rand))
        base = {"model": "model", "family": "?", "k": len(comp), "random_drop": r,
                "random_sd": float(np.std(rand)), "own_drop": float("nan"), "primary_drop": p}
        rows = [dict(base, selector="comp", heads=" ".join(comp), drop=e, over_random=e - r,
                     over_own=float("nan"), over_primary_only=e - p),
                dict(base, selector="random", heads="", drop=r, over_random=0.0, over_own=float("nan"),
                     over_primary_only=r - p)]
        meta = dict(d.get("meta", {}))
        record = {"label": "model", "family": "?", "primaries": prim, "ks": [len(comp)],
                  "rankings": {"comp": comp}, "primary_drop": p,
                  "random_sets": {str(len(comp)): meta.get("random_sets", [])}}
        meta.setdefault("selectors", ["comp"])
        return cls([record], rows, meta)

    @property
    def labels(self) -> list:
        return [m["label"] for m in self.models]

    def model(self, label: str) -> dict:
        """The record of one model (primaries, induction scores, rankings, costs)."""
        for m in self.models:
            if m["label"] == label:
                return m
        raise KeyError(f"no model {label!r} in this panel; models: {', '.join(self.labels)}")

    def primaries(self, label: str) -> list:
        return _heads(self.model(label)["primaries"])

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows, columns=["model", "family", "k", "selector", "heads", "drop", "random_drop",
                                                "random_sd", "own_drop", "primary_drop", "over_random", "over_own",
                                                "over_primary_only", "truth_hits"])

    def _check_measure(self, measure: str) -> str:
        if measure not in self.MEASURES:
            raise ValueError(f"unknown measure {measure!r}; choose one of {', '.join(self.MEASURES)}")
        return measure

    def macro(self, measure: str = "over_random"):
        """Selector x k table of ``measure``: each family's members averaged first, then
        the families; the column ``mean`` averages over k (each model's own ks)."""
        measure = self._check_measure(measure)
        f = self.to_frame()
        fam = f.groupby(["family", "selector", "k"], sort=False)[measure].mean()
        table = fam.groupby(["selector", "k"], sort=False).mean().unstack("k")
        table["mean"] = f.groupby(["family", "selector"], sort=False)[measure].mean().groupby(
            "selector", sort=False).mean()
        order = [s for s in self.meta.get("selectors", []) if s in table.index]
        return table.loc[order + [s for s in table.index if s not in order]]

    def by_family(self, measure: str = "over_random"):
        """Selector x family table of ``measure`` (members and k averaged)."""
        measure = self._check_measure(measure)
        f = self.to_frame()
        t = f.groupby(["selector", "family"], sort=False)[measure].mean().unstack("family")
        order = [s for s in self.meta.get("selectors", []) if s in t.index]
        return t.loc[order + [s for s in t.index if s not in order]]

    def table(self) -> str:
        """Per model: P, then drop / over random / over +own per selector and k; then the
        family macro."""
        f = self.to_frame()
        lines = [f"Induction completion panel: {len(self.models)} models, {f['family'].nunique()} families; drop of "
                 "the induction log-prob (nats) on the evaluation split with primaries + k heads ablated"]
        for m in self.models:
            lines.append(f"\n{m['label']} ({m['family']}): P = {' '.join(m['primaries'])} "
                         f"(drop {m['primary_drop']:.3f})"
                         + (f"; documented backups {' '.join(m['truth'])}" if m.get("truth") else ""))
            sub = f[f["model"] == m["label"]]
            lines.append(f"  {'selector':<10}" + "".join(f"{'k=' + str(k):>25}" for k in m["ks"]))
            for s in sub["selector"].unique():
                cells = []
                for k in m["ks"]:
                    r = sub[(sub["selector"] == s) & (sub["k"] == k)].iloc[0]
                    hits = r["truth_hits"]
                    cells.append(f"{r['drop']:7.3f} ({r['over_random']:+.2f}/{r['over_own']:+.2f})"
                                 + ("" if hits is None or hits != hits else f" {int(hits)}b"))
                lines.append(f"  {s:<10}" + "".join(f"{c:>25}" for c in cells))
        lines.append("  cells: drop (over random / over +own); Nb: N documented backups among the heads added")
        mac = self.macro("over_random")
        lines.append("\nfamily macro of over_random (families averaged after their members):")
        lines.append(f"  {'selector':<10}" + "".join(f"{str(c):>9}" for c in mac.columns))
        for s, row in mac.iterrows():
            lines.append(f"  {s:<10}" + "".join("      nan" if np.isnan(v) else f"{v:9.3f}" for v in row.values))
        return "\n".join(lines)

    def plot(self, ax=None):
        from .plots import induction_panel

        return induction_panel(self, ax=ax)


@dataclass
class HeadInspection(_Fields):
    """One head seen from every side (:func:`coax_nb.inspect_head`): its attention pattern
    on one prompt (``attention[query][key]``, clean run), its direct logit attribution
    to the answer at each output position (``dla["clean"]``, ``dla["primaries ablated"]``,
    ``dla["counted"]`` = 1 where the metric counts the position), its wake-up trace (mean
    output norm and DLA with the first n primaries ablated) and its scores."""

    head: Unit
    primaries: list
    prompt: int
    tokens: list
    positions: list
    attention: list
    dla: dict
    trace: dict
    scores: dict
    meta: dict = field(default_factory=dict)

    @classmethod
    def _from_payload(cls, d: dict) -> "HeadInspection":
        kw = cls._kwargs(d)
        kw["head"] = parse_name(kw["head"])
        return cls(**kw)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({"primaries ablated": self.trace["n_ablated"], "output norm": self.trace["norm"],
                             "DLA": self.trace["dla"]}).set_index("primaries ablated")

    def plot(self, ax=None):
        from .plots import head_inspector

        return head_inspector(self, ax=ax)


# ---------------------------------------------------------------------------- discovery
@dataclass
class Discovery(Result):
    """A primary set S chosen by :func:`coax_nb.discover.discover_primaries`, with the
    evidence for every head: ``evidence[name]`` is an array over flat head ids (NaN
    where a score cannot be read), ``by`` the column S was ranked by, ``primaries`` S
    best first, ``meta["source"]`` how it was chosen, in words."""

    n_layers: int
    n_heads: int
    method: str
    primaries: list
    evidence: dict
    by: str
    meta: dict = field(default_factory=dict)

    @property
    def source(self) -> str:
        return self.meta.get("source", f"auto:{self.method}")

    @property
    def units(self) -> list[Unit]:
        return all_units(self.n_layers, self.n_heads)

    def grid(self, name: Optional[str] = None) -> np.ndarray:
        """Evidence ``name`` (default the ranking column) as a ``[n_layers, n_heads]`` array."""
        name = name or self.by
        if name not in self.evidence:
            raise KeyError(f"no evidence {name!r}; available: {', '.join(self.evidence)}")
        return np.asarray(self.evidence[name], float).reshape(self.n_layers, self.n_heads)

    def to_frame(self):
        """One row per head, best first by ``by``: its evidence, whether it is in S and its rank."""
        import pandas as pd

        units = self.units
        chosen = {u: r for r, u in enumerate(self.primaries, 1)}
        df = pd.DataFrame({"name": [str(u) for u in units], "layer": [u.layer for u in units],
                           "head": [u.head for u in units], "primary": [u in chosen for u in units],
                           "rank_in_S": [chosen.get(u, np.nan) for u in units]})
        for name, arr in self.evidence.items():
            df[name] = np.asarray(arr, float)
        df = df.iloc[ranked(df[self.by].to_numpy())]  # rounding ties in head order
        return df.set_index("name", drop=False)

    def table(self, k: int = 10) -> str:
        """S's source and the ``k`` heads with the most evidence (S marked ``*``)."""
        k = _check_k(k)
        frame = self.to_frame().head(k)
        cols = list(self.evidence)
        lines = [f"S = {', '.join(map(str, self.primaries))}  [{self.source}]",
                 f"{'':1} {'head':>6}  " + "  ".join(f"{c:>14}" for c in cols)]
        for _, row in frame.iterrows():
            lines.append(f"{'*' if row['primary'] else ' '} {row['name']:>6}  "
                         + "  ".join(f"{row[c]:>14.4g}" for c in cols))
        return "\n".join(lines)

    def plot(self, ax=None, name: Optional[str] = None):
        """Head map of the evidence ``name`` (default the ranking column), S marked."""
        from .plots import head_map

        return head_map(self.grid(name), f"{name or self.by} ({self.method})", primaries=self.primaries, ax=ax)

    def _payload(self) -> dict:
        return {"n_layers": self.n_layers, "n_heads": self.n_heads, "method": self.method,
                "primaries": [str(u) for u in self.primaries], "by": self.by,
                "evidence": {k: _nan_to_none(np.asarray(v, float)) for k, v in self.evidence.items()},
                "meta": self.meta}

    @classmethod
    def _from_payload(cls, d: dict) -> "Discovery":
        L, H = d["n_layers"], d["n_heads"]
        if not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in (L, H)):
            raise ValueError(f"this Discovery has n_layers={L!r}, n_heads={H!r}; both must be whole numbers >= 1")
        evidence = {k: np.array([np.nan if x is None else x for x in v], float) for k, v in d["evidence"].items()}
        wrong = {k: len(v) for k, v in evidence.items() if v.shape != (L * H,)}
        if wrong or d["by"] not in evidence:
            raise ValueError(f"this Discovery is for {L} x {H} heads ranked by {d['by']!r}, but its evidence "
                             f"columns are {({k: len(v) for k, v in evidence.items()})}; the file is damaged")
        return cls(L, H, d["method"], parse_units(d["primaries"], L, H), evidence, d["by"], d.get("meta", {}))

    def _repr_html_(self) -> str:
        from html import escape

        return super()._repr_html_().replace("</b>", f"</b> S = {escape(', '.join(map(str, self.primaries)))} "
                                             f"<span style='color:#555'>({escape(self.source)})</span>", 1)

    def __repr__(self) -> str:
        return f"Discovery({self.n_layers}x{self.n_heads} heads, method {self.method})\n" + self.table(5)


# ---------------------------------------------------------------------------- sensitivity to S
@dataclass
class Sensitivity(Result):
    """How the ranking moves with the choice of the primary set S
    (:func:`coax_nb.p_sensitivity`). ``sets`` holds one dict per choice of S: ``label``,
    ``method`` (``"given"`` or a discovery method), ``sweep`` (``"k"`` for a discovery's top-k,
    ``"tau"`` for ACDC's circuit at a threshold, None for a given set), ``k``, ``tau``, ``primaries`` (head
    names), ``source``, ``n_selected``, ``scores`` (the ``by`` score over flat head ids,
    NaN in S), ``auc`` (recovery ROC-AUC when truth was given, else None) and
    ``truth_in_S``. ``rho[i][j]`` is the Spearman correlation of sets i and j over the
    heads outside both sets, ``overlap[i][j]`` the share of i's top-``top`` heads in j's."""

    n_layers: int
    n_heads: int
    sets: list
    by: str
    reference: str
    truth: list
    rho: np.ndarray
    overlap: np.ndarray
    top: int
    meta: dict = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return [c["label"] for c in self.sets]

    def choice(self, label: str) -> dict:
        for c in self.sets:
            if c["label"] == label:
                return c
        raise KeyError(f"no choice {label!r}; have {', '.join(self.labels)}")

    def auc(self, label: str) -> Optional[float]:
        return self.choice(label)["auc"]

    def ranking(self, label: str, k: int = 10) -> list[tuple[Unit, float]]:
        """The ``k`` top heads (outside that choice's S) and their scores."""
        k = _check_k(k)
        s = np.asarray(self.choice(label)["scores"], float)
        ids = [i for i in ranked(s) if np.isfinite(s[i])]
        return [(Unit.from_flat(int(i), self.n_heads), float(s[i])) for i in ids[:k]]

    def to_frame(self):
        """One row per choice: S, its size, its top heads, and its agreement with the reference."""
        import pandas as pd

        ref = self.labels.index(self.reference)
        rows = []
        for i, c in enumerate(self.sets):
            rows.append({"label": c["label"], "method": c["method"], "k": c["k"], "tau": c["tau"],
                         "n_selected": c["n_selected"], "S": " ".join(c["primaries"]),
                         f"top {self.top}": " ".join(str(u) for u, _ in self.ranking(c["label"], self.top)),
                         "rho_to_ref": self.rho[i, ref], f"top{self.top}_overlap": self.overlap[i, ref],
                         "auc": np.nan if c["auc"] is None else c["auc"], "truth_in_S": c["truth_in_S"]})
        return pd.DataFrame(rows).set_index("label", drop=False)

    def table(self) -> str:
        f = self.to_frame()
        lines = [f"ranking by {self.by}; reference {self.reference!r}; top-{self.top} overlap and Spearman rho "
                 "with the reference" + (f"; ROC-AUC against {len(self.truth)} truth heads" if self.truth else "")]
        lines.append(f"{'choice':<16} {'|S|':>3}  {'S':<24} {'top ' + str(self.top):<26} {'rho':>6} {'ovl':>5}"
                     + (f" {'AUC':>6}" if self.truth else ""))
        for _, r in f.iterrows():
            auc = "" if not self.truth else (f" {r['auc']:>6.3f}" if np.isfinite(r["auc"]) else f" {'-':>6}")
            lines.append(f"{r['label']:<16} {r['n_selected']:>3}  {r['S'][:24]:<24} {r[f'top {self.top}'][:26]:<26} "
                         f"{r['rho_to_ref']:>6.2f} {r[f'top{self.top}_overlap']:>5.2f}{auc}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.table()

    def plot(self, ax=None):
        """Rank correlation between every pair of choices (left) and top-``top`` overlap (right)."""
        from .plots import agreement_matrices

        return agreement_matrices(self.rho, self.overlap, self.labels, self.top, ax=ax)

    def _payload(self) -> dict:
        sets = [{**_jsonable({k: v for k, v in c.items() if k != "scores"}),
                 "scores": _nan_to_none(np.asarray(c["scores"], float))} for c in self.sets]
        return {"n_layers": self.n_layers, "n_heads": self.n_heads, "sets": sets, "by": self.by,
                "reference": self.reference, "truth": list(self.truth), "rho": _nan_to_none(self.rho),
                "overlap": _nan_to_none(self.overlap), "top": self.top, "meta": self.meta}

    @classmethod
    def _from_payload(cls, d: dict) -> "Sensitivity":
        L, H = d["n_layers"], d["n_heads"]
        sets = [{**c, "scores": _none_to_nan(c["scores"])} for c in d["sets"]]
        n = len(sets)
        rho, overlap = _none_to_nan(d["rho"]), _none_to_nan(d["overlap"])
        if rho.shape != (n, n) or overlap.shape != (n, n) or any(c["scores"].shape != (L * H,) for c in sets):
            raise ValueError(f"this Sensitivity has {n} choices over {L} x {H} heads, but its matrices or scores "
                             "have other shapes; the file is damaged")
        return cls(L, H, sets, d["by"], d["reference"], d["truth"], rho, overlap, d["top"], d.get("meta", {}))


# ---------------------------------------------------------------------------- robustness
@dataclass
class Robustness(Result):
    """How far to trust a ranking (:func:`coax_nb.robustness`). ``intervals[score]``
    holds per flat head id the ``estimate``, the bootstrap interval ``lo`` / ``hi`` and the
    bootstrap ``std``; ``auc`` one row per selector (recovery ROC-AUC with its interval,
    when truth was given); ``efficiency`` rows per selector and calibration-set size;
    ``feature_modes`` rows per feature mode and selector; ``held_out`` rows per other
    prompt set and selector."""

    n_layers: int
    n_heads: int
    primaries: list
    truth: list
    selectors: list
    intervals: dict
    auc: list
    efficiency: list
    feature_modes: list
    held_out: list
    meta: dict = field(default_factory=dict)

    def auc_row(self, selector: str) -> dict:
        for r in self.auc:
            if r["selector"] == selector:
                return r
        raise KeyError(f"no AUC row for {selector!r}" + ("" if self.truth else " (no truth was given)")
                       + f"; have {[r['selector'] for r in self.auc]}")

    def interval(self, score: str, head) -> tuple[float, float, float]:
        """``(estimate, lo, hi)`` of ``score`` for one head."""
        if score not in self.intervals:
            raise KeyError(f"no score {score!r}; have {', '.join(self.intervals)}")
        u = parse_units([head], self.n_layers, self.n_heads)[0]
        d, i = self.intervals[score], u.flat(self.n_heads)
        return float(d["estimate"][i]), float(d["lo"][i]), float(d["hi"][i])

    def frames(self) -> dict:
        """Each panel as a DataFrame: ``auc``, ``efficiency``, ``feature_modes``, ``held_out``
        and ``intervals`` (one row per head and score)."""
        import pandas as pd

        rows = []
        for score, d in self.intervals.items():
            for u in all_units(self.n_layers, self.n_heads):
                i = u.flat(self.n_heads)
                rows.append({"score": score, "head": str(u), "estimate": d["estimate"][i], "lo": d["lo"][i],
                             "hi": d["hi"][i], "std": d["std"][i]})
        return {"auc": pd.DataFrame(self.auc), "efficiency": pd.DataFrame(self.efficiency),
                "feature_modes": pd.DataFrame(self.feature_modes), "held_out": pd.DataFrame(self.held_out),
                "intervals": pd.DataFrame(rows)}

    def to_frame(self):
        """The recovery AUCs with their intervals (or, without truth, the data-efficiency rows)."""
        f = self.frames()
        return f["auc"] if self.auc else f["efficiency"]

    def table(self) -> str:
        m = self.meta
        pct = f"{m.get('level', 0.95):.0%}"
        lines = [f"S = {', '.join(self.primaries)}; {m.get('n_prompts')} calibration prompts; {m.get('n_boot')} "
                 f"bootstrap draws, {pct} intervals"]
        if self.auc:
            lines.append(f"{'selector':<14} {'ROC-AUC':>8} {pct + ' interval':>18} {'boot std':>9}")
            for r in self.auc:
                span = f"[{r['lo']:.3f}, {r['hi']:.3f}]"
                lines.append(f"{r['selector']:<14} {r['auc']:>8.3f} {span:>18} {r['std']:>9.3f}")
        if self.efficiency:
            sizes = sorted({r["n_prompts"] for r in self.efficiency})
            key = "auc_mean" if self.truth else "rho_mean"
            lines.append(f"data efficiency ({'mean ROC-AUC' if self.truth else 'mean rho to the full pool'} over "
                         f"{m.get('draws')} subsets): " + " ".join(f"{n:>6}" for n in sizes))
            for s in self.selectors:
                vals = {r["n_prompts"]: r[key] for r in self.efficiency if r["selector"] == s}
                lines.append(f"  {s:<12} " + " ".join(f"{vals[n]:>6.3f}" for n in sizes))
        if self.feature_modes and self.truth:
            lines.append("feature modes (ROC-AUC): " + "; ".join(
                f"{r['feature_mode']} {r['selector']} {r['auc']:.3f}" for r in self.feature_modes
                if r["selector"] == self.feature_modes[0]["selector"]))
        if self.held_out:
            first = self.selectors[0]
            what = "ROC-AUC, * outside the calibration interval" if self.truth else "Spearman rho to the calibration"
            lines.append(f"held-out prompt sets ({what}; rho of {first} to the calibration ranking):")
            lines.append(f"  {'set':<18} " + " ".join(f"{s:>9}" for s in self.selectors) + f" {'rho':>6}")
            for name in dict.fromkeys(r["set"] for r in self.held_out):
                rows = {r["selector"]: r for r in self.held_out if r["set"] == name}

                def cell(r):
                    if "auc" in r:
                        return f"{r['auc']:.3f}{' ' if r['inside_interval'] else '*'}"
                    return f"{r['rho_to_calibration']:.2f} "
                lines.append(f"  {name[:18]:<18} " + " ".join(f"{cell(rows[s]):>9}" for s in self.selectors)
                             + f" {rows[first]['rho_to_calibration']:>6.2f}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.table()

    def plot(self, ax=None):
        """The panel: AUC with intervals per selector, the data-efficiency curve, the
        feature-mode ablation and the held-out sets (``ax``: the first panel only)."""
        from .plots import robustness_panel

        return robustness_panel(self, ax=ax)

    def _payload(self) -> dict:
        return {"n_layers": self.n_layers, "n_heads": self.n_heads, "primaries": list(self.primaries),
                "truth": list(self.truth), "selectors": list(self.selectors),
                "intervals": {k: {f: _nan_to_none(np.asarray(v, float)) for f, v in d.items()}
                              for k, d in self.intervals.items()},
                "auc": _jsonable(self.auc), "efficiency": _jsonable(self.efficiency),
                "feature_modes": _jsonable(self.feature_modes), "held_out": _jsonable(self.held_out),
                "meta": self.meta}

    @classmethod
    def _from_payload(cls, d: dict) -> "Robustness":
        L, H = d["n_layers"], d["n_heads"]
        intervals = {k: {f: _none_to_nan(v) for f, v in x.items()} for k, x in d["intervals"].items()}
        if any(v.shape != (L * H,) for x in intervals.values() for v in x.values()):
            raise ValueError(f"this Robustness is for {L} x {H} heads, but an interval has another length; "
                             "the file is damaged")
        rows = {k: [{f: np.nan if v is None else v for f, v in r.items()} for r in d[k]]
                for k in ("auc", "efficiency", "feature_modes", "held_out")}
        return cls(L, H, d["primaries"], d["truth"], d["selectors"], intervals, rows["auc"], rows["efficiency"],
                   rows["feature_modes"], rows["held_out"], d.get("meta", {}))
