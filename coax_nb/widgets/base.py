"""What every component shares: the ``selected`` traitlet, the static PNG fallback,
:func:`link`, and the conversions of values and head names for the page."""
from __future__ import annotations

import base64
import io
import warnings
import weakref
from pathlib import Path

import anywidget
import numpy as np
import traitlets as t

from ..units import parse_name, parse_units

# the built ES modules and stylesheets (widgets/build.py writes them; the wheel ships them)
STATIC = Path(__file__).resolve().parent / "static"


def json_values(values) -> list:
    """Floats for the page; NaN and inf travel as null (JSON has neither)."""
    return [None if (v is None or not np.isfinite(v)) else float(v) for v in np.asarray(values, float)]


def float_values(values) -> np.ndarray:
    """The page's values back as floats, null as NaN."""
    return np.array([np.nan if v is None else v for v in values], float)


def head_names(units) -> list[str]:
    """Heads (``Unit``, pairs or any accepted name) as the page's labels, ``L9H9``."""
    return [str(parse_name(u)) for u in units]


def check_result(result, want: type, component: str, hint: str):
    """The result a component draws, refused in words when it is another kind (a widget
    fed a PairScores would fail on a missing attribute, or draw an empty chart)."""
    if not isinstance(result, want):
        raise TypeError(f"{component} draws a {want.__name__} ({hint}), got {type(result).__name__}")
    return result


def check_heads(names, n_layers: int, n_heads: int) -> list[str]:
    """Head names checked against the result's shape: a head outside it would be drawn nowhere."""
    return [str(u) for u in parse_units(names, n_layers, n_heads)]


EFFECT_UNITS = {"fisher": "Fisher energy", "kl": "KL, nats", "task": "task-metric units"}
UNITLESS = {"ratio", "wakeup", "coact"}  # ratios and correlations


def meta_caption(meta: dict, measured: str = "") -> list[str]:
    """The parts every caption starts with: the ablation (said when a result did not record
    one), what the numbers are measured in, the prompts."""
    parts = [f"{meta['ablation']} ablation" if meta.get("ablation") else "no ablation recorded"]
    if measured:
        parts.append(measured)
    if meta.get("n_prompts"):
        parts.append(f"{meta['n_prompts']} prompts")
    return parts


def scores_caption(result) -> str:
    """What a scan's numbers are, in one line for the page: the ablation, what the effect
    scores are measured in, the prompts, S."""
    meta = getattr(result, "meta", {}) or {}
    effect = meta.get("effect")
    measured = (f"single / conditional / comp in {EFFECT_UNITS.get(effect, effect)}; ratio, wakeup, coact "
                "without units") if effect else ""
    prim = [str(u) for u in getattr(result, "primaries", [])]
    return " · ".join(meta_caption(meta, measured) + [f"S = {', '.join(prim)}" if prim else "no S"])


def pairs_caption(pairs, name: str) -> str:
    """What a pairwise matrix is: a synergy of two ablations (its ablation and units) or a
    co-activation correlation of the intact model (no ablation at all)."""
    meta = pairs.meta or {}
    if name == "affinity":  # co_activation: the intact model's norms, nothing removed
        parts = ["no ablation (intact model)", "correlation of output norms, without units"]
        if meta.get("n_prompts"):
            parts.append(f"{meta['n_prompts']} prompts")
        return " · ".join(parts)
    effect = meta.get("effect")
    units = EFFECT_UNITS.get(effect, effect) if effect else "effect units"
    measured = ("synergy over sqrt(single_u single_v), without units" if name == "normalized"
                else f"synergy in {units}")
    return " · ".join(meta_caption(meta, measured))


def curves_caption(meta: dict) -> str:
    """What a chart's lines were measured under (wake-up, knockout, pruning curves)."""
    return " · ".join(meta_caption(meta or {}) + ([meta["about"]] if (meta or {}).get("about") else []))


