"""Causal validation of a selected head set (method.md §5): graded wake-up, DLA
hand-off, causal freezing and counterfactual patching. Each is one call, runs
through the engine's batched variants, compares with size-matched random head sets,
and returns a result from :mod:`coax_nb.results` (``plot()``, ``to_frame()``, JSON).
``ablation=`` says how heads are removed (``"zero"``, the default; ``"mean"``;
``"resample"``, as in :func:`coax_nb.coax_scan`) and is recorded in each result's meta;
freezing and patching stay what they are, only the primaries' removal follows it.

>>> from coax_nb import load_model
>>> from coax_nb.organisms import task_for
>>> model = load_model("organism:handwired")
>>> f = freezing(model, task_for("organism:handwired", 16), ["L1H0", "L1H1"], ["L2H0", "L2H1"], n_random=4)
>>> round(f.removed, 2), round(max(f.random_removed), 2)
(1.0, 0.0)
"""
from __future__ import annotations

import dataclasses
import random
from typing import Optional, Sequence

import numpy as np

from .compat import renamed
from .dla import head_dla
from .engine import Engine, Variant, as_engine
from .results import Curves, Freezing, HandOff, Patching, WakeUp
from .tasks import Task, check_count
from .units import Unit, all_units
from .variant import ablation_action

RANDOM_SETS = "the selection is compared with that many size-matched random head sets"


def _sets(engine: Engine, primaries, selected):
    P = engine.units(primaries)
    X = engine.units(selected)
    if not P:
        raise ValueError("the primary set is empty; pass the heads whose removal triggers the repair")
    if not X:
        raise ValueError("the selected set is empty; pass the heads to validate (e.g. CoAx's top heads)")
    both = [str(u) for u in X if u in P]
    if both:
        raise ValueError(f"heads {both} are both primaries and selected; a head cannot be ablated and tested at once")
    return P, X


@renamed(seed="rng_seed")
def random_sets(engine: Engine, exclude: Sequence[Unit], size: int, n: int, rng_seed: int = 0) -> list[list[Unit]]:
    """``n`` random head sets of ``size``, drawn without the ``exclude`` heads."""
    n = check_count(n, "n_random", why=RANDOM_SETS)
    size = check_count(size, "size", why="heads in each random set")
    pool = [u for u in all_units(engine.n_layers, engine.n_heads) if u not in set(exclude)]
    if size > len(pool):
        raise ValueError(f"cannot draw random sets of {size} heads from the {len(pool)} heads left")
    rng = random.Random(rng_seed)
    return [sorted(rng.sample(pool, size)) for _ in range(n)]


def _metric(engine: Engine, variants: Sequence[Variant]) -> np.ndarray:
    """Mean behaviour metric of each variant."""
    return np.array([engine.task.metric(lg).mean().item() for lg in engine.logits(list(variants))])


def _set_value(per_head: np.ndarray, units: Sequence[Unit], H: int) -> float:
    return float(sum(per_head[u.flat(H)] for u in units))


def _names(units) -> list[str]:
    return [str(u) for u in units]


