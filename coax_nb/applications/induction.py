"""Label-free induction pipeline: find primaries, complete them with CoAx and test the
completion on held-out prompts, each step on its own split of repeated random tokens."""
from __future__ import annotations

import random

import numpy as np

from ..engine import CLEAN, Engine, Variant
from ..results import InductionTransfer
from ..scores import coax_scan, single_scan
from ..tasks import Task, check_count, induction_task
from ..units import all_units
from ..validate import RANDOM_SETS
from ..variant import ablation_action
from .common import metric_of, variant_means


def induction_transfer(model, n_primaries: int = 2, k: int = 2, *, n_prompts: int = 32, half_length: int = 10,
                       n_random: int = 8, rng_seed: int = 0, token_range=None,
                       ablation: str = "zero") -> InductionTransfer:
    """Label-free induction pipeline on three disjoint splits of repeated random tokens
    (prompt seeds ``rng_seed``, ``+1``, ``+2``): primaries = the top single-ablation heads
    on the detection split; CoAx completion (top ``k`` by comp given the primaries) on the
    calibration split; on the evaluation split, the drop of the answer log-prob when
    primaries + completion are ablated, vs primaries + ``k`` random heads (``n_random``
    draws). Every step removes heads the way ``ablation`` says (``"zero"``, ``"mean"`` or
    ``"resample"``: from each split's own paired corrupted prompts, first half redrawn)."""
    ablation_action(ablation)
    n_random = check_count(n_random, "n_random", why=RANDOM_SETS)
    n_primaries = check_count(n_primaries, "n_primaries", why="top single-ablation heads taken as primaries")
    k = check_count(k, "k", why="heads of the CoAx completion")
    if isinstance(model, (Engine, Task)):
        raise TypeError(f"induction_transfer takes the model (it draws its own induction prompts), got "
                        f"{type(model).__name__}{'; pass engine.model' if isinstance(model, Engine) else ''}")
    splits = [induction_task(model, n_prompts, half_length, prompt_seed=s, token_range=token_range)
              for s in (rng_seed, rng_seed + 1, rng_seed + 2)]
    seen = [set(map(tuple, t.prompts)) for t in splits]
    if seen[0] & seen[2] or seen[1] & seen[2]:
        raise RuntimeError("induction splits overlap; raise n_prompts' token range")
    det = single_scan(Engine(model, splits[0], progress=False), ablation=ablation, progress=False)
    U = det.n_layers * det.n_heads
    if n_primaries + k >= U:
        raise ValueError(f"n_primaries + k must be below the {U} heads of the model")
    prim = [det.units[i] for i in np.argsort(-det["single"], kind="stable")[:n_primaries]]
    cal = coax_scan(Engine(model, splits[1], progress=False), primaries=prim, ablation=ablation, progress=False)
    completion = [u for u, _ in cal.top(k)]
    ev = Engine(model, splits[2], progress=False)
    rng = random.Random(rng_seed)
    pool = [u for u in all_units(det.n_layers, det.n_heads) if u not in prim]
    draws = [rng.sample(pool, k) for _ in range(n_random)]
    m = variant_means(ev, [CLEAN, Variant.ablate(prim, ablation), Variant.ablate(prim + completion, ablation)]
                      + [Variant.ablate(prim + d, ablation) for d in draws], metric_of)
    return InductionTransfer(prim, completion, float(m[0] - m[2]), float(m[0] - m[1]),
                             [float(m[0] - x) for x in m[3:]],
                             {"splits": [0, 1, 2], "n_prompts": n_prompts,
                              "random_sets": [[str(u) for u in d] for d in draws], "ablation": ablation})
