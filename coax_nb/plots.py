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


def head_map(grid, score_name: str, primaries: Sequence = (), truth: Sequence = (), ax=None, units: str = ""):
    """Layer x head map of one score. Primaries are black cells marked S (their value,
    NaN for CoAx, does not set the scale); other NaN heads are grey; ground truth has a
    white dot. Rows are layers L0, L1, ..., columns heads 0..H-1; the colour bar is
    labelled with the score and its ``units`` (e.g. "Fisher energy")."""
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
    # one fixed, named tick per cell (never a locator's -0.5, 0.0, 0.5): layers L0, L1, ..., heads 0..H-1
    ax.set_xticks(range(n_heads), [str(h) for h in range(n_heads)])
    ax.set_yticks(range(n_layers), [f"L{layer}" for layer in range(n_layers)])
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(f"{score_name}{' (diverging around 0)' if diverging else ''}\nS = primary, ○ = ground truth",
                 fontsize=9)
    ax.figure.colorbar(im, ax=ax, shrink=0.8, label=colorbar_label(score_name, units))
    ax.figure.tight_layout()
    return ax.figure


def head_map_spread(mean, std, score_name: str, seeds: Sequence[int], primaries: Sequence = (),
                    truth: Sequence = (), units: str = ""):
    """Two layer x head maps side by side: a score's mean over the prompt seeds (left)
    and its std over them (right), each as :func:`head_map` draws one."""
    import matplotlib.pyplot as plt

    mean = _array(mean, 2, "mean", "a [n_layers, n_heads] array")
    n_layers, n_heads = mean.shape
    fig, (left, right) = plt.subplots(1, 2, figsize=(2 * (0.45 * n_heads + 2.2), 0.4 * n_layers + 1.8))
    head_map(mean, f"mean {score_name}", primaries, truth, ax=left, units=units)
    head_map(std, f"std of {score_name}", primaries, truth, ax=right, units=units)
    fig.suptitle(f"over {len(seeds)} prompt seeds ({', '.join(map(str, seeds))})", fontsize=9)
    fig.tight_layout()
    return fig


