"""SynergyGrid: pairwise matrix with group blocks, reordering and pair selection."""
from __future__ import annotations

from typing import Optional

import numpy as np
import traitlets as t

from ..results import PairScores
from ..units import parse_name
from .base import STATIC, Component, check_result, json_values


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
    ``"modules"`` for the matrix's own modules (:meth:`PairScores.modules`)."""

    kind = "synergy"  # its bundle, static/synergy.js

    _esm = STATIC / "synergy.js"
    _css = STATIC / "synergy.css"
    units = t.List(t.Unicode()).tag(sync=True)
    values = t.List().tag(sync=True)
    groups = t.List(t.Unicode()).tag(sync=True)
    orders = t.Dict().tag(sync=True)
    order = t.Unicode("group").tag(sync=True)
    label = t.Unicode().tag(sync=True)
    selected_pair = t.List(t.Unicode()).tag(sync=True)

    def __init__(self, pairs, name: Optional[str] = None, groups: Optional[dict] = None,
                 order: Optional[str] = None, **kwargs):
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
        super().__init__(units=units, values=[json_values(row) for row in m], groups=labels, orders=orders,
                         order=order, label=name, **kwargs)
        self.matrix = m

    def figure(self):
        from ..plots import synergy_grid

        order = self.orders[self.order]
        return synergy_grid(self.matrix[np.ix_(order, order)], [self.units[i] for i in order], self.label,
                            groups=[self.groups[i] for i in order] if self.groups else None)
