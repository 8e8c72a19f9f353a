"""BlindSpot: first-order vs CoAx percentile of every head outside the primaries."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import traitlets as t

from ..results import UnitScores
from .base import scores_caption
from .base import (STATIC, Component, HasPrimaries, check_heads, check_result, float_values, head_names,
                   json_values)


class BlindSpot(HasPrimaries, Component):
    """First-order (``x``, default single ablation) vs CoAx (``y``) percentiles of the
    heads outside the primaries; ground truth marked; click (shift-click to add)
    selects heads. Heads with a NaN score have no point, in the page as in the PNG."""

    kind = "blindspot"  # its bundle, static/blindspot.js
    picture_traits = ("units", "x", "y", "x_label", "y_label", "primaries", "truth")

    _esm = STATIC / "blindspot.js"
    _css = STATIC / "blindspot.css"
    units = t.List(t.Unicode()).tag(sync=True)
    x = t.List().tag(sync=True)
    y = t.List().tag(sync=True)
    x_label = t.Unicode().tag(sync=True)
    y_label = t.Unicode().tag(sync=True)
    primaries = t.List(t.Unicode()).tag(sync=True)
    truth = t.List(t.Unicode()).tag(sync=True)

    def __init__(self, scores, x: str = "single", y: str = "comp", truth: Sequence = (), **kwargs):
        check_result(scores, UnitScores, "BlindSpot", "per-head scores, e.g. coax_scan(...)")
        for name in (x, y):
            if name not in scores.scores:
                raise ValueError(f"no score {name!r}; available: {', '.join(scores.scores)}")
        super().__init__(units=[str(u) for u in scores.units], x=json_values(scores[x]), y=json_values(scores[y]),
                         x_label=x, y_label=y, primaries=head_names(scores.primaries),
                         truth=check_heads(truth, scores.n_layers, scores.n_heads), **kwargs)
        self.caption = scores_caption(scores)

    @t.validate("primaries", "truth")
    def _normalize_names(self, proposal):
        return head_names(proposal["value"])

    def show(self, scores) -> None:
        """Draw new scores (e.g. a linked HeadMap's rescan): the same x and y scores, the new S."""
        check_result(scores, UnitScores, "BlindSpot", "per-head scores, e.g. coax_scan(...)")
        with self.hold_sync():
            self.x, self.y = json_values(scores[self.x_label]), json_values(scores[self.y_label])
            self.primaries = head_names(scores.primaries)
            self.caption = scores_caption(scores)

    def percentiles(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Rank percentiles of x and y over the heads outside the primaries, as the page
        computes them (NaN where a score is NaN), and those heads' names."""
        from ..plots import percentiles

        keep = [i for i, u in enumerate(self.units) if u not in self.primaries]
        px = percentiles(float_values([self.x[i] for i in keep]))
        py = percentiles(float_values([self.y[i] for i in keep]))
        return px, py, [self.units[i] for i in keep]

    def figure(self):
        from ..plots import blind_spot

        px, py, names = self.percentiles()
        return blind_spot(px, py, names, self.x_label, self.y_label, truth=self.truth)