def colorbar_label(score_name: str, units: str = "") -> str:
    """What a colour bar shows: the score's name and, when known, its units."""
    return f"{score_name} ({units})" if units else str(score_name)


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
               ax=None, x_err=None, y_err=None):
    """First-order (x) vs CoAx (y) percentile scatter; the primaries and heads with a
    NaN percentile are left out, ground truth in the truth colour; ``x_err`` / ``y_err``
    (one per head, e.g. the std over prompt seeds) as error bars."""
    pal = palette()
    x = _array(x_pct, 1, "x_pct", "one percentile per head (1-D)")
    y = _array(y_pct, 1, "y_pct", "one percentile per head (1-D)")
    _same_length(x_pct=x, y_pct=y, labels=list(labels), x_err=None if x_err is None else list(x_err),
                 y_err=None if y_err is None else list(y_err))
    prim = {str(u) for u in _units(primaries)}
    true = {str(u) for u in _units(truth)}
    names = [str(parse_name(n)) for n in labels]
    keep = np.array([n not in prim for n in names], bool) & np.isfinite(x) & np.isfinite(y)
    is_true = np.array([n in true for n in names], bool)
    ax = _new_ax(ax, (4.2, 4.2))
    # the shaded quadrant is named in the legend, which sits below the axes: nothing is
    # written inside the plot, where it would cover points
    ax.axvspan(0, 50, ymin=0.5, ymax=1, color=pal["truth"], alpha=0.08, label="blind spot: low first-order, high CoAx")
    if x_err is not None or y_err is not None:
        ax.errorbar(x[keep], y[keep], xerr=None if x_err is None else np.asarray(x_err, float)[keep],
                    yerr=None if y_err is None else np.asarray(y_err, float)[keep], fmt="none", ecolor="0.7",
                    elinewidth=0.8, capsize=1.5, zorder=1)
    ax.scatter(x[keep & ~is_true], y[keep & ~is_true], c=pal["point"], s=25, label="heads")
    ax.scatter(x[keep & is_true], y[keep & is_true], c=pal["truth"], s=45, label="ground truth")
    ax.set_xlim(-3, 103)
    ax.set_ylim(-3, 103)
    ax.set_xlabel(f"{x_name} percentile")
    ax.set_ylabel(f"{y_name} percentile")
    ax.set_title(f"{y_name} vs {x_name} (percentiles; primaries left out)", fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    ax.figure.tight_layout()
    return ax.figure


def synergy_grid(matrix, labels: Sequence[str], name: str, groups=None, ax=None, collapsed=None):
    """Pair matrix in the given order (the diagonal grey, off-diagonal values set the
    scale); ``groups`` (one label per head, or a dict head -> label) outlines runs of
    equal labels as blocks; ``collapsed`` (one flag per row) marks rows that stand for a
    whole group, whose diagonal is the group's mean internal value and is drawn."""
    from matplotlib.patches import Rectangle

    m = _array(matrix, 2, "matrix", "a square [heads, heads] matrix")
    n = len(m)
    if m.shape != (n, n):
        raise ValueError(f"matrix must be square [heads, heads], got shape {m.shape}")
    labels = [str(x) for x in labels]
    if isinstance(groups, dict):
        groups = [str(groups.get(x, "other")) for x in labels]
    groups = list(groups or [])
    collapsed = [bool(c) for c in collapsed] if collapsed is not None else [False] * n
    _same_length(matrix=m, labels=labels, groups=groups or None, collapsed=collapsed)
    inner = np.diag(m).copy()
    np.fill_diagonal(m, np.nan)
    for i in np.flatnonzero(collapsed):
        m[i, i] = inner[i]
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
    ax.set_yticks(range(n), [x + (f" {g}" if groups and not c else "") for x, g, c in
                             zip(labels, groups or labels, collapsed)], fontsize=7)
    ax.set_title(name, fontsize=9)
    ax.figure.colorbar(im, ax=ax, shrink=0.8, label=colorbar_label(name))
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
    xs = [v for s in curves_result.series if s["name"] not in hidden for v in s["x"]]
    if xs and all(float(v).is_integer() for v in xs):  # counts (primaries ablated, k): whole-number ticks
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
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


def agreement_matrices(rho, overlap, labels: Sequence[str], top: int, ax=None):
    """Two square maps over the choices of S: Spearman rho of their rankings and the
    overlap of their top lists (both in [0, 1] where they agree; rho may go negative)."""
    import matplotlib.pyplot as plt

    rho, overlap = np.asarray(rho, float), np.asarray(overlap, float)
    n = len(labels)
    panels = ((rho, "Spearman rho of the rankings", -1.0), (overlap, f"top-{top} overlap", 0.0))
    if ax is None:
        size = max(4.0, 0.45 * n + 2.5)
        fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1.0, size), constrained_layout=True)
    else:  # one axes: the rank correlation only
        fig, axes, panels = ax.figure, [ax], panels[:1]
    for a, (m, title, lo) in zip(axes, panels):
        im = a.imshow(np.ma.masked_invalid(m), cmap=colormap(lo < 0), vmin=lo, vmax=1.0)
        a.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=8)
        a.set_yticks(range(n), labels, fontsize=8)
        a.set_title(title, fontsize=10)
        for i in range(n):
            for j in range(n):
                if np.isfinite(m[i, j]) and n <= 14:
                    a.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7,
                           color="white" if abs(m[i, j]) > 0.6 else "black")
        fig.colorbar(im, ax=a, shrink=0.8, label=title)
    return fig


