"""Interactive anywidget components, driven by the kernel-side scores.

- :class:`HeadMap`: layer x head grid of any per-head score; clicking a head toggles it
  in the primaries and, when bound to a scorer (:meth:`HeadMap.live`), the kernel
  recomputes the scores and the map updates (with a busy indicator).
- :class:`BlindSpot`: first-order vs CoAx percentile scatter (the paper's teaser).
- :class:`SynergyGrid`: pairwise synergy matrix with group blocks and reordering.
- :class:`Curves`: multi-series line chart (wake-up, knockout, pruning), log-y, legend
  toggles, hover readout, live :meth:`Curves.append`.
- :class:`RankingTable`: sortable per-head table.
- :class:`SensitivityExplorer`: a slider over k (or ACDC's tau) through the choices of the
  primary set of a ``p_sensitivity`` result, with the live count of selected heads and the
  re-scored ranking.

One module per component; each sets ``_esm`` / ``_css`` to files of ``static/`` (built
from the top-level ``widgets/`` sources by ``widgets/build.py``; nothing is fetched from a
CDN). Every component has ``selected`` (head names) as a synced traitlet, shared by
:func:`link`, and ``figure()`` (drawn by :mod:`coax_nb.plots`, the same picture as the
page), whose PNG is in its mime bundle for nbconvert, GitHub and papermill reports.

:func:`to_html` (or ``component.to_html(path)``) writes one or several components to a
self-contained offline HTML page that runs without a kernel, their selection shared.
"""
from .base import STATIC, Component, link
from .blindspot import BlindSpot
from .curves import Curves
from .export import page_html, to_html
from .pages import result_page
from .headmap import HeadMap
from .ranking import RankingTable
from .sensitivity import SensitivityExplorer
from .synergy import SynergyGrid

COMPONENTS = (HeadMap, BlindSpot, SynergyGrid, Curves, RankingTable, SensitivityExplorer)

__all__ = ["BlindSpot", "COMPONENTS", "Component", "Curves", "HeadMap", "RankingTable", "STATIC",
           "SensitivityExplorer", "SynergyGrid", "link", "page_html", "result_page", "to_html"]
