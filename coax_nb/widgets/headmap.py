"""HeadMap: layer x head grid of any per-head score; a click toggles a primary and the
kernel rescans."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import traitlets as t

from ..compat import renamed
from ..results import UnitScores
from .base import scores_caption
from .base import (STATIC, Component, HasPrimaries, check_heads, check_result, float_values, head_names,
                   json_values)


class HeadMap(HasPrimaries, Component):
    """Layer x head grid of ``scores`` (a ``UnitScores``), one score shown at a time.

    Click a head to toggle it in the primaries (shift-click, or ``click_action="select"``,
    selects it instead); Enter/Space do the same from the keyboard. After :meth:`bind`
    (or with :meth:`live`) a change of the primaries recomputes the scores in the kernel.
    """

    kind = "headmap"  # its bundle, static/headmap.js
    picture_traits = ("scores", "score", "primaries", "truth", "version")

    _esm = STATIC / "headmap.js"
    _css = STATIC / "headmap.css"
    n_layers = t.Int().tag(sync=True)
    n_heads = t.Int().tag(sync=True)
    scores = t.Dict().tag(sync=True)
    score = t.Unicode("comp").tag(sync=True)
    primaries = t.List(t.Unicode()).tag(sync=True)
    truth = t.List(t.Unicode()).tag(sync=True)
    busy = t.Bool(False).tag(sync=True)
    click_action = t.Enum(("primaries", "select"), "primaries").tag(sync=True)
    version = t.Int(0).tag(sync=True)
    error = t.Unicode("").tag(sync=True)

    def __init__(self, scores, score: str = "comp", truth: Sequence = (), **kwargs):
        check_result(scores, UnitScores, "HeadMap", "per-head scores, e.g. coax_scan(...)")
        if score not in scores.scores:
            raise ValueError(f"no score {score!r}; available: {', '.join(scores.scores)}")
        super().__init__(n_layers=scores.n_layers, n_heads=scores.n_heads, score=score,
                         scores={k: json_values(v) for k, v in scores.scores.items()},
                         primaries=head_names(scores.primaries),
                         truth=check_heads(truth, scores.n_layers, scores.n_heads), **kwargs)
        self.caption = scores_caption(scores)
        self.result = scores
        self._scorer: Optional[Callable] = None

    @t.validate("primaries", "truth")
    def _normalize_names(self, proposal):
        return head_names(proposal["value"])

    def bind(self, scorer: Callable) -> "HeadMap":
        """Recompute with ``scorer(primary_names)`` whenever the primaries change in the page."""
        self._scorer = scorer
        self.observe(self._recompute, names="primaries")
        return self

    @classmethod
    @renamed(seed="primaries")
    def live(cls, engine, primaries=(), truth: Sequence = (), score: str = "comp", **scan_kwargs) -> "HeadMap":
        """A HeadMap of ``coax_scan`` on ``engine`` that rescans when a head is clicked."""
        from ..scores import coax_scan

        scan_kwargs.setdefault("progress", False)
        view = cls(coax_scan(engine, primaries=primaries, **scan_kwargs), score, truth).bind(
            lambda p: coax_scan(engine, primaries=p, **scan_kwargs))
        view.engine = engine  # for inspect()
        view._ablation = scan_kwargs.get("ablation", "zero")
        return view

    def inspect(self, head: Optional[str] = None, prompt: int = 0, engine=None):
        """The head inspector (:func:`coax_nb.inspect_head`) for ``head`` (default: the
        last selected one) under this map's primaries and scores; ``engine`` defaults to
        the one :meth:`live` scans."""
        from ..inspect_head import inspect_head

        engine = engine or getattr(self, "engine", None)
        if engine is None:
            raise ValueError("this HeadMap has no engine to inspect heads with: build it with HeadMap.live(engine, "
                             "...) or pass engine=")
        head = head or (self.selected[-1] if self.selected else None)
        if head is None:
            raise ValueError("no head given and none selected: shift-click a head in the map, or pass head='L9H9'")
        return inspect_head(engine, head, [p for p in self.primaries if p != head], prompt=prompt,
                            scores=self.result, ablation=getattr(self, "_ablation", "zero"))

    def inspector(self, prompt: int = 0):
        """An output area that shows the inspector of each head shift-clicked (selected) in
        this map: display it under the map."""
        import ipywidgets
        import matplotlib.pyplot as plt
        from IPython.display import display

        out = ipywidgets.Output()

        def show(change):
            if not change["new"]:
                return
            with out:
                out.clear_output(wait=True)
                try:
                    fig = self.inspect(change["new"][-1], prompt)
                    display(fig.plot())
                    plt.close("all")
                except ValueError as exc:  # e.g. a primary was selected: said in the inspector's own output
                    out.append_stdout(f"{exc}\n")
        self.observe(show, names="selected")
        return out

    def _recompute(self, change):
        if self._scorer is None:
            return
        if not change["new"]:  # no S: scores that depend on it are undefined, not the last S's
            self.scores = {k: (v if k == "single" else [None] * len(v)) for k, v in self.scores.items()}
            self.error = "S is empty: CoAx scores need at least one primary head; click a head to add one"
            self.version += 1
            return
        self.busy = True
        try:
            result = self._scorer(list(change["new"]))
            self.result = result
            self.scores = {k: json_values(v) for k, v in result.scores.items()}
            self.caption = scores_caption(result)
            self.error = ""
        except Exception as exc:  # shown in the page; the kernel keeps the last good scores
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.busy = False
            self.version += 1

    def grid(self):
        """The shown score as a ``[n_layers, n_heads]`` array (NaN where the page shows none)."""
        return float_values(self.scores[self.score]).reshape(self.n_layers, self.n_heads)

    def figure(self):
        from ..plots import head_map

        return head_map(self.grid(), self.score, primaries=self.primaries, truth=self.truth)
