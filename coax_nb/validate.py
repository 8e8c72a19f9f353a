"""Causal validation of a selected head set (method.md §5): graded wake-up, DLA
hand-off, causal freezing and counterfactual patching. Each is one call, runs
through the engine's batched variants, compares with size-matched random head sets,
and returns a result with ``plot()`` and ``to_dict()``.

>>> from coax_nb import load_model
>>> from coax_nb.organisms import task_for
>>> model = load_model("organism:handwired")
>>> f = freezing(model, task_for("organism:handwired", 16), ["1.0", "1.1"], ["2.0", "2.1"], n_random=4)
>>> round(f.removed, 2), round(max(f.random_removed), 2)
(1.0, 0.0)
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from .curves import Curves, band
from .dla import head_dla
from .engine import Engine, Variant
from .scores import _mean_norms
from .tasks import Task
from .units import Unit, all_units


def _engine(model_or_engine, task) -> Engine:
    if isinstance(model_or_engine, Engine):
        return model_or_engine
    if task is None:
        raise ValueError("give a task (prompts with answers) or an Engine built from one")
    return Engine(model_or_engine, task, progress=False)


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


def random_sets(engine: Engine, exclude: Sequence[Unit], size: int, n: int, seed: int = 0) -> list[list[Unit]]:
    """``n`` random head sets of ``size``, drawn without the ``exclude`` heads."""
    pool = [u for u in all_units(engine.n_layers, engine.n_heads) if u not in set(exclude)]
    if size > len(pool):
        raise ValueError(f"cannot draw random sets of {size} heads from the {len(pool)} heads left")
    rng = random.Random(seed)
    return [sorted(rng.sample(pool, size)) for _ in range(n)]


def _metric(engine: Engine, variants: Sequence[Variant]) -> np.ndarray:
    """Mean behaviour metric of each variant."""
    return np.array([engine.task.metric(lg).mean().item() for lg in engine.logits(list(variants))])


def _set_value(per_head: np.ndarray, units: Sequence[Unit], H: int) -> float:
    return float(sum(per_head[u.flat(H)] for u in units))


# ---------------------------------------------------------------------------- wake-up
@dataclass
class WakeUp:
    """Wake-up curves: x = number of primaries ablated; one Curves per signal."""

    curves: dict
    margins: dict  # per signal: the selected set's rise (all primaries ablated - intact) minus the random sets' mean rise
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"type": "WakeUp", "curves": {k: c.to_dict() for k, c in self.curves.items()},
                "margins": self.margins, "meta": self.meta}

    def plot(self):
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(self.curves), figsize=(4.2 * len(self.curves), 3.4))
        for ax, c in zip(np.atleast_1d(axes), self.curves.values()):
            c.plot(ax)
        return fig


def wakeup(model_or_engine, task: Optional[Task], primaries, selected, *, order=None, n_orders: int = 1,
           n_random: int = 8, rng_seed: int = 0) -> WakeUp:
    """Graded wake-up: ablate the primaries one by one (in ``order``, default as given;
    ``n_orders > 1`` adds random orders and averages) and track, for the selected set
    and ``n_random`` size-matched random sets (drawn outside primaries and selection):

    - ``norm``: summed mean output norm ``|z W_O|`` of the set at the output positions;
    - ``effect``: the set's causal effect on the metric, ``m(B) - m(B + set ablated)``
      where B is the current primary ablation;
    - ``dla``: the set's summed direct logit attribution under B.
    """
    engine = _engine(model_or_engine, task)
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
            B = Variant.zero(o[:j])
            norms = _mean_norms(engine, engine.base(B))
            dla = head_dla(engine, B)
            m = _metric(engine, [B, B | Variant.zero(X)] + [B | Variant.zero(r) for r in randoms])
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
    curves, margins = {}, {}
    for s in signals:
        c = Curves(f"Wake-up: {labels[s]}", "primaries ablated", s)
        c.add(f"selected ({', '.join(map(str, X))})", x, sel[s].mean(0))
        c.add(f"random sets of {len(X)} (mean ± sd)", x, *band(rnd[s].mean(0)))
        curves[s] = c
        sel_rise = sel[s].mean(0)[-1] - sel[s].mean(0)[0]
        rnd_rise = rnd[s].mean(0)[:, -1] - rnd[s].mean(0)[:, 0]
        margins[s] = {"selected_rise": float(sel_rise), "random_rise_mean": float(rnd_rise.mean()),
                      "random_rise_max": float(rnd_rise.max()), "margin": float(sel_rise - rnd_rise.mean())}
    meta = {"primaries": [str(u) for u in P], "selected": [str(u) for u in X],
            "orders": [[str(u) for u in o] for o in orders], "n_random": n_random}
    return WakeUp(curves, margins, meta)


# ---------------------------------------------------------------------------- DLA hand-off
@dataclass
class HandOff:
    """Summed DLA of primaries / selected / the rest, intact vs primaries ablated."""

    table: dict  # group -> {"intact": x, "primaries ablated": y}
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"type": "HandOff", "table": self.table, "meta": self.meta}

    def plot(self):
        import matplotlib.pyplot as plt

        from .curves import PALETTE

        groups = list(self.table)
        fig, ax = plt.subplots(figsize=(5, 3.4))
        xs = np.arange(2)
        w = 0.8 / len(groups)
        for i, g in enumerate(groups):
            vals = [self.table[g]["intact"], self.table[g]["primaries ablated"]]
            ax.bar(xs + i * w - 0.4 + w / 2, vals, w, label=g, color=PALETTE[i])
        ax.set_xticks(xs, ["intact", "primaries ablated"])
        ax.axhline(0, color="k", lw=0.6)
        ax.set_ylabel("direct logit attribution")
        ax.set_title("DLA hand-off", fontsize=10)
        ax.legend(fontsize=8, frameon=False)
        fig.tight_layout()
        return fig


def dla_handoff(model_or_engine, task: Optional[Task], primaries, selected) -> HandOff:
    """Where the answer's direct logit attribution sits before and after the primaries go."""
    engine = _engine(model_or_engine, task)
    P, X = _sets(engine, primaries, selected)
    H = engine.n_heads
    rest = [u for u in all_units(engine.n_layers, H) if u not in set(P + X)]
    out = {}
    for state, v in (("intact", Variant()), ("primaries ablated", Variant.zero(P))):
        dla = head_dla(engine, v)
        for name, units in (("primaries", P), ("selected", X), ("rest", rest)):
            out.setdefault(name, {})[state] = _set_value(dla, units, H)
    return HandOff(out, {"primaries": [str(u) for u in P], "selected": [str(u) for u in X]})


