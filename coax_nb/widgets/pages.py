"""Kernel-free pages of saved results: which components show a result (a scan: head map,
blind spot and ranking, linked; a pair matrix: the synergy grid; ...) and the page that
:func:`coax_nb.widgets.export.to_html` writes of them (``coax-nb page``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

from .export import to_html


def result_components(result, truth: Optional[Sequence] = None, repeat: int = 0) -> tuple[list, list, str]:
    """The components that show a saved result, their captions and a line about it.

    UnitScores: HeadMap + BlindSpot (when it has single and comp) + RankingTable;
    RecoveryResult: the same for one repeat's scores, with its truth; PairScores:
    SynergyGrid; Sensitivity: SensitivityExplorer; Curves, or a result with curves
    (WakeUp, Knockout, Pruning): one Curves per panel. ``truth``: ground-truth heads
    (default: the result's own, or the organism card's backups when the result names an
    organism)."""
    from .. import results as R
    from .blindspot import BlindSpot
    from .curves import Curves
    from .headmap import HeadMap
    from .ranking import RankingTable
    from .sensitivity import SensitivityExplorer
    from .synergy import SynergyGrid

    if isinstance(result, R.RecoveryResult):
        if not result.scores:
            raise ValueError("this RecoveryResult holds no per-head scores to draw")
        if not 0 <= repeat < len(result.scores):
            raise ValueError(f"repeat {repeat} is outside the result's {len(result.scores)} repeats "
                             f"(0..{len(result.scores) - 1})")
        truth = [str(u) for u in result.truth] if truth is None else truth
        comps, caps, about = result_components(result.scores[repeat], truth)
        return comps, caps, f"Backup recovery, the scores of repeat {repeat + 1} of {len(result.scores)}. " + about
    if isinstance(result, R.UnitScores):
        if truth is None:
            truth = _organism_truth(result.meta.get("model"))
        score = "comp" if "comp" in result.scores else next(iter(result.scores))
        comps = [HeadMap(result, score=score, truth=truth)]
        caps = ["Head map"]
        if "single" in result.scores and "comp" in result.scores:
            comps.append(BlindSpot(result, truth=truth))
            caps.append("Blind spot: single ablation vs CoAx")
        comps.append(RankingTable(result, truth=truth))
        caps.append("Ranking")
        meta = result.meta
        parts = [f"{meta['model']}" if meta.get("model") else "",
                 f"task {meta['task']}" if meta.get("task") else "",
                 f"{meta['n_prompts']} prompts" if meta.get("n_prompts") else "",
                 "primaries " + (", ".join(map(str, result.primaries)) or "none"),
                 f"ground truth {', '.join(map(str, truth))}" if truth else ""]
        return comps, caps, "Scan: " + "; ".join(p for p in parts if p) + "."
    if isinstance(result, R.PairScores):
        return [SynergyGrid(result)], ["Pair scores"], ""
    if isinstance(result, R.Sensitivity):
        return [SensitivityExplorer(result)], ["Sensitivity to the choice of the primaries"], ""
    if isinstance(result, R.Curves):
        return [Curves(result)], [result.title or "Curves"], ""
    curves = getattr(result, "curves", None)
    if callable(curves):
        curves = {"": curves()}
    if isinstance(curves, dict) and curves and all(isinstance(c, R.Curves) for c in curves.values()):
        return ([Curves(c) for c in curves.values()], [c.title or name or "Curves" for name, c in curves.items()],
                type(result).__name__ + ".")
    raise ValueError(f"no interactive page for a {type(result).__name__}; coax-nb page draws UnitScores (a scan), "
                     "RecoveryResult, PairScores, Sensitivity, Curves and results with curves (WakeUp, Knockout, "
                     "Pruning)")


def _organism_truth(model) -> list:
    from ..organisms import card, organism_name

    try:
        name = organism_name(model) if isinstance(model, str) else None
        return [f"L{layer}H{head}" for layer, head in card(name)["backups"]] if name else []
    except (ValueError, KeyError, OSError):
        return []


def result_page(result, path: os.PathLike, title: Optional[str] = None, truth: Optional[Sequence] = None,
                repeat: int = 0) -> Path:
    """Write the kernel-free page of a saved result (see :func:`result_components`)."""
    comps, caps, about = result_components(result, truth=truth, repeat=repeat)
    model = getattr(result, "meta", {}).get("model") if isinstance(getattr(result, "meta", None), dict) else None
    default = f"coax-nb: {type(result).__name__}" + (f" of {model}" if model else "")
    return to_html(comps, path, title or default, captions=caps, about=about)
