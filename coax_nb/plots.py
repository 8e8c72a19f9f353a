"""One plotting function per picture, shared by the widgets' static figures, the results'
``plot()`` and the report, so a page and its PNG show the same thing.

Colours come from ``palette.json`` (source ``widgets/palette.json``, shipped in
``coax_nb/widgets/static/``), the file the widgets' ES modules are built with: the same
sequential and diverging scales, line colours and NaN grey on both sides. NaN values
(e.g. CoAx on the primaries) are drawn grey or left out, never as an extreme.

Every function takes plain arrays and names, draws on ``ax`` (a new figure when None)
and returns the matplotlib Figure.
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Optional, Sequence

import numpy as np

from .units import Unit, parse_name


@lru_cache(maxsize=1)
def palette() -> dict:
    """The colours shared with the widgets' pages (``widgets/palette.json``)."""
    text = resources.files("coax_nb").joinpath("widgets/static/palette.json").read_text(encoding="utf-8")
    return json.loads(text)


def line_color(k: int) -> str:
    """Colour of the k-th series of a line chart (the page's order)."""
    lines = palette()["lines"]
    return lines[k % len(lines)]


def value_range(values) -> tuple[float, float, bool]:
    """``(lo, hi, diverging)`` of the finite values, as the page's scale computes it:
    symmetric around 0 when values have both signs."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 0.0, False
    lo, hi = float(v.min()), float(v.max())
    if lo < 0 < hi:
        m = max(-lo, hi)
        return -m, m, True
    return lo, hi, False


def colormap(diverging: bool):
    """The page's colour scale as a matplotlib colormap (NaN in the page's grey)."""
    from matplotlib.colors import LinearSegmentedColormap

    pal = palette()
    stops = np.array(pal["diverging" if diverging else "sequential"], float) / 255
    cmap = LinearSegmentedColormap.from_list("coax_" + ("diverging" if diverging else "sequential"), stops, N=2048)
    return cmap.with_extremes(bad=pal["nan"])


def _norm(lo: float, hi: float):
    from matplotlib.colors import Normalize

    # the page maps a constant score to the low end of the scale (span 1); so does this
    return Normalize(lo, hi if hi > lo else lo + 1)


def _new_ax(ax, size):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=size)
    return ax


def _array(values, ndim: int, what: str, want: str) -> np.ndarray:
    """``values`` as a float array of ``ndim`` dimensions, or a ValueError saying what was expected."""
    try:
        a = np.array(values, float)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be {want}, got {type(values).__name__}") from None
    if a.ndim != ndim:
        raise ValueError(f"{what} must be {want}, got shape {a.shape}")
    return a


def _same_length(**named) -> None:
    lengths = {k: len(v) for k, v in named.items() if v is not None}
    if len(set(lengths.values())) > 1:
        raise ValueError("these must have one entry each per item: " + ", ".join(f"{k} has {n}"
                                                                               for k, n in lengths.items()))


def _units(names) -> list[Unit]:
    return [u if isinstance(u, Unit) else parse_name(u) for u in names]


def head_map(grid, score_name: str, primaries: Sequence = (), truth: Sequence = (), ax=None):
    """Layer x head map of one score. Primaries are black cells marked S (their value,
    NaN for CoAx, does not set the scale); other NaN heads are grey; ground truth has a
    white dot."""
    from matplotlib.patches import Rectangle

    grid = _array(grid, 2, "grid", "a [n_layers, n_heads] array, e.g. scores.grid('comp')")
    n_layers, n_heads = grid.shape
    ax = _new_ax(ax, (0.45 * n_heads + 2.2, 0.4 * n_layers + 1.4))
    prim = [u for u in _units(primaries) if u.layer < n_layers and 0 <= u.head < n_heads]  # MLP units: no cell
    shown = grid.copy()
    for u in prim:
        shown[u.layer, u.head] = np.nan
    lo, hi, diverging = value_range(shown)
    im = ax.imshow(shown, cmap=colormap(diverging), norm=_norm(lo, hi))
    for u in prim:
        ax.add_patch(Rectangle((u.head - 0.5, u.layer - 0.5), 1, 1, color=palette()["primary"]))
        ax.text(u.head, u.layer, "S", ha="center", va="center", color="white", fontweight="bold")
    for u in _units(truth):
        ax.plot(u.head, u.layer, "o", mfc="white", mec="black", ms=5)
    ax.set_xticks(range(n_heads))
    ax.set_yticks(range(n_layers), [f"L{layer}" for layer in range(n_layers)])
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(f"{score_name}{' (diverging around 0)' if diverging else ''}\nS = primary, ○ = ground truth",
                 fontsize=9)
    ax.figure.colorbar(im, ax=ax, shrink=0.8)
    ax.figure.tight_layout()
    return ax.figure


def percentiles(values) -> np.ndarray:
    """Rank percentiles (0..100) of the finite values, ties in input order; NaN stays NaN
    (the page leaves such heads out). A single finite value sits at 50."""
    v = _array(values, 1, "values", "one score per head (1-D)")
    out = np.full(v.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(v))
    order = idx[np.argsort(v[idx], kind="stable")]
    out[order] = 100 * np.arange(len(order)) / (len(order) - 1) if len(order) > 1 else 50.0
    return out


def blind_spot(x_pct, y_pct, labels, x_name: str, y_name: str, truth: Sequence = (), primaries: Sequence = (),
               ax=None):
    """First-order (x) vs CoAx (y) percentile scatter; the primaries and heads with a
    NaN percentile are left out, ground truth in the truth colour."""
    pal = palette()
    x = _array(x_pct, 1, "x_pct", "one percentile per head (1-D)")
    y = _array(y_pct, 1, "y_pct", "one percentile per head (1-D)")
    _same_length(x_pct=x, y_pct=y, labels=list(labels))
    prim = {str(u) for u in _units(primaries)}
    true = {str(u) for u in _units(truth)}
    names = [str(parse_name(n)) for n in labels]
    keep = np.array([n not in prim for n in names], bool) & np.isfinite(x) & np.isfinite(y)
    is_true = np.array([n in true for n in names], bool)
    ax = _new_ax(ax, (4.2, 3.8))
    ax.axvspan(0, 50, ymin=0.5, ymax=1, color=pal["truth"], alpha=0.08)
    ax.text(2, 96, "blind spot: low first-order, high CoAx", fontsize=7, color="0.4")
    ax.scatter(x[keep & ~is_true], y[keep & ~is_true], c=pal["point"], s=25, label="heads")
    ax.scatter(x[keep & is_true], y[keep & is_true], c=pal["truth"], s=45, label="ground truth")
    ax.set_xlim(-3, 103)
    ax.set_ylim(-3, 103)
    ax.set_xlabel(f"{x_name} percentile")
    ax.set_ylabel(f"{y_name} percentile")
    ax.set_title(f"{y_name} vs {x_name} (percentiles; primaries left out)", fontsize=9)
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    ax.figure.tight_layout()
    return ax.figure


def synergy_grid(matrix, labels: Sequence[str], name: str, groups=None, ax=None):
    """Pair matrix in the given order (the diagonal grey, off-diagonal values set the
    scale); ``groups`` (one label per head, or a dict head -> label) outlines runs of
    equal labels as blocks."""
    from matplotlib.patches import Rectangle

    m = _array(matrix, 2, "matrix", "a square [heads, heads] matrix")
    n = len(m)
    if m.shape != (n, n):
        raise ValueError(f"matrix must be square [heads, heads], got shape {m.shape}")
    labels = [str(x) for x in labels]
    if isinstance(groups, dict):
        groups = [str(groups.get(x, "other")) for x in labels]
    groups = list(groups or [])
    _same_length(matrix=m, labels=labels, groups=groups or None)
    np.fill_diagonal(m, np.nan)
    lo, hi, diverging = value_range(m)
    ax = _new_ax(ax, (0.35 * n + 2.5, 0.35 * n + 1.8))
    im = ax.imshow(m, cmap=colormap(diverging), norm=_norm(lo, hi))
    start = 0
    for r in range(1, n + 1):
        if groups and (r == n or groups[r] != groups[start]):
            ax.add_patch(Rectangle((start - 0.5, start - 0.5), r - start, r - start, fill=False, lw=1.5,
                                   ec="black"))
            start = r
    ax.set_xticks(range(n), labels, rotation=60, fontsize=7)
    ax.set_yticks(range(n), [x + (f" {g}" if groups else "") for x, g in zip(labels, groups or labels)], fontsize=7)
    ax.set_title(name, fontsize=9)
    ax.figure.colorbar(im, ax=ax, shrink=0.8)
    ax.figure.tight_layout()
    return ax.figure


def curves(curves_result, ax=None, hidden: Sequence[str] = ()):
    """Line chart of a curves result (``title, xlabel, ylabel, series, log_y``; each series
    a dict ``name, x, y`` and optional ``lo``/``hi`` band). Series keep their page colour
    when others are ``hidden``."""
    if not all(hasattr(curves_result, k) for k in ("title", "xlabel", "ylabel", "series", "log_y")):
        raise TypeError(f"curves draws a curves result (coax_nb.results.Curves), got {type(curves_result).__name__}")
    ax = _new_ax(ax, (5, 3.4))
    for k, s in enumerate(curves_result.series):
        if s["name"] in hidden:
            continue
        c = line_color(k)
        ax.plot(s["x"], s["y"], marker="o", ms=3, color=c, label=s["name"])
        if s.get("lo") is not None and s.get("hi") is not None:
            ax.fill_between(s["x"], s["lo"], s["hi"], color=c, alpha=0.18, lw=0)
    if curves_result.log_y:
        ax.set_yscale("log")
    ax.set_title(curves_result.title, fontsize=10)
    ax.set_xlabel(curves_result.xlabel)
    ax.set_ylabel(curves_result.ylabel)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, frameon=False)
    ax.figure.tight_layout()
    return ax.figure


def _fmt(v) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:.3g}"


def ranking_table(frame, sort_by: str, ax=None, descending: bool = True, max_rows: int = 15):
    """The top ``max_rows`` heads by ``sort_by`` as a table (NaN last, ties in head
    order). ``frame``: one row per head, indexed by head name; every float column is a
    score shown (as in ``UnitScores.to_frame()``)."""
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"ranking_table takes a DataFrame of per-head scores (e.g. scores.to_frame()), got "
                        f"{type(frame).__name__}")
    cols = [c for c in frame.columns if frame[c].dtype.kind == "f"]
    if sort_by not in cols:
        raise ValueError(f"no score {sort_by!r}; available: {', '.join(cols)}")
    vals = frame[sort_by].to_numpy(float)
    key = np.where(np.isnan(vals), -np.inf, vals)
    order = sorted(range(len(vals)), key=lambda i: (-key[i] if descending else key[i], i))[:max_rows]
    cells = [[str(frame.index[i])] + [_fmt(frame[c].iloc[i]) for c in cols] for i in order]
    ax = _new_ax(ax, (1.1 * (len(cols) + 1), 0.25 * len(order) + 0.6))
    ax.axis("off")
    ax.table(cellText=cells, colLabels=["head"] + cols, loc="center").auto_set_font_size(False)
    ax.set_title(f"top heads by {sort_by}", fontsize=9)
    return ax.figure


def bars(labels: Sequence[str], values, xlabel: str, title: str, errors=None, colors=None, ax=None,
         chance: Optional[float] = None):
    """Horizontal bars, first label on top; ``errors`` as error bars, ``colors`` one per
    bar (default the first line colour), ``chance`` a dashed reference line."""
    values = _array(values, 1, "values", "one number per bar (1-D)")
    _same_length(labels=list(labels), values=values, errors=None if errors is None else list(errors),
                 colors=None if colors is None or isinstance(colors, str) else list(colors))
    y = np.arange(len(values))
    ax = _new_ax(ax, (5, 0.32 * len(values) + 1.2))
    ax.barh(y, values, xerr=None if errors is None else np.asarray(errors, float),
            color=list(colors) if colors is not None else line_color(0), capsize=2)
    if chance is not None:
        ax.axvline(chance, color="0.4", ls="--", lw=1, label="chance")
        ax.legend(fontsize=8, frameon=False)
    ax.set_yticks(y, [str(x) for x in labels], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.figure.tight_layout()
    return ax.figure