def sensitivity_ranking(heads: Sequence, values, by: str, primaries: Sequence = (), truth: Sequence = (),
                        label: str = "", note: str = "", ax=None):
    """One choice of S of a Sensitivity (:class:`~coax_nb.widgets.SensitivityExplorer`):
    its top heads by ``by`` as horizontal bars, first on top; ground truth in the truth
    colour and marked ○, the other heads in the point colour; S and its size in the title,
    ``note`` (e.g. the agreement with the reference) under it."""
    import textwrap

    pal = palette()
    values = _array(values, 1, "values", "one score per ranked head (1-D)")
    names = [str(u) for u in _units(heads)]
    _same_length(heads=names, values=values)
    prim = [str(u) for u in _units(primaries)]
    true = {str(u) for u in _units(truth)}
    n = len(prim)
    s_line = textwrap.shorten(", ".join(prim), 70, placeholder=" …") if prim else "none"
    title = f"{label + ': ' if label else ''}S = {s_line} ({n} head{'' if n == 1 else 's'} selected)"
    if not names:
        ax = _new_ax(ax, (5, 1.4))
        ax.axis("off")
        ax.text(0.5, 0.5, "no ranking: this choice selects no heads", ha="center", va="center", fontsize=9)
        ax.set_title(title + (f"\n{note}" if note else ""), fontsize=10)
        return ax.figure
    colors = [pal["truth"] if x in true else pal["point"] for x in names]
    shown = [x + (" ○" if x in true else "") for x in names]
    ax = _new_ax(ax, (5.4, 0.32 * len(names) + 1.6))
    bars(shown, values, f"{by}, re-scored under S", title, colors=colors, ax=ax)
    ax.bar_label(ax.containers[-1], labels=[_fmt(v) for v in values], fontsize=7, padding=2)
    ax.margins(x=0.25)  # room for the value labels at the bars' ends
    sub = f"top {len(names)} heads outside S; ○ = ground truth" + (f"\n{note}" if note else "")
    ax.set_title(f"{title}\n{sub}", fontsize=9)
    ax.figure.tight_layout()
    return ax.figure