# ---------------------------------------------------------------------------- freezing
@dataclass
class Freezing:
    removed: float  # fraction of the self-repair removed by freezing the selected heads
    random_removed: list
    metric: dict
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"type": "Freezing", "removed": self.removed, "random_removed": self.random_removed,
                "metric": self.metric, "meta": self.meta}

    def plot(self):
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        ax.bar([0], [self.removed], color="#0072B2", width=0.6)
        jitter = np.linspace(-0.15, 0.15, max(1, len(self.random_removed)))
        ax.scatter(1 + jitter, self.random_removed, color="#999999", zorder=3)
        ax.bar([1], [np.mean(self.random_removed)], color="#DDDDDD", width=0.6)
        ax.set_xticks([0, 1], ["selected", f"random (n={len(self.random_removed)})"])
        ax.set_ylabel("fraction of self-repair removed")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_title("Causal freezing", fontsize=10)
        fig.tight_layout()
        return fig


def freezing(model_or_engine, task: Optional[Task], primaries, selected, *, n_random: int = 10,
             rng_seed: int = 0) -> Freezing:
    """Freeze the selected heads at their intact outputs while the primaries are ablated.

    With ``m_S`` the metric with the primaries zero-ablated, ``m_none`` the metric with
    the primaries ablated and every other head frozen at its clean output (no head can
    respond), and ``m_X`` with only the set X frozen:

        self-repair   R = m_S - m_none
        removed(X)      = (m_S - m_X) / R

    1 means freezing X removes all of the heads' repair; 0 means X does not take part.
    The same is reported for ``n_random`` size-matched random sets.
    """
    engine = _engine(model_or_engine, task)
    P, X = _sets(engine, primaries, selected)
    others = [u for u in all_units(engine.n_layers, engine.n_heads) if u not in set(P)]
    randoms = random_sets(engine, P + X, len(X), n_random, rng_seed)
    S = Variant.zero(P)
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
                    {"primaries": [str(u) for u in P], "selected": [str(u) for u in X],
                     "random_sets": [[str(u) for u in r] for r in randoms]})


