"""Capability knockout: ablate the primaries plus each selector's top-k heads and compare
with the oracle knockout (primaries + the documented backups)."""
from __future__ import annotations

import random
from typing import Optional

import numpy as np

from ..engine import Variant, as_engine
from ..metrics import kl_divergence
from ..results import Curves, Knockout
from ..tasks import Task, check_count
from ..units import all_units
from ..validate import RANDOM_SETS
from ..variant import ablation_action
from .common import metric_of, prompt_accuracy

SIGNAL_LABELS = {"metric": "behaviour metric", "accuracy": "task accuracy",
                 "distance_to_oracle": "distance to oracle", "kl_unrelated": "KL on unrelated text"}
SIGNAL_UNITS = {"metric": "metric (task-metric units)", "accuracy": "accuracy (share of prompts)",
                "distance_to_oracle": "|metric - oracle's| (task-metric units)", "kl_unrelated": "KL (nats)"}


def knockout(
    model_or_engine,
    task: Optional[Task],
    primaries,
    rankings: dict,
    oracle,
    *,
    K: Optional[int] = None,
    unrelated=None,
    n_random: int = 8,
    rng_seed: int = 0,
    ablation: str = "zero",
) -> Knockout:
    """Ablate the primaries plus the top-k heads of each ranking, k = 0..K.

    ``rankings``: selector name -> ordered heads (e.g. ``{"CoAx": [u for u, _ in
    scores.top(10)], "first-order": [u for u, _ in scores.top(10, by="single")]}``);
    ``oracle``: the documented backups (the oracle knockout ablates primaries + all of
    them); a matched-random selector (mean over ``n_random`` draws) is added.
    ``unrelated``: prompts (token lists or a Task) of unrelated text; the KL(clean ||
    knocked-out) of their next-token distribution at the last position measures collateral
    damage. Distance to the oracle = |metric(knockout) - metric(oracle knockout)|.

    Heads are knocked out the way ``ablation`` says (``"zero"``, ``"mean"`` or
    ``"resample"``, as in :func:`coax_nb.coax_scan`); on the unrelated prompts, ``"mean"``
    is their own clean mean and ``"resample"`` needs their paired corrupted prompts (a
    Task with ``corrupted=``).
    """
    ablation_action(ablation)
    if ablation == "resample" and unrelated is not None and getattr(unrelated, "corrupted", None) is None:
        raise ValueError("knockout with ablation='resample' and unrelated prompts takes the knocked-out heads' "
                         "outputs on the unrelated prompts from paired corrupted ones, and these have none: pass "
                         "unrelated as a Task with corrupted=[...] (custom_task(..., corrupted_texts=[...])), or "
                         "leave unrelated=None")
    n_random = check_count(n_random, "n_random", why=RANDOM_SETS)
    engine = as_engine(model_or_engine, task, progress=False)
    P, O = engine.units(primaries), engine.units(oracle)
    if not P:
        raise ValueError("the primary set is empty")
    if not O:
        raise ValueError("the oracle (documented backup) set is empty")
    both = [str(u) for u in O if u in P]
    if both:
        raise ValueError(f"oracle heads {both} are primaries; the oracle is the backups ablated on top of the "
                         "primaries: leave the primaries out of it")
    if not isinstance(rankings, dict):
        raise TypeError(f"rankings must be a dict of selector name -> ordered heads, e.g. {{'CoAx': top_heads}}, "
                        f"got {type(rankings).__name__}")
    if not rankings:
        raise ValueError("rankings is empty; give at least one selector's ranking, e.g. {'CoAx': top_heads}")
    ranks = {name: [u for u in engine.units(r) if u not in P] for name, r in rankings.items()}
    K = check_count(K, "K", why="heads added to the primaries") if K is not None else len(O)
    short = [n for n, r in ranks.items() if len(r) < K]
    if short:
        raise ValueError(f"rankings {short} have fewer than K={K} heads outside the primaries")
    pool = [u for u in all_units(engine.n_layers, engine.n_heads) if u not in P]
    rng = random.Random(rng_seed)
    draws = [rng.sample(pool, K) for _ in range(n_random)]
    selectors = dict(ranks, **{f"random #{i}": d for i, d in enumerate(draws)})
    variants = {(name, k): Variant.ablate(P + r[:k], ablation) for name, r in selectors.items()
                for k in range(K + 1)}
    oracle_v = Variant.ablate(P + O, ablation)
    order = [oracle_v] + list(variants.values())
    unique = list(dict.fromkeys(order))  # k = 0 is the same variant for every selector: run it once
    at = [unique.index(v) for v in order]
    logits = engine.logits(unique)
    metric = np.array([float(metric_of(engine.task, logits[j]).mean()) for j in at])
    acc = np.array([float(prompt_accuracy(engine.task, logits[j]).mean()) for j in at])
    kl = np.full(len(order), np.nan)
    if unrelated is not None:
        if isinstance(unrelated, str) or (isinstance(unrelated, (list, tuple)) and unrelated
                                          and isinstance(unrelated[0], str)):
            raise TypeError("unrelated takes prompts as token ids (a Task or lists of ids), not text; build them "
                            "with custom_task(model, texts, position_mode='last')")
        u_engine = as_engine(engine.model, unrelated, position_mode="last", progress=False)
        clean = u_engine.clean_logits()
        per = [float(np.mean([kl_divergence(c[-1], x[-1]).item() for c, x in zip(clean, lg)]))
               for lg in u_engine.logits(unique)]
        kl = np.array([per[j] for j in at])
    rows = []
    for i, (name, k) in enumerate(variants, start=1):
        rows.append({"selector": name, "k": k, "accuracy": float(acc[i]), "metric": float(metric[i]),
                     "distance_to_oracle": float(abs(metric[i] - metric[0])), "kl_unrelated": float(kl[i])})
    ks = list(range(K + 1))
    curves = {}
    for sig in ("metric", "accuracy", "distance_to_oracle") + (("kl_unrelated",) if unrelated is not None else ()):
        c = Curves(f"Knockout: {SIGNAL_LABELS[sig]}", "k heads added to the primaries", SIGNAL_UNITS[sig],
                   meta={"ablation": ablation, "n_prompts": engine.n_prompts,
                         "about": f"oracle: the primaries and the true backups; {n_random} matched random sets"})
        for name in ranks:
            c.add(name, ks, [next(r[sig] for r in rows if r["selector"] == name and r["k"] == k) for k in ks])
        rnd = [[next(r[sig] for r in rows if r["selector"] == f"random #{i}" and r["k"] == k) for k in ks]
               for i in range(n_random)]
        c.add_band(f"matched random (n={n_random})", ks, rnd)
        curves[sig] = c
    meta = {"K": K, "oracle_metric": float(metric[0]), "oracle_accuracy": float(acc[0]),
            "oracle_kl_unrelated": None if np.isnan(kl[0]) else float(kl[0]), "n_random": n_random,
            "ablation": ablation}
    return Knockout(rows, curves, P, O, meta)
