"""SynergyGrid: pairwise matrix with group blocks, reordering and pair selection."""
from __future__ import annotations

from typing import Optional

import numpy as np
import traitlets as t

from ..results import PairScores
from ..units import parse_name
from .base import STATIC, Component, check_result, json_values, pairs_caption


UNGROUPED = "other"  # the label of heads outside every group; never collapsed


def collapse(units: list, values: np.ndarray, groups: list, order: list, collapsed) -> tuple:
    """What the grid draws: the heads in ``order``, each collapsed group as one row and
    column where its first member stands, a cell between two rows being the mean over
    their head pairs (u != v, NaN left out) -- a collapsed group's diagonal is its
    mean internal synergy. Returns (labels, matrix, group of each row, members of each row).
    The page (static/synergy.js) draws the same; a test holds them equal."""
    rows, placed = [], set()
    for i in order:
        g = groups[i] if groups else None
        if g is not None and g in collapsed:
            if g not in placed:
                placed.add(g)
                members = [j for j in order if groups[j] == g]
                rows.append((f"{g} ({len(members)} heads)", g, members))
        else:
            rows.append((units[i], g, [i]))
    n = len(rows)
    out = np.full((n, n), np.nan)
    for r, (_, _, a) in enumerate(rows):
        for c, (_, _, b) in enumerate(rows):
            vals = [values[i, j] for i in a for j in b if i != j and np.isfinite(values[i, j])]
            if vals:
                out[r, c] = float(np.mean(vals))
    return [r[0] for r in rows], out, [r[1] for r in rows], [r[2] for r in rows]


def _cluster_order(m: np.ndarray) -> list[int]:
    """Spectral order: sort by the Fiedler vector of the |synergy| similarity graph."""
    w = np.nan_to_num(np.abs(m))
    np.fill_diagonal(w, 0)
    if len(w) < 3 or not w.any():
        return list(range(len(w)))
    lap = np.diag(w.sum(1)) - w
    _, vecs = np.linalg.eigh(lap)
    return [int(i) for i in np.argsort(vecs[:, 1], kind="stable")]


class SynergyGrid(Component):
    """Pairwise matrix of a ``PairScores`` (default its first matrix); ``groups`` maps
    heads to labels (e.g. ``{"L2H0": "backup"}``) for blocks and the group order, or is
    ``"modules"`` for the matrix's own modules (:meth:`PairScores.modules`). ``collapsed``:
    the groups drawn as one row and column (the mean over their pairs); in the page a click
    on a group's button or row label collapses or expands it."""

    kind = "synergy"  # its bundle, static/synergy.js
    picture_traits = ("units", "values", "groups", "order", "label", "collapsed")

    _esm = STATIC / "synergy.js"
    _css = STATIC / "synergy.css"
    units = t.List(t.Unicode()).tag(sync=True)
    values = t.List().tag(sync=True)
    groups = t.List(t.Unicode()).tag(sync=True)
    orders = t.Dict().tag(sync=True)
    order = t.Unicode("group").tag(sync=True)
    label = t.Unicode().tag(sync=True)
    selected_pair = t.List(t.Unicode()).tag(sync=True)
    collapsed = t.List(t.Unicode()).tag(sync=True)

    def __init__(self, pairs, name: Optional[str] = None, groups: Optional[dict] = None,
                 order: Optional[str] = None, collapsed=(), **kwargs):
        """``order``: ``"given"``, ``"cluster"`` or (with ``groups``) ``"group"``, the default then."""
        check_result(pairs, PairScores, "SynergyGrid", "a head x head matrix, e.g. synergy(...) or co_activation(...)")
        name = name or next(iter(pairs.values))
        if name not in pairs.values:
            raise ValueError(f"no matrix {name!r}; available: {', '.join(pairs.values)}")
        if groups == "modules":  # the matrix's own modules (PairScores.modules); lone heads stay "other"
            groups = {str(u): label for label, members in pairs.modules(name).items() if len(members) > 1
                      for u in members}
        if groups is not None and not isinstance(groups, dict):
            raise TypeError(f"groups must be a dict of head -> group label, e.g. {{'L2H0': 'backup'}}, got "
                            f"{type(groups).__name__}")
        units = [str(u) for u in pairs.units]
        m = np.asarray(pairs[name], float)
        by_head = {str(parse_name(k)): str(v) for k, v in (groups or {}).items()}
        stray = sorted(set(by_head) - set(units))
        if stray:
            raise ValueError(f"groups names head(s) {stray} that are not in this matrix ({', '.join(units)})")
        labels = [by_head.get(u, "other") for u in units] if groups else []
        orders = {"given": list(range(len(units))), "cluster": _cluster_order(m)}
        if labels:
            first_seen = {g: i for i, g in reversed(list(enumerate(labels)))}
            orders["group"] = sorted(range(len(units)), key=lambda i: (first_seen[labels[i]], i))
        order = order if order is not None else ("group" if labels else "given")
        if order not in orders:
            raise ValueError(f"order must be one of {', '.join(orders)} (group needs groups=), got {order!r}")
        collapsed = [collapsed] if isinstance(collapsed, str) else list(collapsed)
        unknown = sorted(set(collapsed) - (set(labels) - {UNGROUPED}))
        if unknown:
            have = ", ".join(sorted(set(labels) - {UNGROUPED})) or "none (give groups= or groups='modules')"
            raise ValueError(f"collapsed names group(s) {unknown} that this grid does not have; its groups: {have}")
        kwargs.setdefault("caption", pairs_caption(pairs, name))
        super().__init__(units=units, values=[json_values(row) for row in m], groups=labels, orders=orders,
                         order=order, label=name, collapsed=collapsed, **kwargs)
        self.matrix = m

    def shown(self) -> tuple:
        """The rows the grid draws now (order and collapsed groups applied): labels, the
        matrix, each row's group and member heads (see :func:`collapse`)."""
        labels, m, groups, members = collapse(self.units, self.matrix, self.groups, self.orders[self.order],
                                              [g for g in self.collapsed if g != UNGROUPED])
        return labels, m, groups, [[self.units[i] for i in ms] for ms in members]

    def figure(self):
        from ..plots import synergy_grid

        labels, m, groups, _ = self.shown()
        return synergy_grid(m, labels, self.label, groups=groups if self.groups else None,
                            collapsed=[label not in self.units for label in labels])