def wakeup(model_or_engine, task: Optional[Task], primaries, selected, *, order=None, n_orders: int = 1,
           n_random: int = 8, rng_seed: int = 0, ablation: str = "zero") -> WakeUp:
    """Graded wake-up: ablate the primaries one by one (in ``order``, default as given;
    ``n_orders > 1`` adds random orders and averages) and track, for the selected set
    and ``n_random`` size-matched random sets (drawn outside primaries and selection):

    - ``norm``: summed mean output norm ``|z W_O|`` of the set at the output positions;
    - ``effect``: the set's causal effect on the metric, ``m(B) - m(B + set ablated)``
      where B is the current primary ablation;
    - ``dla``: the set's summed direct logit attribution under B.

    Primaries and sets are removed the way ``ablation`` says.
    """
    ablation_action(ablation)
    n_random = check_count(n_random, "n_random", why=RANDOM_SETS)
    n_orders = check_count(n_orders, "n_orders", why="the number of primary-ablation orders averaged")
    engine = as_engine(model_or_engine, task, progress=False)
    P, X = _sets(engine, primaries, selected)
    H = engine.n_heads
    first = engine.units(order) if order is not None else P
    if sorted(first) != sorted(P):
        raise ValueError("order must list exactly the primaries")
    rng = random.Random(rng_seed)
    orders = [first] + [rng.sample(P, len(P)) for _ in range(n_orders - 1)]
    randoms = random_sets(engine, P + X, len(X), n_random, rng_seed)
    signals = ("norm", "effect", "dla")
    sel = {s: np.zeros((len(orders), len(P) + 1)) for s in signals}
    rnd = {s: np.zeros((len(orders), n_random, len(P) + 1)) for s in signals}
    for oi, o in enumerate(orders):
        for j in range(len(P) + 1):
            B = Variant.ablate(o[:j], ablation)
            norms = engine.mean_output_norms(engine.base(B))
            dla = head_dla(engine, B)
            m = _metric(engine, [B, B | Variant.ablate(X, ablation)]
                        + [B | Variant.ablate(r, ablation) for r in randoms])
            sel["norm"][oi, j] = _set_value(norms, X, H)
            sel["dla"][oi, j] = _set_value(dla, X, H)
            sel["effect"][oi, j] = m[0] - m[1]
            for ri, r in enumerate(randoms):
                rnd["norm"][oi, ri, j] = _set_value(norms, r, H)
                rnd["dla"][oi, ri, j] = _set_value(dla, r, H)
                rnd["effect"][oi, ri, j] = m[0] - m[2 + ri]
    x = list(range(len(P) + 1))
    labels = {"norm": "output norm of the set", "effect": "effect of ablating the set on the metric",
              "dla": "direct logit attribution of the set"}
    ylabels = {"norm": "output norm (residual-stream units)", "effect": "metric drop (task-metric units)",
               "dla": "DLA (logits)"}
    about = {"ablation": ablation, "n_prompts": engine.n_prompts,
             "about": f"primaries removed in {n_orders} order(s); {n_random} random sets of {len(X)} heads"}
    curves, margins = {}, {}
    for s in signals:
        c = Curves(f"Wake-up: {labels[s]}", "primaries ablated", ylabels[s], meta=dict(about))
        c.add(f"selected ({', '.join(map(str, X))})", x, sel[s].mean(0))
        c.add_band(f"random sets of {len(X)} (mean ± sd)", x, rnd[s].mean(0))
        curves[s] = c
        sel_rise = sel[s].mean(0)[-1] - sel[s].mean(0)[0]
        rnd_rise = rnd[s].mean(0)[:, -1] - rnd[s].mean(0)[:, 0]
        margins[s] = {"selected_rise": float(sel_rise), "random_rise_mean": float(rnd_rise.mean()),
                      "random_rise_max": float(rnd_rise.max()), "margin": float(sel_rise - rnd_rise.mean())}
    return WakeUp(curves, margins, P, X, {"orders": [_names(o) for o in orders], "n_random": n_random,
                                          "ablation": ablation})


def dla_handoff(model_or_engine, task: Optional[Task], primaries, selected, *, ablation: str = "zero") -> HandOff:
    """Where the answer's direct logit attribution sits before and after the primaries go
    (removed the way ``ablation`` says)."""
    ablation_action(ablation)
    engine = as_engine(model_or_engine, task, progress=False)
    P, X = _sets(engine, primaries, selected)
    H = engine.n_heads
    rest = [u for u in all_units(engine.n_layers, H) if u not in set(P + X)]
    out = {}
    for state, v in (("intact", Variant()), ("primaries ablated", Variant.ablate(P, ablation))):
        dla = head_dla(engine, v)
        for name, units in (("primaries", P), ("selected", X), ("rest", rest)):
            out.setdefault(name, {})[state] = _set_value(dla, units, H)
    return HandOff(out, P, X, {"ablation": ablation})