def robustness_panel(result, ax=None):
    """Four panels of a :class:`~coax_nb.results.Robustness`: recovery AUC with its
    bootstrap interval per selector; AUC (or rank agreement) against calibration prompts;
    the feature-mode ablation; the held-out prompt sets. ``ax``: the first panel only."""
    import matplotlib.pyplot as plt

    truth = bool(result.truth)
    level = f"{result.meta.get('level', 0.95):.0%}"
    if ax is not None:
        axes = [ax]
    else:
        fig, grid = plt.subplots(2, 2, figsize=(11, 7.5), constrained_layout=True)
        axes = list(grid.flat)
    # (a) bootstrap intervals of the recovery AUC (or, without truth, of nothing to rank against)
    a = axes[0]
    if truth:
        rows = result.auc
        y = np.arange(len(rows))
        est = np.array([r["auc"] for r in rows])
        err = np.array([[r["auc"] - r["lo"] for r in rows], [r["hi"] - r["auc"] for r in rows]])
        a.errorbar(est, y, xerr=np.clip(err, 0, None), fmt="o", color=line_color(0), capsize=3)
        a.set_yticks(y, [r["selector"] for r in rows], fontsize=8)
        a.invert_yaxis()
        a.axvline(0.5, color="0.4", ls="--", lw=1)
        a.set_xlim(-0.02, 1.02)
        a.set_xlabel(f"recovery ROC-AUC ({level} bootstrap interval)")
    else:
        a.text(0.5, 0.5, "no ground truth given:\nno recovery AUC", ha="center", va="center", transform=a.transAxes)
        a.set_axis_off()
    a.set_title(f"bootstrap over {result.meta.get('n_prompts')} prompts", fontsize=10)
    if len(axes) == 1:
        return a.figure
    # (b) data efficiency
    b = axes[1]
    key, sd = ("auc_mean", "auc_std") if truth else ("rho_mean", "rho_std")
    for i, s in enumerate(result.selectors):
        rows = [r for r in result.efficiency if r["selector"] == s]
        if not rows:
            continue
        n = np.array([r["n_prompts"] for r in rows], float)
        m, e = np.array([r[key] for r in rows]), np.array([r[sd] for r in rows])
        b.plot(n, m, "o-", color=line_color(i), label=s, ms=4)
        b.fill_between(n, m - e, m + e, color=line_color(i), alpha=0.15, lw=0)
    b.set_xscale("log", base=2)
    sizes = sorted({r["n_prompts"] for r in result.efficiency})
    b.set_xticks(sizes, [str(n) for n in sizes])
    b.minorticks_off()
    b.set_xlabel("calibration prompts")
    b.set_ylabel("recovery ROC-AUC (mean ± sd)" if truth else "Spearman rho to the full pool (mean ± sd)")
    b.set_title(f"data efficiency ({result.meta.get('draws')} random subsets per size)", fontsize=10)
    if result.efficiency:
        b.legend(fontsize=8, frameon=False)
    # (c) feature modes
    c = axes[2]
    modes = list(dict.fromkeys(r["feature_mode"] for r in result.feature_modes))
    sels = list(dict.fromkeys(r["selector"] for r in result.feature_modes))
    width = 0.8 / max(len(sels), 1)
    for j, s in enumerate(sels):
        rows = [next(r for r in result.feature_modes if r["feature_mode"] == mo and r["selector"] == s)
                for mo in modes]
        x = np.arange(len(modes)) + (j - (len(sels) - 1) / 2) * width
        if truth:
            v = np.array([r["auc"] for r in rows])
            err = np.clip([[r["auc"] - r["lo"] for r in rows], [r["hi"] - r["auc"] for r in rows]], 0, None)
            c.bar(x, v, width, yerr=err, color=line_color(j), label=s, capsize=2)
        else:
            c.bar(x, [r["rho_to_default"] for r in rows], width, color=line_color(j), label=s)
    c.set_xticks(range(len(modes)), [mo.replace("_", "\n") for mo in modes], fontsize=8)
    c.set_ylabel("recovery ROC-AUC" if truth else "Spearman rho to fisher_centered")
    c.set_ylim(0, 1.05)
    c.set_title("feature-mode ablation", fontsize=10)
    if sels:
        c.legend(fontsize=8, frameon=False, ncol=len(sels), loc="upper center", bbox_to_anchor=(0.5, -0.14))
    # (d) held-out prompt sets
    d = axes[3]
    if result.held_out:
        sets = list(dict.fromkeys(r["set"] for r in result.held_out))
        sel = result.selectors[0]
        rows = [next(r for r in result.held_out if r["set"] == st and r["selector"] == sel) for st in sets]
        y = np.arange(len(sets))
        if truth:
            ref = result.auc_row(sel)
            d.axvspan(ref["lo"], ref["hi"], color="0.5", alpha=0.25, lw=0, label=f"calibration {level} interval")
            d.scatter([r["auc"] for r in rows], y, zorder=3, s=30,
                      c=[line_color(0) if r["inside_interval"] else palette()["truth"] for r in rows])
            d.axvline(0.5, color="0.4", ls="--", lw=1)
            d.set_xlabel(f"recovery ROC-AUC by {sel} (outside the interval: {'vermillion'})")
            d.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(0, -0.12))
            d.set_xlim(-0.02, 1.02)
        else:
            d.scatter([r["rho_to_calibration"] for r in rows], y, color=line_color(0), zorder=3, s=30)
            d.set_xlim(-1.02, 1.02)
            d.set_xlabel(f"Spearman rho of {sel} to the calibration ranking")
        d.set_yticks(y, sets, fontsize=8)
        d.set_ylim(len(sets) - 0.5, -0.5)
        d.set_title("held-out prompt sets", fontsize=10)
    else:
        d.text(0.5, 0.5, "no held-out prompt sets given", ha="center", va="center", transform=d.transAxes)
        d.set_axis_off()
    return fig


# the CoAx family of selectors in blues, the others in warm colours and greys
_PANEL_COLORS = {"comp": "#0072B2", "conditional": "#56B4E9", "ratio": "#009E73", "coupling": "#4B6FA5",
                 "single": "#E69F00", "coact": "#CC79A7", "atp": "#D55E00", "atp_gd": "#8C510A", "eap_ig": "#B07AA1",
                 "+own": "#000000", "random": "#7F7F7F"}