# ---------------------------------------------------------------------------- patching
def ioi_counterfactual(model_or_tokenizer, task: Task, seed: int = 0, swap: str = "io") -> Task:
    """The same IOI prompts with one name replaced by another (lengths unchanged).

    ``swap="io"``: the indirect object becomes a new name, which is the new answer.
    ``swap="s"``: the repeated subject (both occurrences) becomes a new name, which is
    the new distractor; the answer stays. Heads that copy the answer move with the
    first; heads that suppress the repeated name move with the second.
    """
    from .tasks import _encode, _single_token, _tokenizer_of

    if swap not in ("io", "s"):
        raise ValueError(f"swap must be 'io' or 's', got {swap!r}")
    tok = _tokenizer_of(model_or_tokenizer)
    if task.texts is None or task.distractors is None or "names" not in task.info:
        raise ValueError("ioi_counterfactual needs an IOI task (texts, names and distractors)")
    rng = random.Random(seed)
    names = task.info["names"]
    bos = task.prompts[0][0] == tok.bos_token_id
    prompts, targets, distractors, texts = [], [], [], []
    for text, t, d in zip(task.texts, task.targets, task.distractors):
        io, s = tok.decode([t[0]]).strip(), tok.decode([d[0]]).strip()
        new = rng.choice([n for n in names if n not in (io, s)])
        old = io if swap == "io" else s
        cf = re.sub(rf"\b{re.escape(old)}\b", new, text)
        ids = _encode(tok, cf, bos)
        prompts.append(ids)
        texts.append(cf)
        targets.append([_single_token(tok, new)] if swap == "io" else list(t))
        distractors.append(list(d) if swap == "io" else [_single_token(tok, new)])
    return Task(f"ioi-counterfactual-{swap}", prompts, task.position_mode, targets, distractors,
                texts, task.tokenizer_fingerprint, dict(task.info, counterfactual_of=task.name, swap=swap))


@dataclass
class Patching:
    moved: float  # fraction of the answer moved to the counterfactual one
    random_moved: list
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"type": "Patching", "moved": self.moved, "random_moved": self.random_moved, "meta": self.meta}

    def plot(self):
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        ax.bar([0], [self.moved], color="#009E73", width=0.6)
        ax.bar([1], [np.mean(self.random_moved)], color="#DDDDDD", width=0.6)
        ax.scatter(1 + np.linspace(-0.15, 0.15, max(1, len(self.random_moved))), self.random_moved,
                   color="#999999", zorder=3)
        ax.set_xticks([0, 1], ["selected", f"random (n={len(self.random_moved)})"])
        ax.set_ylabel("fraction of the answer moved")
        ax.set_title("Counterfactual patching (primaries ablated)", fontsize=10)
        fig.tight_layout()
        return fig


def counterfactual_patching(model, task: Task, counterfactual: Task, primaries, selected, *,
                            n_random: int = 10, rng_seed: int = 0) -> Patching:
    """In the primary-ablated model, patch the selected heads' outputs from the
    counterfactual prompts (run with the primaries ablated too, so woken backups carry
    the counterfactual answer) and measure how far the answer moves.

    With ``d = m_cf - m`` (the counterfactual task's metric minus the original's, on the
    same logits; e.g. ``logit(new IO) - logit(old IO)`` for an IO swap):
    ``moved = (d_patched - d_S) / (d_cf - d_S)``, where ``d_S`` is the primary-ablated
    model on the original prompts and ``d_cf`` on the counterfactual ones. 1 = the
    answer moved completely, 0 = not at all."""
    if len(counterfactual) != len(task):
        raise ValueError(f"the counterfactual task has {len(counterfactual)} prompts; the task has {len(task)}")
    engine = Engine(model, task, progress=False)
    P, X = _sets(engine, primaries, selected)
    S = Variant.zero(P)
    engine.add_source("counterfactual", counterfactual, under=S)
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
    return Patching(float((d_p - d_s) / span), [float((d(o) - d_s) / span) for o in outs[2:]],
                    {"d_primaries_ablated": float(d_s), "d_counterfactual": float(d_cf), "d_patched": float(d_p),
                     "primaries": [str(u) for u in P], "selected": [str(u) for u in X]})


__all__ = ["wakeup", "WakeUp", "dla_handoff", "HandOff", "freezing", "Freezing", "ioi_counterfactual",
           "counterfactual_patching", "Patching", "random_sets"]
