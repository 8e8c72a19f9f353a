"""Curves: line chart of a curves result that grows live while a run goes."""
from __future__ import annotations

from typing import Optional

import traitlets as t

from ..results import Curves as CurvesResult
from .base import STATIC, Component, curves_caption

FIELDS = ("title", "xlabel", "ylabel", "series", "log_y", "meta")


class Curves(Component):
    """Line chart of a :class:`coax_nb.results.Curves` (or anything with its fields);
    :meth:`append` adds points live."""

    kind = "curves"  # its bundle, static/curves.js
    picture_traits = ("data", "hidden")

    _esm = STATIC / "curves.js"
    _css = STATIC / "curves.css"
    data = t.Dict().tag(sync=True)
    hidden = t.List(t.Unicode()).tag(sync=True)

    def __init__(self, curves=None, **kwargs):
        if curves is None:
            data = {"title": "", "xlabel": "x", "ylabel": "y", "series": [], "log_y": False, "meta": {}}
        else:
            missing = [k for k in FIELDS[:4] if not hasattr(curves, k)]
            if missing:
                raise TypeError(f"Curves draws a curves result (coax_nb.results.Curves, e.g. wakeup(...).curves['dla'] "
                                f"or prune(...).curves()), got {type(curves).__name__}, which has no {missing[0]!r}")
            data = {k: getattr(curves, k) for k in FIELDS if hasattr(curves, k)}
        if curves is not None:  # a result says what it was measured under, or that it did not record it
            kwargs.setdefault("caption", curves_caption(data.get("meta") or {}))
        super().__init__(data=data, **kwargs)
        self.observe(self._caption_from_meta, names="data")

    def _caption_from_meta(self, change) -> None:
        # the line under the chart says what its lines were measured under (ablation,
        # prompts); a chart built point by point gets it when its data gets a meta
        meta = self.data.get("meta") or {}
        if meta:
            self.caption = curves_caption(meta)

    def append(self, series: str, x: float, y: float, lo: Optional[float] = None, hi: Optional[float] = None):
        """Add one point to ``series`` (created if new); the page redraws at once."""
        data = {**self.data, "series": [dict(s, x=list(s["x"]), y=list(s["y"])) for s in self.data["series"]]}
        for s in data["series"]:
            if s["name"] == series:
                break
        else:
            s = {"name": series, "x": [], "y": []}
            data["series"].append(s)
        if (lo is None) != (hi is None):
            raise ValueError(f"series {series!r}: a band point needs both lo and hi (got only "
                             f"{'lo' if hi is None else 'hi'})")
        if (lo is not None) != ("lo" in s) and s["x"]:
            raise ValueError(f"series {series!r} {'has' if 'lo' in s else 'has no'} band; give lo and hi with "
                             f"every point of it, or with none")
        s["x"].append(float(x))
        s["y"].append(float(y))
        if lo is not None:
            s.setdefault("lo", []).append(float(lo))
            s.setdefault("hi", []).append(float(hi))
        self.data = data

    def curves(self) -> CurvesResult:
        """The chart's data as a :class:`coax_nb.results.Curves`."""
        d = self.data
        return CurvesResult(title=d.get("title", ""), xlabel=d.get("xlabel", ""), ylabel=d.get("ylabel", ""),
                               series=list(d.get("series", [])), log_y=bool(d.get("log_y")),
                               meta=dict(d.get("meta", {})))

    def figure(self):
        from ..plots import curves

        return curves(self.curves(), hidden=self.hidden)
