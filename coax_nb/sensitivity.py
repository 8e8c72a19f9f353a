"""P-sensitivity: how the backup ranking moves with the choice of the primary set S
(docs/robustness.md).

:func:`p_sensitivity` builds S several ways -- each discovery method of
:func:`~coax_nb.discover_primaries` at several sizes ``k``, ACDC at several thresholds
``tau``, and any set given by hand (the organism card's, say) -- runs one CoAx scan per
distinct S, and compares the rankings: Spearman rank correlation over the heads outside
both sets, and the overlap of their top-``top`` lists. With ``truth`` each choice also
gets its recovery ROC-AUC (truth heads that fell inside S are not ranked, and counted).
The answer is a :class:`~coax_nb.results.Sensitivity` (table, figure, JSON); the
:class:`~coax_nb.widgets.SensitivityExplorer` puts a slider over ``k`` or ``tau``.

>>> from coax_nb import load_model, p_sensitivity
>>> from coax_nb.organisms import task_for
>>> s = p_sensitivity(load_model("organism:handwired"), task_for("handwired", 16), methods=["atp"], ks=[1, 2],
...                   sets={"card": ["L1H0", "L1H1"]}, truth=["L2H0", "L2H1"], progress=False)
>>> s.labels, s.auc("card")
(['card', 'atp k=1', 'atp k=2'], 1.0)
"""
from __future__ import annotations

import time
from typing import Optional, Sequence

import numpy as np

from .discover import METHODS as DISCOVERY_METHODS
from .discover import discover_primaries
from .engine import as_engine, check_primaries
from .evaluate import rank_agreement, roc_auc
from .results import Sensitivity
from .scores import coax_scan
from .tasks import check_choices, check_count

__all__ = ["p_sensitivity"]

RANKED_BY = ("comp", "ratio", "conditional", "coupling", "wakeup")


def _check_values(values, name: str, kind: str) -> list:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a list of {kind}, got {values!r}")
    return list(values)