def freezing(model_or_engine, task: Optional[Task], primaries, selected, *, n_random: int = 10,
             rng_seed: int = 0, ablation: str = "zero") -> Freezing:
    """Freeze the selected heads at their intact outputs while the primaries are ablated.

    With ``m_S`` the metric with the primaries ablated (as ``ablation`` says), ``m_none`` the metric with
    the primaries ablated and every other head frozen at its clean output (no head can
    respond), and ``m_X`` with only the set X frozen:

        self-repair   R = m_S - m_none
        removed(X)      = (m_S - m_X) / R

    1 means freezing X removes all of the heads' repair; 0 means X does not take part.
    The same is reported for ``n_random`` size-matched random sets.
    """
    ablation_action(ablation)
    n_random = check_count(n_random, "n_random", why=RANDOM_SETS)
    engine = as_engine(model_or_engine, task, progress=False)
    P, X = _sets(engine, primaries, selected)
    others = [u for u in all_units(engine.n_layers, engine.n_heads) if u not in set(P)]
    randoms = random_sets(engine, P + X, len(X), n_random, rng_seed)
    S = Variant.ablate(P, ablation)
    m = _metric(engine, [Variant(), S, S | Variant.freeze(others), S | Variant.freeze(X)]
                + [S | Variant.freeze(r) for r in randoms])
    clean, m_s, m_none, m_x = m[:4]
    repair = m_s - m_none
    if abs(repair) < 1e-9:
        raise ValueError("the heads show no self-repair of these primaries (m_S equals the all-frozen metric); "
                         "the fraction removed is undefined")
    rr = [float((m_s - v) / repair) for v in m[4:]]
    return Freezing(float((m_s - m_x) / repair), rr,
                    {"clean": float(clean), "primaries_ablated": float(m_s), "all_frozen": float(m_none),
                     "selected_frozen": float(m_x), "self_repair": float(repair)},
                    P, X, {"random_sets": [_names(r) for r in randoms], "ablation": ablation})


def counterfactual_patching(model, task: Task, counterfactual: Task, primaries, selected, *,
                            n_random: int = 10, rng_seed: int = 0, ablation: str = "zero") -> Patching:
    """In the primary-ablated model, patch the selected heads' outputs from the
    counterfactual prompts (run with the primaries ablated too, so woken backups carry
    the counterfactual answer) and measure how far the answer moves.

    With ``d = m_cf - m`` (the counterfactual task's metric minus the original's, on the
    same logits; e.g. ``logit(new IO) - logit(old IO)`` for an IO swap):
    ``moved = (d_patched - d_S) / (d_cf - d_S)``, where ``d_S`` is the primary-ablated
    model on the original prompts and ``d_cf`` on the counterfactual ones. 1 = the
    answer moved completely, 0 = not at all. Build ``counterfactual`` with
    :func:`coax_nb.tasks.ioi_counterfactual`.

    The primaries are removed the way ``ablation`` says, on both prompt sets; under
    ``"resample"`` both take them from the task's paired corrupted prompts (a corrupted
    prompt is a corrupted version of its counterfactual too: same template, other names)."""
    ablation_action(ablation)
    n_random = check_count(n_random, "n_random", why=RANDOM_SETS)
    if isinstance(model, Engine):
        raise TypeError("counterfactual_patching takes the model, not an Engine: it runs the original and the "
                        "counterfactual prompts itself; pass engine.model")
    for name, t in (("task", task), ("counterfactual", counterfactual)):
        if not isinstance(t, Task):
            raise TypeError(f"{name} must be a Task, got {type(t).__name__}; build the counterfactual with "
                            "ioi_counterfactual(model, task)")
    if len(counterfactual) != len(task):
        raise ValueError(f"the counterfactual task has {len(counterfactual)} prompts; the task has {len(task)}")
    engine = Engine(model, task, progress=False)
    P, X = _sets(engine, primaries, selected)
    S = Variant.ablate(P, ablation)
    engine.add_source("counterfactual", counterfactual, under=S)
    if ablation == "resample":  # the same replacement outputs as on the original prompts
        counterfactual = dataclasses.replace(counterfactual, corrupted=task.corrupted)
    cf_engine = Engine(model, counterfactual, progress=False)
    randoms = random_sets(engine, P + X, len(X), n_random, rng_seed)

    def d(logits):
        return (counterfactual.metric(logits) - task.metric(logits)).mean().item()

    outs = engine.logits([S, S | Variant.patch(X, "counterfactual")]
                         + [S | Variant.patch(r, "counterfactual") for r in randoms])
    d_s, d_p = d(outs[0]), d(outs[1])
    d_cf = d(cf_engine.logits([S])[0])
    span = d_cf - d_s
    if abs(span) < 1e-9:
        raise ValueError("the counterfactual prompts do not change the primary-ablated model's output along the "
                         "metric, so nothing can move; choose another counterfactual (e.g. the other swap= of "
                         "ioi_counterfactual)")
    return Patching(float((d_p - d_s) / span), [float((d(o) - d_s) / span) for o in outs[2:]], P, X,
                    {"d_primaries_ablated": float(d_s), "d_counterfactual": float(d_cf), "d_patched": float(d_p),
                     "random_sets": [_names(r) for r in randoms], "ablation": ablation})


__all__ = ["wakeup", "dla_handoff", "freezing", "counterfactual_patching", "random_sets"]
