"""Interactive anywidget components, driven by the kernel-side scores.

- :class:`HeadMap`: layer x head grid of any per-head score; clicking a head toggles it
  in the seed set and, when bound to a scorer (:meth:`HeadMap.live`), the kernel
  recomputes the scores and the map updates (with a busy indicator).
- :class:`BlindSpot`: first-order vs CoAx percentile scatter (the paper's teaser).
- :class:`SynergyGrid`: pairwise synergy matrix with group blocks and reordering.
- :class:`Curves`: multi-series line chart (wake-up, knockout, pruning), log-y, legend
  toggles, hover readout, live :meth:`Curves.append`.
- :class:`RankingTable`: sortable per-head table.

Every component has ``selected`` (head names) as a synced traitlet; :func:`link`
keeps it shared between components. Every component has ``figure()`` (matplotlib)
and puts a PNG in its mime bundle, so nbconvert HTML, GitHub and papermill reports
show a picture when no widget frontend runs. The ES modules and CSS live in
``widgets/`` (shipped in the wheel as ``coax_nb.static``); nothing is fetched from a CDN.
"""
from __future__ import annotations

import base64
import io
from importlib import resources
from typing import Callable, Optional, Sequence

import anywidget
import numpy as np
import traitlets as t

from .curves import Curves as CurveData
from .scores import PairScores, UnitScores
from .units import Unit

COMPONENTS = {"HeadMap": "headmap.js", "BlindSpot": "blindspot.js", "SynergyGrid": "synergy.js",
              "Curves": "curves.js", "RankingTable": "ranking.js"}


def asset(name: str) -> str:
    """The text of one file of ``widgets/`` (installed as the ``coax_nb.static`` package)."""
    return resources.files("coax_nb.static").joinpath(name).read_text(encoding="utf-8")


def module_source(component: str) -> str:
    """The self-contained ES module of a component: shared helpers + the component."""
    return asset("common.js") + "\n" + asset(COMPONENTS[component])


def _clean(values) -> list:
    return [None if (v is None or not np.isfinite(v)) else float(v) for v in np.asarray(values, float)]


def _names(units) -> list[str]:
    return [str(u) if isinstance(u, Unit) else str(Unit(*u)) if isinstance(u, (tuple, list)) else str(u)
            for u in units]


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


class _Component(anywidget.AnyWidget):
    _css = asset("style.css")
    selected = t.List(t.Unicode()).tag(sync=True)

    def figure(self):  # pragma: no cover - every component overrides it
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        data, meta = bundle if isinstance(bundle, tuple) else (bundle, {})
        data = dict(data)
        data["image/png"] = _png(self.figure())
        return data, meta


def link(*components: _Component) -> list:
    """Share the head selection between components (in the browser, via ``jslink``)."""
    import ipywidgets

    if len(components) < 2:
        raise ValueError("link needs at least two components")
    return [ipywidgets.jslink((a, "selected"), (b, "selected")) for a, b in zip(components, components[1:])]


