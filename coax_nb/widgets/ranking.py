"""RankingTable: sortable per-head table of every score."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import traitlets as t

from ..results import UnitScores
from ..units import Unit
from .base import scores_caption
from .base import (STATIC, Component, HasPrimaries, check_heads, check_result, float_values, head_names,
                   json_values)


class RankingTable(HasPrimaries, Component):
    """Sortable per-head table of every score in a ``UnitScores``."""

    kind = "ranking"  # its bundle, static/ranking.js
    picture_traits = ("scores", "sort_by", "descending", "primaries", "truth", "max_rows")

    _esm = STATIC / "ranking.js"
    _css = STATIC / "ranking.css"
    n_heads = t.Int().tag(sync=True)
    scores = t.Dict().tag(sync=True)
    sort_by = t.Unicode("comp").tag(sync=True)
    descending = t.Bool(True).tag(sync=True)
    primaries = t.List(t.Unicode()).tag(sync=True)
    truth = t.List(t.Unicode()).tag(sync=True)
    max_rows = t.Int(50).tag(sync=True)

    def __init__(self, scores, sort_by: Optional[str] = None, truth: Sequence = (), **kwargs):
        """``sort_by``: the score to sort by; by default ``comp``, or the first score when
        there is no ``comp`` (e.g. a single_scan)."""
        check_result(scores, UnitScores, "RankingTable", "per-head scores, e.g. coax_scan(...)")
        if sort_by is None:
            sort_by = "comp" if "comp" in scores.scores else next(iter(scores.scores))
        elif sort_by not in scores.scores:
            raise ValueError(f"no score {sort_by!r} to sort by; available: {', '.join(scores.scores)}")
        super().__init__(n_heads=scores.n_heads, scores={k: json_values(v) for k, v in scores.scores.items()},
                         sort_by=sort_by, primaries=head_names(scores.primaries),
                         truth=check_heads(truth, scores.n_layers, scores.n_heads), **kwargs)
        self.caption = scores_caption(scores)
        self.result = scores

    @t.validate("primaries", "truth")
    def _normalize_names(self, proposal):
        return head_names(proposal["value"])

    def show(self, scores) -> None:
        """Draw new scores (e.g. a linked HeadMap's rescan), keeping the sort."""
        check_result(scores, UnitScores, "RankingTable", "per-head scores, e.g. coax_scan(...)")
        with self.hold_sync():
            self.scores = {k: json_values(v) for k, v in scores.scores.items()}
            self.primaries = head_names(scores.primaries)
            self.caption = scores_caption(scores)
        self.result = scores

    def frame(self):
        """The table's scores, one row per head, indexed by head name."""
        import pandas as pd

        n = len(next(iter(self.scores.values()), []))
        names = [str(Unit.from_flat(i, self.n_heads)) for i in range(n)]
        return pd.DataFrame({k: float_values(v) for k, v in self.scores.items()}, index=names)

    def rows(self) -> list[str]:
        """Head names in the current sort order (NaN last), as the page lists them."""
        vals = float_values(self.scores[self.sort_by])
        key = np.where(np.isnan(vals), -np.inf, vals)
        order = sorted(range(len(vals)), key=lambda i: (-key[i] if self.descending else key[i], i))
        return [str(Unit.from_flat(i, self.n_heads)) for i in order][: self.max_rows]

    def figure(self):
        from ..plots import ranking_table

        return ranking_table(self.frame(), self.sort_by, descending=self.descending)
