"""SensitivityExplorer: a slider over k (or ACDC's tau) through the choices of the primary
set S of a :class:`~coax_nb.results.Sensitivity`, with S, its size and the ranking
re-scored under S; the page needs no kernel to move (every choice's scores are in the state)."""
from __future__ import annotations

from typing import Optional

import numpy as np
import traitlets as t

from ..results import Sensitivity
from ..units import Unit
from .base import STATIC, Component, check_result, float_values, json_values, meta_caption

# the family of ACDC's whole circuits at several thresholds (p_sensitivity(taus=...))
TAU_GROUP = "acdc tau"


def choice_groups(sets: list) -> dict[str, list[int]]:
    """The families of choices a slider walks, name -> choice indices in slider order:
    each discovery method by ``k``, ACDC's thresholds (``"acdc tau"``) by ``tau``, and the
    hand-given sets (``"given"``) as given. Every choice is in exactly one family."""
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(sets):
        name = TAU_GROUP if c.get("sweep") == "tau" else c["method"]
        groups.setdefault(name, []).append(i)
    for name, ids in groups.items():
        if name == TAU_GROUP:
            ids.sort(key=lambda i: sets[i]["tau"])
        elif name != "given":
            ids.sort(key=lambda i: sets[i]["k"])
    return groups


class SensitivityExplorer(Component):
    """A slider over one family of choices of S (``group``: a discovery method such as
    ``"atp"`` walked by ``k``, ``"acdc tau"`` walked by ACDC's threshold, or ``"given"``),
    showing S, how many heads it selects, and the top ``rows`` heads re-scored under it
    (ground truth marked ○), with its Spearman rho and top-``top`` overlap against the
    reference choice and its ROC-AUC. ``index`` is the current choice among all of
    ``result.sets``; ``selected`` follows its S, so :func:`link` with a HeadMap
    highlights it. Moving the slider needs no kernel."""

    kind = "sensitivity"  # its bundle, static/sensitivity.js
    picture_traits = ("choices", "group", "index", "reference_index", "by", "top", "rows", "truth")

    _esm = STATIC / "sensitivity.js"
    _css = STATIC / "sensitivity.css"
    choices = t.List(t.Dict()).tag(sync=True)
    groups = t.Dict().tag(sync=True)
    group = t.Unicode().tag(sync=True)
    index = t.Int(0).tag(sync=True)
    reference_index = t.Int(0).tag(sync=True)
    rho_to_reference = t.List().tag(sync=True)
    overlap_to_reference = t.List().tag(sync=True)
    top = t.Int(5).tag(sync=True)
    truth = t.List(t.Unicode()).tag(sync=True)
    n_layers = t.Int().tag(sync=True)
    n_heads = t.Int().tag(sync=True)
    by = t.Unicode("comp").tag(sync=True)
    rows = t.Int(10).tag(sync=True)

    def __init__(self, result, group: Optional[str] = None, rows: int = 10, **kwargs):
        """``group``: the family the slider walks (default: the first discovery method
        with more than one choice); ``rows``: how many ranked heads to show."""
        check_result(result, Sensitivity, "SensitivityExplorer", "choices of the primary set, e.g. p_sensitivity(...)")
        if not result.sets:
            raise ValueError("this Sensitivity has no choices of S to explore")
        groups = choice_groups(result.sets)
        if group is None:
            found = [g for g in groups if g != "given"] or list(groups)
            group = next((g for g in found if len(groups[g]) > 1), found[0])
        elif group not in groups:
            raise ValueError(_unknown_group(group, groups))
        ref = result.labels.index(result.reference)
        choices = [{"label": c["label"], "method": c["method"], "k": int(c["k"]),
                    "tau": None if c["tau"] is None else float(c["tau"]),
                    "primaries": [str(p) for p in c["primaries"]], "n_selected": int(c["n_selected"]),
                    "scores": json_values(c["scores"]),
                    "auc": None if c["auc"] is None or not np.isfinite(c["auc"]) else float(c["auc"]),
                    "truth_in_S": int(c["truth_in_S"]), "source": str(c["source"])} for c in result.sets]
        index = groups[group][0]
        super().__init__(choices=choices, groups=groups, group=group, index=index, reference_index=ref,
                         rho_to_reference=json_values(np.asarray(result.rho, float)[:, ref]),
                         overlap_to_reference=json_values(np.asarray(result.overlap, float)[:, ref]),
                         top=int(result.top), truth=[str(u) for u in result.truth], n_layers=result.n_layers,
                         n_heads=result.n_heads, by=result.by, rows=rows,
                         selected=list(choices[index]["primaries"]),
                         caption=sensitivity_caption(result), **kwargs)
        self.result = result

    @t.validate("group")
    def _check_group(self, proposal):
        if proposal["value"] not in self.groups:
            raise ValueError(_unknown_group(proposal["value"], self.groups))
        return proposal["value"]

    @t.validate("index")
    def _check_index(self, proposal):
        i, n = proposal["value"], len(self.choices)
        if not 0 <= i < n:
            raise ValueError(f"index {i} is outside the {n} choices of S (0..{n - 1}); to pick one by name use "
                             f"choose(label) with one of: {', '.join(self.labels)}")
        return i

    @t.validate("rows")
    def _check_rows(self, proposal):
        rows = proposal["value"]
        if rows < 1:
            raise ValueError(f"rows must be >= 1 (how many ranked heads to show), got {rows}")
        return rows

    @t.observe("index")
    def _follow_index(self, change):
        i = change["new"]
        if i not in self.groups.get(self.group, []):
            self.group = next(g for g, ids in self.groups.items() if i in ids)
        self.selected = list(self.choices[i]["primaries"])

    @t.observe("group")
    def _follow_group(self, change):
        ids = self.groups[change["new"]]
        if self.index not in ids:
            self.index = ids[0]

    @property
    def labels(self) -> list[str]:
        return [c["label"] for c in self.choices]

    @property
    def label(self) -> str:
        """The current choice's label, e.g. ``"atp k=2"``."""
        return self.choices[self.index]["label"]

    def choose(self, label: str) -> "SensitivityExplorer":
        """Show the choice named ``label`` (its family becomes the slider's)."""
        if label not in self.labels:
            raise ValueError(f"no choice {label!r}; have {', '.join(self.labels)}")
        self.index = self.labels.index(label)
        return self

    def ranking(self) -> list[tuple[str, float]]:
        """The current choice's top ``rows`` heads outside S and their scores, as the page
        lists them (ties in head order)."""
        scores = float_values(self.choices[self.index]["scores"])
        ids = sorted(np.flatnonzero(np.isfinite(scores)), key=lambda i: (-scores[i], i))[: self.rows]
        return [(str(Unit.from_flat(int(i), self.n_heads)), float(scores[i])) for i in ids]

    def agreement(self) -> str:
        """The current choice's agreement with the reference and its ROC-AUC, worded as in the page
        (numbers to 3 significant digits)."""
        c, ref = self.choices[self.index], self.reference_index
        if self.index == ref:
            parts = [f"this is the reference choice ({c['label']})"]
        else:
            rho, overlap = self.rho_to_reference[self.index], self.overlap_to_reference[self.index]
            parts = [f"vs reference {self.choices[ref]['label']}: Spearman rho {_num(rho)}",
                     f"top-{self.top} overlap {_num(overlap)}"]
        inside = c["truth_in_S"]
        if c["auc"] is not None:
            parts.append(f"ROC-AUC {_num(c['auc'])} against {len(self.truth)} truth heads"
                         + (f" ({inside} inside S, not ranked)" if inside else ""))
        elif self.truth:
            parts.append("no ROC-AUC for this choice" + (f" ({inside} truth heads inside S)" if inside else ""))
        return " · ".join(parts)

    def figure(self):
        from ..plots import sensitivity_ranking

        c = self.choices[self.index]
        ranked = self.ranking()
        return sensitivity_ranking([h for h, _ in ranked], [v for _, v in ranked], self.by,
                                   primaries=c["primaries"], truth=self.truth, label=c["label"],
                                   note=self.agreement())


def sensitivity_caption(result) -> str:
    """What the bars are: each choice of S scanned with the same ablation and prompts."""
    meta = result.meta or {}
    unit = "without units" if result.by in ("ratio", "wakeup", "coact") else "in Fisher energy"
    scans = f"{meta['scans']} scans, one per choice of S" if meta.get("scans") else ""
    return " · ".join(meta_caption(meta, f"bars: {result.by} ({unit})") + ([scans] if scans else []))


def _num(v) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:.3g}"


def _unknown_group(group, groups) -> str:
    return (f"no family of choices {group!r}; this Sensitivity has {', '.join(groups)} (a discovery method walks "
            f"k, {TAU_GROUP!r} walks ACDC's thresholds, 'given' the sets given by hand)")


__all__ = ["SensitivityExplorer", "choice_groups"]