def p_sensitivity(
    model_or_engine,
    task=None,
    *,
    methods: Sequence[str] = DISCOVERY_METHODS,
    ks: Sequence[int] = (1, 2, 3, 4, 5),
    taus: Optional[Sequence[float]] = None,
    sets: Optional[dict] = None,
    reference: Optional[str] = None,
    truth=None,
    by: str = "comp",
    top: int = 5,
    ablation: str = "zero",
    position_mode: Optional[str] = None,
    progress: bool = True,
) -> Sensitivity:
    """Score the heads under several choices of the primary set S and compare the rankings.

    ``methods`` (discovery methods: ``"single"``, ``"atp"``, ``"role"``, ``"acdc"``) are
    each run once; S is their top-``k`` heads for every ``k`` in ``ks`` (ACDC: the top-``k``
    of its circuit). ``taus`` adds ACDC's whole kept circuit at each threshold (in the task
    metric's units). ``sets`` adds named sets given by hand, e.g.
    ``{"card": ["L1H0", "L1H1"]}``. The ``reference`` choice (default: the first hand-given
    one, else the first discovered) is what every other ranking is compared with; ``by``
    the score ranked (default ``comp``); ``top`` the length of the compared top lists.
    ``truth``: known backups; each choice then gets its recovery ROC-AUC over the heads
    outside its S.

    Costs one discovery per method (and per ``tau``) plus one CoAx scan per distinct S.
    """
    methods = check_choices(methods, "methods", DISCOVERY_METHODS, "discovery method") if methods else []
    ks = sorted({check_count(k, "each of ks") for k in _check_values(ks, "ks", "sizes")})
    taus = [float(t) for t in _check_values(taus, "taus", "thresholds")] if taus is not None else []
    bad = [t for t in taus if not (np.isfinite(t) and t > 0)]
    if bad:
        raise ValueError(f"each of taus must be a positive number (ACDC's threshold in the task metric's units), "
                         f"got {bad[0]!r}")
    if by not in RANKED_BY:
        raise ValueError(f"by={by!r} is not a conditional score; choose one of {', '.join(RANKED_BY)}")
    top = check_count(top, "top", why="the length of the compared top lists")
    if sets is not None and not isinstance(sets, dict):
        raise TypeError(f"sets must be a dict of name -> primary heads, e.g. {{'card': ['L1H0', 'L1H1']}}; got "
                        f"{type(sets).__name__}")
    if not methods and not taus and not sets:
        raise ValueError("nothing to compare: give discovery methods, taus, or sets={name: heads}")
    engine = as_engine(model_or_engine, task, position_mode=position_mode, progress=progress)
    L, H = engine.n_layers, engine.n_heads
    truth_units = engine.units(truth) if truth is not None else []
    if truth is not None and not truth_units:
        raise ValueError("truth is empty; pass the known backups, or leave truth=None")
    t0 = time.perf_counter()
    picked: list[dict] = []
    for label, heads in (sets or {}).items():
        if not isinstance(label, str) or not label:
            raise TypeError(f"a choice's name must be a non-empty string, got {label!r}")
        prim = check_primaries(engine, heads)
        picked.append({"label": label, "method": "given", "sweep": None, "k": len(prim), "tau": None,
                       "primaries": prim, "source": "given by hand"})
    for method in methods:
        d = discover_primaries(engine, method=method, k=max(ks), progress=progress)
        for k in ks:
            if k > len(d.primaries):
                break  # fewer heads have evidence than k: larger k would repeat the last set
            picked.append({"label": f"{method} k={k}", "method": method, "sweep": "k", "k": k, "tau": d.meta.get("tau"),
                           "primaries": list(d.primaries[:k]), "source": d.source})
    for tau in taus:
        try:
            d = discover_primaries(engine, method="acdc", k=None, tau=tau, progress=progress)
        except ValueError as e:  # every head pruned, or none: this tau gives no S
            picked.append({"label": f"acdc tau={tau:g}", "method": "acdc", "sweep": "tau", "k": 0, "tau": tau,
                           "primaries": [],
                           "source": f"none: {e}"})
            continue
        picked.append({"label": f"acdc tau={tau:g}", "method": "acdc", "sweep": "tau", "k": len(d.primaries), "tau": tau,
                       "primaries": list(d.primaries), "source": d.source})
    labels = [c["label"] for c in picked]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ValueError(f"two choices share the name {dup[0]!r}; name each hand-given set differently")
    if reference is None:
        reference = labels[0]
    elif reference not in labels:
        raise ValueError(f"reference {reference!r} is not one of the choices: {', '.join(labels)}")
    scans: dict[tuple, np.ndarray] = {}
    for c in picked:
        key = tuple(sorted(c["primaries"]))
        if key and key not in scans:
            s = coax_scan(engine, primaries=c["primaries"], ablation=ablation, progress=progress)
            scans[key] = s[by]
        c["scores"] = scans[key] if key else np.full(L * H, np.nan)
        c["n_selected"] = len(c["primaries"])
        c["auc"], c["truth_in_S"] = _auc(c["scores"], truth_units, c["primaries"], H)
    n = len(picked)
    rho, overlap = np.full((n, n), np.nan), np.full((n, n), np.nan)
    for i in range(n):
        for j in range(n):
            rho[i, j], overlap[i, j] = rank_agreement(picked[i]["scores"], picked[j]["scores"], top)
    rows = [{"label": c["label"], "method": c["method"], "sweep": c["sweep"], "k": c["k"], "tau": c["tau"],
             "primaries": [str(u) for u in c["primaries"]], "source": c["source"], "n_selected": c["n_selected"],
             "scores": c["scores"], "auc": c["auc"], "truth_in_S": c["truth_in_S"]} for c in picked]
    meta = {"ablation": ablation, "n_prompts": engine.n_prompts, "scans": len(scans),
            "model": getattr(engine.model, "coax_source", None),
            "task": engine.task.name if engine.task is not None else None,
            "wall_seconds": round(time.perf_counter() - t0, 3)}
    return Sensitivity(L, H, rows, by, reference, [str(u) for u in truth_units], rho, overlap, top, meta)


def _auc(scores: np.ndarray, truth: list, prim: list, H: int) -> tuple[Optional[float], int]:
    """Recovery ROC-AUC of ``scores`` over the heads outside S (None without truth, or
    when S swallowed every truth head or every other head)."""
    inside = sum(1 for u in truth if u in prim)
    if not truth or not prim:
        return None, inside
    keep = np.isfinite(scores)
    labels = np.zeros(len(scores), bool)
    labels[[u.flat(H) for u in truth if not u.is_mlp]] = True
    labels = labels[keep]
    if labels.all() or not labels.any():
        return None, inside
    return roc_auc(scores[keep], labels), inside
