"""What every component shares: the ``selected`` traitlet, the static PNG fallback,
:func:`link`, and the conversions of values and head names for the page."""
from __future__ import annotations

import base64
import io
import warnings
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


def scores_caption(result) -> str:
    """What a scan's numbers are, in one line for the page: the ablation, what the effect
    scores are measured in, the prompts, S."""
    meta = getattr(result, "meta", {}) or {}
    parts = []
    if meta.get("ablation"):
        parts.append(f"{meta['ablation']} ablation")
    effect = meta.get("effect")
    if effect:
        parts.append(f"single / conditional / comp in {EFFECT_UNITS.get(effect, effect)}; ratio, wakeup, coact "
                     "without units")
    if meta.get("n_prompts"):
        parts.append(f"{meta['n_prompts']} prompts")
    prim = [str(u) for u in getattr(result, "primaries", [])]
    parts.append(f"S = {', '.join(prim)}" if prim else "no S")
    return " · ".join(parts)


def png_base64(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


class Component(anywidget.AnyWidget):
    """Base of every component: a shared head selection and a static picture."""

    selected = t.List(t.Unicode()).tag(sync=True)
    caption = t.Unicode("").tag(sync=True)  # what the numbers are (ablation, units, prompts), shown under the view

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