def png_base64(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


class Component(anywidget.AnyWidget):
    """Base of every component: a shared head selection and a static picture that follows
    the view's state (a saved notebook shows what the view showed when it was saved)."""

    selected = t.List(t.Unicode()).tag(sync=True)
    caption = t.Unicode("").tag(sync=True)  # what the numbers are (ablation, units, prompts), shown under the view
    picture_traits: tuple = ()  # the traits figure() draws: a change of one redraws the output's PNG

    def figure(self):  # pragma: no cover - every component overrides it
        raise NotImplementedError

    def to_html(self, path, title: str = "coax-nb", **kwargs):
        """Write this component to ``path`` as one offline HTML page that runs without a
        kernel (see :func:`coax_nb.widgets.to_html`, which also takes several)."""
        from .export import to_html

        return to_html([self], path, title, **kwargs)

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        data, meta = bundle if isinstance(bundle, tuple) else (bundle, {})
        data = dict(data)
        data["image/png"] = png_base64(self.figure())
        return data, meta

    def _ipython_display_(self):
        """Shown in a Jupyter kernel: the output gets a display id, so that when the state
        changes (a click rescanned, a point was added) the PNG kept beside the view -- what
        a saved notebook, nbconvert and GitHub show -- is redrawn in place. Other front ends
        (marimo) use ``_repr_mimebundle_`` and draw the view only."""
        from IPython import get_ipython
        from IPython.display import display

        data, meta = self._repr_mimebundle_()
        handle = display(data, metadata=meta, raw=True, display_id=True)
        if not hasattr(self, "_shown_in"):
            self._shown_in = []
            self.observe(self._picture_changed, names=list(self.picture_traits))
        self._shown_in.append(handle)
        shell = get_ipython()
        if shell is not None and redraw_pending_pictures not in shell.events.callbacks["post_execute"]:
            shell.events.register("post_execute", redraw_pending_pictures)

    def _picture_changed(self, change) -> None:
        # redrawn once at the end of what made the change: the kernel's post_execute event
        # ends every cell and every message from the front end (a click), so a burst of
        # changes (a rescan's traits, a live chart's points) costs one PNG
        PENDING.add(self)

    def _redraw_picture(self) -> None:
        PENDING.discard(self)
        if getattr(self, "busy", False):  # mid-rescan; the rescan's last change marks it again
            return
        if self.comm is None:  # closed: its outputs no longer draw it
            return
        try:
            data, meta = self._repr_mimebundle_()
        except Exception as err:  # keep the view working; say the saved picture is behind
            warnings.warn(f"{type(self).__name__}: the saved notebook's picture was not redrawn ({err}); "
                          f"it shows an earlier state", RuntimeWarning, stacklevel=2)
            return
        for handle in self._shown_in:
            handle.update(data, metadata=meta, raw=True)


# displayed components whose state changed since their picture was drawn
PENDING: "weakref.WeakSet[Component]" = weakref.WeakSet()


def redraw_pending_pictures() -> None:
    """Redraw the saved picture of every displayed component whose drawn state changed
    (the kernel's post_execute event calls it; a change made from another thread is drawn
    at the next cell or click)."""
    for component in list(PENDING):
        component._redraw_picture()


class HasPrimaries:
    """``seed``: the old name of the ``primaries`` traitlet, kept for a while."""

    @property
    def seed(self) -> list:
        warnings.warn(f"{type(self).__name__}.seed is renamed primaries", DeprecationWarning, stacklevel=2)
        return self.primaries

    @seed.setter
    def seed(self, value) -> None:
        warnings.warn(f"{type(self).__name__}.seed is renamed primaries", DeprecationWarning, stacklevel=2)
        self.primaries = value


def link(*components: Component) -> list:
    """Share the head selection between components -- in the browser (``jslink``: no round
    trip, works in a saved page) and in the kernel (``traitlets.link``: front ends that
    render anywidget models only, such as marimo, have no ``jslink``) -- and the scores:
    when a linked HeadMap rescans (a click changed S), every linked view with
    ``show(scores)`` (BlindSpot, RankingTable) draws the new scores."""
    import ipywidgets

    if len(components) < 2:
        raise ValueError("link needs at least two components")
    odd = [type(c).__name__ for c in components if not isinstance(c, Component)]
    if odd:
        raise TypeError(f"link takes coax-nb components (HeadMap, BlindSpot, ...), got {odd[0]}")
    for source in components:
        if source.has_trait("version") and hasattr(source, "result"):  # a view that rescans in the kernel
            views = [c for c in components if c is not source and callable(getattr(c, "show", None))]

            def forward(change, source=source, views=views):
                if source.busy:
                    return
                scores = source.result
                if not source.primaries:  # no S: only the scores that do not depend on it remain
                    from ..results import UnitScores

                    scores = UnitScores(scores.n_layers, scores.n_heads, [],
                                        {k: v if k == "single" else np.full(len(v), np.nan)
                                         for k, v in scores.scores.items()}, scores.meta)
                elif source.error:  # a failed rescan keeps its last good scores, and so do the views
                    return
                for view in views:
                    view.show(scores)
            source.observe(forward, names="version")
    for a, b in zip(components, components[1:]):
        t.link((a, "selected"), (b, "selected"))  # its observers keep it alive as long as the components
    return [ipywidgets.jslink((a, "selected"), (b, "selected")) for a, b in zip(components, components[1:])]