def induction_panel(result, ax=None):
    """The figure of an :class:`~coax_nb.results.InductionTransfer`: one panel per model
    (metric drop against k for every selector, "+own" dashed, random mean with its
    min..max band, primaries alone dotted), then a row with the family macro of
    ``over_random`` and ``over_own`` (bars: families averaged after their members and over
    k; marks: each family) and, where models have documented backups (organisms), the
    share of the heads each selector added that are backups. ``ax``: the macro panel of
    ``over_random`` alone."""
    import matplotlib.pyplot as plt

    f = result.to_frame()
    selectors = [s for s in result.meta.get("selectors", []) if s in set(f["selector"])]
    if ax is not None:
        _panel_macro(result, selectors, ax)
        return ax.figure
    n = len(result.models)
    truth = f["truth_hits"].notna().any()
    n_macro = 3 if truth else 2
    cols = max(n_macro, min(4, n))
    rows = -(-n // cols)
    fig = plt.figure(figsize=(3.9 * cols, 3.4 * (rows + 1) + 0.6), constrained_layout=True)
    grid = fig.add_gridspec(rows + 1, cols * n_macro)
    model_axes = [fig.add_subplot(grid[i // cols, (i % cols) * n_macro:(i % cols + 1) * n_macro]) for i in range(n)]
    for a, m in zip(model_axes, result.models):
        sub = f[f["model"] == m["label"]]
        ks = list(m["ks"])
        x = np.arange(len(ks))
        for s in selectors:
            y = [sub[(sub["selector"] == s) & (sub["k"] == k)]["drop"].iloc[0] for k in ks]
            a.plot(x, y, "o-", color=_PANEL_COLORS.get(s, "0.3"), lw=2.2 if s == "comp" else 1.2, ms=4, label=s,
                   zorder=3 if s == "comp" else 2)
        own = [sub[(sub["selector"] == "+own") & (sub["k"] == k)]["drop"].iloc[0] for k in ks]
        a.plot(x, own, "s--", color="k", lw=1.2, ms=4, label="+own (next by induction score)")
        rnd = sub[sub["selector"] == "random"]
        mean = [rnd[rnd["k"] == k]["drop"].iloc[0] for k in ks]
        draws = _random_draw_drops(result, m, ks)
        if draws is not None:
            a.fill_between(x, draws.min(1), draws.max(1), color="0.87", zorder=0, label="random (min..max)")
        a.plot(x, mean, "-", color="0.45", lw=1.2, label="random (mean)")
        a.axhline(m["primary_drop"], color="0.3", ls=":", lw=1, label="primaries alone")
        a.set_xticks(x, [str(k) for k in ks])
        a.set_xlabel("k heads added to the primaries", fontsize=8)
        a.set_ylabel("drop of induction log-prob (nats)", fontsize=8)
        a.set_title(f"{m['label']} ({m['family']})\nP = {_short_heads(m['primaries'])}", fontsize=9)
        a.tick_params(labelsize=8)
    handles, labels = model_axes[0].get_legend_handles_labels()
    width = cols * n_macro // n_macro
    macro_axes = [fig.add_subplot(grid[rows, j * width:(j + 1) * width]) for j in range(n_macro)]
    _panel_macro(result, selectors, macro_axes[0], "over_random", legend=False)
    _panel_macro(result, selectors, macro_axes[1], "over_own", legend=not truth)
    if truth:
        _panel_backups(result, selectors, macro_axes[2])
    fig.legend(handles, labels, loc="outside lower center", ncol=min(8, len(labels)), fontsize=8, frameon=False)
    return fig


def _panel_backups(result, selectors, ax):
    """Share of the heads each selector added that are documented backups (all k, all
    models with backups), with each family's share as a mark."""
    f = result.to_frame()
    f = f[f["truth_hits"].notna()]
    names = [s for s in selectors + ["+own"] if s in set(f["selector"])]
    share = {s: f[f["selector"] == s]["truth_hits"].sum() / f[f["selector"] == s]["k"].sum() for s in names}
    y = np.arange(len(names))
    ax.barh(y, [share[s] for s in names], color=[_PANEL_COLORS.get(s, "0.3") for s in names], alpha=0.85)
    marks = "osD^vP*X"
    fams = list(dict.fromkeys(f["family"]))
    for j, fam in enumerate(fams):
        g = f[f["family"] == fam]
        vals = [g[g["selector"] == s]["truth_hits"].sum() / g[g["selector"] == s]["k"].sum() for s in names]
        ax.scatter(vals, y + 0.18 * (j - (len(fams) - 1) / 2), marker=marks[j % len(marks)], color="k", s=14,
                   zorder=3, label=fam)
    ax.set_xlim(0, 1.02)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("share of the added heads that are documented backups", fontsize=8)
    ax.set_title("which heads were added: documented backups\n(organisms' cards; not used by any selector)",
                 fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    ax.tick_params(labelsize=8)


def _short_heads(names, at_most: int = 6) -> str:
    names = list(names)
    return " ".join(names[:at_most]) + (f" +{len(names) - at_most}" if len(names) > at_most else "")


def _random_draw_drops(result, record, ks):
    """Each random draw's drop (``[k, draws]``) when the rows keep them, else None."""
    d = record.get("random_drops")
    if not d:
        return None
    return np.array([d[str(k)] for k in ks], float)


def _panel_macro(result, selectors, ax, measure: str = "over_random", legend: bool = True):
    by_family = result.by_family(measure)
    macro = result.macro(measure)["mean"]
    names = [s for s in selectors + ["+own"] if s in macro.index and not (measure == "over_own" and s == "+own")]
    y = np.arange(len(names))
    ax.barh(y, [macro[s] for s in names], color=[_PANEL_COLORS.get(s, "0.3") for s in names], alpha=0.85)
    marks = "osD^vP*X"
    for j, fam in enumerate(by_family.columns):
        vals = [by_family.loc[s, fam] if s in by_family.index else np.nan for s in names]
        ax.scatter(vals, y + 0.18 * (j - (len(by_family.columns) - 1) / 2), marker=marks[j % len(marks)],
                   color="k", s=14, zorder=3, label=fam)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    what = {"over_random": "over size-matched random", "over_own": 'over "+own" (role-matched)'}[measure]
    ax.set_xlabel(f"drop {what} (nats)", fontsize=8)
    ax.set_title(f"family macro: {what}\n(bars: families averaged; marks: each family)", fontsize=9)
    if legend:  # the families' marks, named once per figure
        ax.legend(fontsize=7, frameon=False, loc="lower left" if measure == "over_own" else "lower right")
    ax.tick_params(labelsize=8)


def roc_curves(curves: dict, aucs: dict, title: str, highlight=(), ax=None):
    """ROC curves, one colour per selector (``curves[name]``: a list of (fpr, tpr), one
    per repeat), the CoAx selectors in ``highlight`` drawn thicker, the diagonal as
    chance; the legend gives each selector's ROC-AUC. Curves are nudged apart by under 1%
    of the axis so that identical ones stay visible."""
    ax = _new_ax(ax, (5.2, 4.8))
    n = len(curves)
    for i, (name, reps) in enumerate(curves.items()):
        color = line_color(i)
        nudge = 0.008 * (i - (n - 1) / 2)  # identical curves (tied selectors) stay visible side by side
        for j, (fpr, tpr) in enumerate(reps):
            ax.plot(np.asarray(fpr) + nudge, np.asarray(tpr) + nudge, color=color, lw=2.2 if name in highlight else 1.2,  # ties: a diagonal step
                    alpha=1.0 if j == 0 else 0.35, label=f"{name} (AUC {aucs[name]:.2f})" if j == 0 else None)
    ax.plot([0, 1], [0, 1], color="0.5", ls="--", lw=1, label="chance")
    ax.set_xlim(-0.04, 1.04)
    ax.set_ylim(-0.04, 1.04)
    ax.set_aspect("equal")
    ax.set_xlabel("false-positive rate (other heads ranked above the threshold)", fontsize=8)
    ax.set_ylabel("true-positive rate (backups found)", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    ax.figure.tight_layout()
    return ax.figure


def head_inspector(insp, ax=None):
    """Three panels for a :class:`~coax_nb.results.HeadInspection`: the attention pattern
    on its prompt (query rows, key columns, token labels), the DLA to the answer at each
    output position (intact vs primaries ablated; grey where the metric does not count),
    and the wake-up trace (output norm and DLA as the primaries go one by one); the head's
    scores in the title. ``ax``: the attention pattern alone."""
    import matplotlib.pyplot as plt

    att = np.asarray(insp.attention, float)
    labels = [t.replace("Ġ", " ").replace("▁", " ") for t in insp.tokens]
    if ax is None:
        fig, axes = plt.subplots(1, 3, figsize=(14, 4.4), constrained_layout=True,
                                 gridspec_kw={"width_ratios": [1.15, 1.2, 1]})
    else:
        axes = [ax]
    a = axes[0]
    im = a.imshow(att, cmap=colormap(False), vmin=0, vmax=max(1e-9, att.max()))
    T = att.shape[0]
    step = max(1, T // 24)
    a.set_xticks(range(0, T, step), labels[::step], rotation=90, fontsize=7)
    a.set_yticks(range(0, T, step), labels[::step], fontsize=7)
    a.set_xlabel("key (attended to)", fontsize=8)
    a.set_ylabel("query", fontsize=8)
    a.set_title(f"{insp.head}: attention on prompt {insp.prompt} (intact model)", fontsize=9)
    a.figure.colorbar(im, ax=a, fraction=0.046, pad=0.02).set_label("attention weight", fontsize=8)
    if ax is not None:
        return a.figure
    b = axes[1]
    if insp.dla:
        pos = np.asarray(insp.positions)
        x = np.arange(len(pos))
        counted = np.asarray(insp.dla["counted"], float) > 0
        w = 0.4 if "primaries ablated" in insp.dla else 0.8
        b.bar(x - (w / 2 if w < 0.8 else 0), insp.dla["clean"], w,
              color=[line_color(0) if c else palette()["nan"] for c in counted], label="intact")
        if "primaries ablated" in insp.dla:
            b.bar(x + w / 2, insp.dla["primaries ablated"], w,
                  color=[palette()["truth"] if c else palette()["nan"] for c in counted],
                  label=f"S ablated ({insp.meta.get('ablation', 'zero')})")
        step = max(1, len(pos) // 24)
        b.set_xticks(x[::step], [f"{labels[p]}" for p in pos[::step]], rotation=90, fontsize=7)
        b.axhline(0, color="k", lw=0.6)
        b.set_xlabel("output position (the token it reads; grey: not counted by the metric)", fontsize=8)
        b.set_ylabel("direct logit attribution to the answer (logits)", fontsize=8)
        from matplotlib.patches import Patch

        keys = [Patch(color=line_color(0), label="intact")]  # the first bars may be grey (uncounted)
        if "primaries ablated" in insp.dla:
            keys.append(Patch(color=palette()["truth"], label=f"S ablated ({insp.meta.get('ablation', 'zero')})"))
        b.legend(handles=keys, fontsize=7, frameon=False)
    else:
        b.text(0.5, 0.5, "no answers in this task:\nno direct logit attribution", ha="center", va="center",
               transform=b.transAxes)
        b.set_axis_off()
    b.set_title(f"{insp.head}: DLA per position, prompt {insp.prompt}", fontsize=9)
    c = axes[2]
    n = insp.trace["n_ablated"]
    c.plot(n, insp.trace["norm"], "o-", color=line_color(0), label="output norm |z W_O|")
    c.set_xlabel("primaries ablated (in the order given)", fontsize=8)
    c.set_ylabel("mean output norm (residual units)", fontsize=8, color=line_color(0))
    c.set_xticks(n)
    d = c.twinx()
    d.plot(n, insp.trace["dla"], "s--", color=palette()["truth"], label="DLA")
    d.set_ylabel("mean DLA to the answer (logits)", fontsize=8, color=palette()["truth"])
    c.set_title(f"{insp.head}: wake-up as S = {' '.join(insp.primaries) or '(none given)'} goes, "
                f"{insp.meta.get('n_prompts')} prompts", fontsize=9)
    if insp.scores:
        shown = [k for k in ("single", "conditional", "comp", "ratio", "wakeup", "coact", "atp") if k in insp.scores]
        shown += [k for k in insp.scores if k not in shown][:8 - len(shown)]
        c.figure.suptitle(f"{insp.head}: " + ",  ".join(f"{k} {_fmt(insp.scores[k])}" for k in shown), fontsize=9)
    return c.figure
