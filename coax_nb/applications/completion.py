"""Circuit completion: how completely a kept circuit reproduces the whole model's
response to the primaries' removal, self-repair included."""
from __future__ import annotations

import random
from typing import Optional

import numpy as np

from ..engine import CLEAN, Variant, as_engine
from ..results import CircuitCompletion
from ..tasks import Task, check_count
from ..units import all_units
from ..validate import RANDOM_SETS
from ..variant import ablation_action
from .common import metric_of, variant_means


def circuit_completion(model_or_engine, task: Optional[Task], primaries, base, completions: dict, *,
                       n_random: int = 8, rng_seed: int = 0, ablation: str = "zero") -> CircuitCompletion:
    """Keep a circuit C (every head outside C mean-ablated) and compare its response to
    removing the primaries with the full model's.

    Circuits: ``base`` (the circuit as documented without backups; the primaries are
    always included), and ``base + extra`` for every ``completions`` entry (e.g.
    ``{"CoAx": top_k, "documented backups": truth}``), plus a matched-random completion
    (``base`` + as many random heads from outside it as the largest completion; mean
    over ``n_random`` draws). With ``r(C) = m(C kept) - m(C kept, primaries ablated)``
    and ``r_full = m(clean) - m(primaries ablated)``:

        incompleteness(C) = |r(C) - r_full| / |m(clean)|

    0 means the kept circuit responds to the primaries' removal exactly as the whole
    model does, self-repair included (the clean metric is the scale, so a model that
    repairs completely, r_full = 0, is still well defined).

    The primaries are removed the way ``ablation`` says (``"zero"``, ``"mean"`` or
    ``"resample"``); keeping a circuit stays a mean ablation of everything outside it.
    """
    ablation_action(ablation)
    n_random = check_count(n_random, "n_random", why=RANDOM_SETS)
    engine = as_engine(model_or_engine, task, progress=False)
    P = engine.units(primaries)
    if not P:
        raise ValueError("the primary set is empty")
    if not isinstance(completions, dict):
        raise TypeError(f"completions must be a dict of name -> extra heads, e.g. {{'CoAx': top_heads}}, got "
                        f"{type(completions).__name__}")
    every = all_units(engine.n_layers, engine.n_heads)
    core = sorted(set(engine.units(base)) | set(P))
    sets = {"base": core}
    for name, extra in completions.items():
        sets[name] = sorted(set(core) | set(engine.units(extra)))
    k = max([len(s) - len(core) for s in sets.values()] + [1])
    outside = [u for u in every if u not in core]
    if k > len(outside):
        raise ValueError("the completions are larger than the heads outside the base circuit")
    rng = random.Random(rng_seed)
    randoms = [sorted(set(core) | set(rng.sample(outside, k))) for _ in range(n_random)]
    all_sets = list(sets.values()) + randoms
    removed = Variant.ablate(P, ablation)
    variants = [CLEAN, removed]
    for C in all_sets:
        comp = [u for u in every if u not in C]
        keep = Variant.mean(comp) if comp else CLEAN
        variants += [keep, keep | removed]
    m = variant_means(engine, variants, metric_of)
    r_full = m[0] - m[1]
    scale = abs(m[0])
    if scale < 1e-9:
        raise ValueError("the clean metric is 0, so incompleteness has no scale")
    resp = [m[2 + 2 * i] - m[3 + 2 * i] for i in range(len(all_sets))]
    inc = {name: float(abs(resp[i] - r_full) / scale) for i, name in enumerate(sets)}
    rand_inc = [abs(r - r_full) / scale for r in resp[len(sets):]]
    inc[f"matched random (n={n_random})"] = float(np.mean(rand_inc))
    responses = {name: float(resp[i]) for i, name in enumerate(sets)}
    return CircuitCompletion(inc, responses, float(r_full), P,
                             {"random_incompleteness": [float(x) for x in rand_inc], "random_size": k,
                              "circuits": {n: [str(u) for u in c] for n, c in sets.items()}, "ablation": ablation})