# ---------------------------------------------------------------------------- HeadMap
class HeadMap(_Component):
    """Layer x head grid of ``scores`` (a :class:`UnitScores`), one score shown at a time.

    Click a head to toggle it in the seed set (shift-click, or ``click_action="select"``,
    selects it instead); Enter/Space do the same from the keyboard. After
    :meth:`bind` (or with :meth:`live`) a seed change recomputes the scores in the kernel.
    """

    _esm = module_source("HeadMap")
    n_layers = t.Int().tag(sync=True)
    n_heads = t.Int().tag(sync=True)
    scores = t.Dict().tag(sync=True)
    score = t.Unicode("comp").tag(sync=True)
    seed = t.List(t.Unicode()).tag(sync=True)
    truth = t.List(t.Unicode()).tag(sync=True)
    busy = t.Bool(False).tag(sync=True)
    click_action = t.Unicode("seed").tag(sync=True)
    version = t.Int(0).tag(sync=True)
    error = t.Unicode("").tag(sync=True)

    def __init__(self, scores: UnitScores, score: str = "comp", truth: Sequence = (), **kwargs):
        if score not in scores.scores:
            raise ValueError(f"no score {score!r}; available: {', '.join(scores.scores)}")
        super().__init__(n_layers=scores.n_layers, n_heads=scores.n_heads, score=score,
                         scores={k: _clean(v) for k, v in scores.scores.items()},
                         seed=_names(scores.seed), truth=_names(truth), **kwargs)
        self.result = scores
        self._scorer: Optional[Callable] = None

    def bind(self, scorer: Callable[[list], UnitScores]) -> "HeadMap":
        """Recompute with ``scorer(seed_names)`` whenever the seed changes in the page."""
        self._scorer = scorer
        self.observe(self._recompute, names="seed")
        return self

    @classmethod
    def live(cls, engine, seed, truth: Sequence = (), score: str = "comp", **scan_kwargs) -> "HeadMap":
        """A HeadMap of :func:`coax_scan` on ``engine`` that rescans when a head is clicked."""
        from .scores import coax_scan

        scan_kwargs.setdefault("progress", False)
        return cls(coax_scan(engine, seed=seed, **scan_kwargs), score, truth).bind(
            lambda s: coax_scan(engine, seed=s, **scan_kwargs))

    def _recompute(self, change):
        if self._scorer is None or not change["new"]:
            return
        self.busy = True
        try:
            result = self._scorer(list(change["new"]))
            self.result = result
            self.scores = {k: _clean(v) for k, v in result.scores.items()}
            self.error = ""
        except Exception as exc:  # shown in the page; the kernel keeps the last good scores
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.busy = False
            self.version += 1

    def figure(self):
        import matplotlib.pyplot as plt

        vals = np.array([np.nan if v is None else v for v in self.scores[self.score]], float)
        grid = vals.reshape(self.n_layers, self.n_heads)
        seed_ids = {Unit(*map(int, s.split("."))).flat(self.n_heads) for s in self.seed}
        masked = grid.copy()
        for i in seed_ids:
            masked.flat[i] = np.nan
        finite = masked[np.isfinite(masked)]
        diverging = finite.size and finite.min() < 0 < finite.max()
        fig, ax = plt.subplots(figsize=(0.45 * self.n_heads + 2.2, 0.4 * self.n_layers + 1.4))
        if diverging:
            m = np.abs(finite).max()
            im = ax.imshow(masked, cmap="PuOr_r", vmin=-m, vmax=m)
        else:
            im = ax.imshow(masked, cmap="viridis")
        for i in seed_ids:
            ax.text(i % self.n_heads, i // self.n_heads, "S", ha="center", va="center", fontweight="bold")
        for s in self.truth:
            u = Unit(*map(int, s.split(".")))
            ax.plot(u.head, u.layer, "o", mfc="white", mec="black", ms=5)
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(f"{self.score} (S = seed, ○ = ground truth)", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
        fig.tight_layout()
        return fig


# ---------------------------------------------------------------------------- BlindSpot
class BlindSpot(_Component):
    """First-order (``x``, default single ablation) vs CoAx (``y``) percentiles of the
    non-seed heads; ground truth marked; click (shift-click to add) selects heads."""

    _esm = module_source("BlindSpot")
    units = t.List(t.Unicode()).tag(sync=True)
    x = t.List().tag(sync=True)
    y = t.List().tag(sync=True)
    x_label = t.Unicode().tag(sync=True)
    y_label = t.Unicode().tag(sync=True)
    seed = t.List(t.Unicode()).tag(sync=True)
    truth = t.List(t.Unicode()).tag(sync=True)

    def __init__(self, scores: UnitScores, x: str = "single", y: str = "comp", truth: Sequence = (), **kwargs):
        for name in (x, y):
            if name not in scores.scores:
                raise ValueError(f"no score {name!r}; available: {', '.join(scores.scores)}")
        super().__init__(units=[str(u) for u in scores.units], x=_clean(scores[x]), y=_clean(scores[y]),
                         x_label=x, y_label=y, seed=_names(scores.seed), truth=_names(truth), **kwargs)

    def percentiles(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        keep = [i for i, u in enumerate(self.units) if u not in self.seed]
        out = []
        for vals in (self.x, self.y):
            v = np.array([vals[i] if vals[i] is not None else np.nan for i in keep], float)
            ranks = np.argsort(np.argsort(v, kind="stable"), kind="stable")
            out.append(100 * ranks / max(len(v) - 1, 1))
        return out[0], out[1], [self.units[i] for i in keep]

    def figure(self):
        import matplotlib.pyplot as plt

        px, py, names = self.percentiles()
        truth = np.array([n in self.truth for n in names])
        fig, ax = plt.subplots(figsize=(4.2, 3.8))
        ax.axvspan(0, 50, ymin=0.5, ymax=1, color="#D55E00", alpha=0.08)
        ax.scatter(px[~truth], py[~truth], c="#56B4E9", s=25, label="heads")
        ax.scatter(px[truth], py[truth], c="#D55E00", s=45, label="ground truth")
        ax.set_xlim(-3, 103)
        ax.set_ylim(-3, 103)
        ax.set_xlabel(f"{self.x_label} percentile")
        ax.set_ylabel(f"{self.y_label} percentile")
        ax.set_title("Blind spot of first-order scores", fontsize=9)
        ax.legend(fontsize=8, frameon=False, loc="lower right")
        fig.tight_layout()
        return fig


# ---------------------------------------------------------------------------- SynergyGrid
def _cluster_order(m: np.ndarray) -> list[int]:
    """Spectral order: sort by the Fiedler vector of the |synergy| similarity graph."""
    w = np.nan_to_num(np.abs(m))
    np.fill_diagonal(w, 0)
    if len(w) < 3 or not w.any():
        return list(range(len(w)))
    lap = np.diag(w.sum(1)) - w
    _, vecs = np.linalg.eigh(lap)
    return [int(i) for i in np.argsort(vecs[:, 1], kind="stable")]


class SynergyGrid(_Component):
    """Pairwise matrix of a :class:`PairScores` (default its first matrix); ``groups``
    maps heads to labels (e.g. ``{"2.0": "backup"}``) for blocks and the group order."""

    _esm = module_source("SynergyGrid")
    units = t.List(t.Unicode()).tag(sync=True)
    values = t.List().tag(sync=True)
    groups = t.List(t.Unicode()).tag(sync=True)
    orders = t.Dict().tag(sync=True)
    order = t.Unicode("group").tag(sync=True)
    label = t.Unicode().tag(sync=True)
    selected_pair = t.List(t.Unicode()).tag(sync=True)

    def __init__(self, pairs: PairScores, name: Optional[str] = None, groups: Optional[dict] = None, **kwargs):
        name = name or next(iter(pairs.values))
        if name not in pairs.values:
            raise ValueError(f"no matrix {name!r}; available: {', '.join(pairs.values)}")
        units = [str(u) for u in pairs.units]
        m = np.asarray(pairs[name], float)
        labels = [str((groups or {}).get(u, "other")) for u in units] if groups else []
        orders = {"given": list(range(len(units))), "cluster": _cluster_order(m)}
        if labels:
            first_seen = {g: i for i, g in reversed(list(enumerate(labels)))}
            orders["group"] = sorted(range(len(units)), key=lambda i: (first_seen[labels[i]], i))
        super().__init__(units=units, values=[_clean(row) for row in m], groups=labels, orders=orders,
                         order="group" if labels else "given", label=name, **kwargs)
        self.matrix = m

    def figure(self):
        import matplotlib.pyplot as plt

        order = self.orders[self.order]
        m = self.matrix[np.ix_(order, order)]
        finite = m[np.isfinite(m)]
        fig, ax = plt.subplots(figsize=(0.35 * len(order) + 2.5, 0.35 * len(order) + 1.8))
        if finite.size and finite.min() < 0 < finite.max():
            lim = np.abs(finite).max()
            im = ax.imshow(m, cmap="PuOr_r", vmin=-lim, vmax=lim)
        else:
            im = ax.imshow(m, cmap="viridis")
        names = [self.units[i] + (f" {self.groups[i]}" if self.groups else "") for i in order]
        ax.set_xticks(range(len(order)), [self.units[i] for i in order], rotation=60, fontsize=7)
        ax.set_yticks(range(len(order)), names, fontsize=7)
        ax.set_title(self.label, fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
        fig.tight_layout()
        return fig


# ---------------------------------------------------------------------------- Curves
class Curves(_Component):
    """Line chart of a :class:`coax_nb.curves.Curves`; :meth:`append` adds points live."""

    _esm = module_source("Curves")
    data = t.Dict().tag(sync=True)
    hidden = t.List(t.Unicode()).tag(sync=True)

    def __init__(self, curves: Optional[CurveData] = None, **kwargs):
        curves = curves or CurveData("", "x", "y")
        super().__init__(data=curves.to_dict(), **kwargs)

    def append(self, series: str, x: float, y: float, lo: Optional[float] = None, hi: Optional[float] = None):
        """Add one point to ``series`` (created if new); the page redraws at once."""
        data = {**self.data, "series": [dict(s, x=list(s["x"]), y=list(s["y"])) for s in self.data["series"]]}
        for s in data["series"]:
            if s["name"] == series:
                break
        else:
            s = {"name": series, "x": [], "y": []}
            data["series"].append(s)
        s["x"].append(float(x))
        s["y"].append(float(y))
        if lo is not None:
            s.setdefault("lo", []).append(float(lo))
            s.setdefault("hi", []).append(float(hi))
        self.data = data

    def curves(self) -> CurveData:
        d = self.data
        return CurveData(d.get("title", ""), d.get("xlabel", ""), d.get("ylabel", ""), list(d.get("series", [])),
                         bool(d.get("log_y")), dict(d.get("meta", {})))

    def figure(self):
        c = self.curves()
        c.series = [s for s in c.series if s["name"] not in self.hidden]
        return c.plot()


# ---------------------------------------------------------------------------- RankingTable
class RankingTable(_Component):
    """Sortable per-head table of every score in a :class:`UnitScores`."""

    _esm = module_source("RankingTable")
    n_heads = t.Int().tag(sync=True)
    scores = t.Dict().tag(sync=True)
    sort_by = t.Unicode("comp").tag(sync=True)
    descending = t.Bool(True).tag(sync=True)
    seed = t.List(t.Unicode()).tag(sync=True)
    truth = t.List(t.Unicode()).tag(sync=True)
    max_rows = t.Int(50).tag(sync=True)

    def __init__(self, scores: UnitScores, sort_by: str = "comp", truth: Sequence = (), **kwargs):
        super().__init__(n_heads=scores.n_heads, scores={k: _clean(v) for k, v in scores.scores.items()},
                         sort_by=sort_by if sort_by in scores.scores else next(iter(scores.scores)),
                         seed=_names(scores.seed), truth=_names(truth), **kwargs)
        self.result = scores

    def rows(self) -> list[str]:
        """Head names in the current sort order (NaN last)."""
        vals = np.array([np.nan if v is None else v for v in self.scores[self.sort_by]], float)
        key = np.where(np.isnan(vals), -np.inf, vals)
        order = sorted(range(len(vals)), key=lambda i: (-key[i] if self.descending else key[i], i))
        return [str(self.result.units[i]) for i in order][: self.max_rows]

    def figure(self):
        import matplotlib.pyplot as plt

        names = list(self.scores)
        rows = self.rows()[:15]
        cells = [[r] + [f"{self.result.value(n, r):.3g}" for n in names] for r in rows]
        fig, ax = plt.subplots(figsize=(1.1 * (len(names) + 1), 0.25 * len(rows) + 0.6))
        ax.axis("off")
        ax.table(cellText=cells, colLabels=["head"] + names, loc="center").auto_set_font_size(False)
        ax.set_title(f"top heads by {self.sort_by}", fontsize=9)
        return fig
