"""Applications of recovered backups (method.md §5): attribution repair, capability
knockout, circuit completion, repair-aware pruning and the label-free induction
pipeline. Each returns a result object with ``plot()`` and ``to_dict()``; every model
run goes through the engine's batched variants.
"""
from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch

from .curves import Curves, band
from .engine import CLEAN, Engine, Variant, seconds_and_passes, snapshot
from .io import atomic_write_text
from .metrics import kl_divergence
from .tasks import Task
from .units import Unit, all_units


def _engine(model_or_engine, task) -> Engine:
    if isinstance(model_or_engine, Engine):
        if task is not None and model_or_engine.task is not task:
            raise ValueError("pass either an Engine or a model with a task, not an Engine with another task")
        return model_or_engine
    if task is None:
        raise ValueError("give a task (prompts with answers)")
    return Engine(model_or_engine, task, progress=False)


def _means(engine: Engine, variants: Sequence[Variant], fn: Callable) -> np.ndarray:
    """``fn(task, logits)`` -> per-prompt values, averaged, for each variant (one batched run)."""
    return np.array([float(fn(engine.task, lg).mean()) for lg in engine.logits(list(variants))])


def metric_of(task: Task, logits) -> torch.Tensor:
    return task.metric(logits)


def task_loss(task: Task, logits) -> torch.Tensor:
    """Per-prompt cross-entropy of the target token at the counted positions (nats)."""
    if task.targets is None:
        raise ValueError(f"task {task.name!r} has no targets, so it has no loss")
    if len({tuple(lg.shape) for lg in logits}) == 1:  # one batched computation when shapes agree
        lg = torch.stack(list(logits))
        tg = torch.tensor(task.targets, device=lg.device)
        keep = (tg >= 0).to(torch.float64)
        lp = torch.log_softmax(lg.double(), -1).gather(2, tg.clamp(min=0)[..., None]).squeeze(2)
        return (-(lp * keep).sum(1) / keep.sum(1)).cpu()
    out = []
    for lg, tg in zip(logits, task.targets):
        tg = torch.tensor(tg, device=lg.device)
        keep = tg >= 0
        lp = torch.log_softmax(lg[keep].double(), -1)
        out.append(-lp.gather(1, tg[keep][:, None]).mean())
    return torch.stack(out).cpu()


def _accuracy(task: Task, logits) -> torch.Tensor:
    """Per-prompt share of counted positions answered right (see Task.accuracy)."""
    out = []
    for i, lg in enumerate(logits):
        hits = []
        for j, t in enumerate(task.targets[i]):
            if t < 0:
                continue
            if task.distractors is not None:
                hits.append(bool(lg[j, t] > lg[j, task.distractors[i][j]]))
            else:
                hits.append(bool(lg[j].argmax() == t))
        out.append(float(np.mean(hits)))
    return torch.tensor(out, dtype=torch.float64)


# ---------------------------------------------------------------------------- attribution repair
@dataclass
class AttributionRepair:
    """Metric change from ablating the primaries alone vs primaries + backups."""

    clean: float
    primaries_only: float  # metric change (ablated - clean)
    with_backups: float
    meta: dict = field(default_factory=dict)

    @property
    def factor(self) -> float:
        """How many times larger the effect is once the backups go too."""
        return self.with_backups / self.primaries_only if self.primaries_only else float("inf")

    def to_dict(self) -> dict:
        return {"type": "AttributionRepair", "clean": self.clean, "primaries_only": self.primaries_only,
                "with_backups": self.with_backups, "factor": self.factor, "meta": self.meta}

    def plot(self):
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4.2, 3.2))
        ax.bar([0, 1], [self.primaries_only, self.with_backups], color=["#999999", "#0072B2"])
        ax.set_xticks([0, 1], ["primaries alone", "primaries + backups"])
        ax.axhline(0, color="k", lw=0.6)
        ax.set_ylabel("change of the behaviour metric")
        ax.set_title(f"Attribution repair: {self.factor:.1f}x larger with backups", fontsize=10)
        fig.tight_layout()
        return fig


def attribution_repair(model_or_engine, task: Optional[Task], primaries, backups) -> AttributionRepair:
    """The primaries' measured effect is corrupted by self-repair; removing the recovered
    backups with them shows the effect they really carry."""
    engine = _engine(model_or_engine, task)
    P, B = engine.units(primaries), engine.units(backups)
    if not P or not B:
        raise ValueError("attribution_repair needs non-empty primaries and backups")
    clean, p, pb = _means(engine, [CLEAN, Variant.zero(P), Variant.zero(P + B)], metric_of)
    return AttributionRepair(float(clean), float(p - clean), float(pb - clean),
                             {"primaries": [str(u) for u in P], "backups": [str(u) for u in B]})


# ---------------------------------------------------------------------------- knockout
@dataclass
class Knockout:
    """Per selector and k: accuracy, metric, distance to the oracle knockout, and KL on
    unrelated text (collateral damage)."""

    rows: list
    curves: dict  # signal -> Curves over k
    meta: dict = field(default_factory=dict)

    def row(self, selector: str, k: int) -> dict:
        for r in self.rows:
            if r["selector"] == selector and r["k"] == k:
                return r
        raise KeyError((selector, k))

    def to_dict(self) -> dict:
        return {"type": "Knockout", "rows": self.rows, "curves": {k: c.to_dict() for k, c in self.curves.items()},
                "meta": self.meta}

    def plot(self):
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(self.curves), figsize=(4.2 * len(self.curves), 3.4))
        for ax, c in zip(np.atleast_1d(axes), self.curves.values()):
            c.plot(ax)
        return fig


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
) -> Knockout:
    """Ablate the primaries plus the top-k heads of each ranking, k = 0..K.

    ``rankings``: selector name -> ordered heads (e.g. ``{"CoAx": [u for u, _ in
    scores.top(10)], "first-order": [u for u, _ in scores.top(10, by="single")]}``);
    ``oracle``: the documented backups (the oracle knockout ablates primaries + all of
    them); a matched-random selector (mean over ``n_random`` draws) is added.
    ``unrelated``: prompts (token lists or a Task) of unrelated text; the KL(clean ||
    knocked-out) of their next-token distribution at the last position measures collateral
    damage. Distance to the oracle = |metric(knockout) - metric(oracle knockout)|.
    """
    engine = _engine(model_or_engine, task)
    P, O = engine.units(primaries), engine.units(oracle)
    if not P:
        raise ValueError("the primary set is empty")
    if not O:
        raise ValueError("the oracle (documented backup) set is empty")
    ranks = {name: [u for u in engine.units(list(r)) if u not in P] for name, r in rankings.items()}
    K = K if K is not None else len(O)
    short = [n for n, r in ranks.items() if len(r) < K]
    if short:
        raise ValueError(f"rankings {short} have fewer than K={K} heads outside the primaries")
    pool = [u for u in all_units(engine.n_layers, engine.n_heads) if u not in P]
    rng = random.Random(rng_seed)
    draws = [rng.sample(pool, K) for _ in range(n_random)]
    selectors = dict(ranks, **{f"random #{i}": d for i, d in enumerate(draws)})
    variants = {(name, k): Variant.zero(P + r[:k]) for name, r in selectors.items() for k in range(K + 1)}
    oracle_v = Variant.zero(P + O)
    order = [oracle_v] + list(variants.values())
    unique = list(dict.fromkeys(order))  # k = 0 is the same variant for every selector: run it once
    at = [unique.index(v) for v in order]
    logits = engine.logits(unique)
    metric = np.array([float(metric_of(engine.task, logits[j]).mean()) for j in at])
    acc = np.array([float(_accuracy(engine.task, logits[j]).mean()) for j in at])
    kl = np.full(len(order), np.nan)
    if unrelated is not None:
        u_engine = Engine(engine.model, unrelated, position_mode="last", progress=False)
        clean = u_engine.clean_logits()
        per = [float(np.mean([kl_divergence(c[-1], x[-1]).item() for c, x in zip(clean, lg)]))
               for lg in u_engine.logits(unique)]
        kl = np.array([per[j] for j in at])
    rows = []
    for i, (name, k) in enumerate(variants, start=1):
        rows.append({"selector": name, "k": k, "accuracy": acc[i], "metric": metric[i],
                     "distance_to_oracle": abs(metric[i] - metric[0]), "kl_unrelated": kl[i]})
    ks = list(range(K + 1))
    curves = {}
    labels = {"metric": "behaviour metric", "accuracy": "task accuracy", "distance_to_oracle": "distance to oracle",
              "kl_unrelated": "KL on unrelated text"}
    for sig in ("metric", "accuracy", "distance_to_oracle") + (("kl_unrelated",) if unrelated is not None else ()):
        c = Curves(f"Knockout: {labels[sig]}", "k heads added to the primaries", sig)
        for name in ranks:
            c.add(name, ks, [next(r[sig] for r in rows if r["selector"] == name and r["k"] == k) for k in ks])
        rnd = np.array([[next(r[sig] for r in rows if r["selector"] == f"random #{i}" and r["k"] == k) for k in ks]
                        for i in range(n_random)])
        c.add(f"matched random (n={n_random})", ks, *band(rnd))
        curves[sig] = c
    meta = {"primaries": [str(u) for u in P], "oracle": [str(u) for u in O], "K": K,
            "oracle_metric": float(metric[0]), "oracle_accuracy": float(acc[0]),
            "oracle_kl_unrelated": None if np.isnan(kl[0]) else float(kl[0]), "n_random": n_random}
    return Knockout(rows, curves, meta)


# ---------------------------------------------------------------------------- circuit completion
@dataclass
class CircuitCompletion:
    """Incompleteness of each circuit (lower is better)."""

    incompleteness: dict
    responses: dict
    full_response: float
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"type": "CircuitCompletion", "incompleteness": self.incompleteness, "responses": self.responses,
                "full_response": self.full_response, "meta": self.meta}

    def plot(self):
        import matplotlib.pyplot as plt

        names = list(self.incompleteness)
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.bar(range(len(names)), [self.incompleteness[n] for n in names],
               color=["#999999", "#0072B2", "#009E73", "#E69F00"][: len(names)] + ["#CCCCCC"] * max(0, len(names) - 4))
        ax.set_xticks(range(len(names)), names, rotation=15)
        ax.set_ylabel("incompleteness (lower is better)")
        ax.set_title("Circuit completion", fontsize=10)
        fig.tight_layout()
        return fig


def circuit_completion(model_or_engine, task: Optional[Task], primaries, base, completions: dict, *,
                       n_random: int = 8, rng_seed: int = 0) -> CircuitCompletion:
    """Keep a circuit C (every head outside C mean-ablated) and compare its response to
    removing the primaries with the full model's.

    Circuits: ``base`` (the circuit as documented without backups; the primaries are
    always included), and ``base + extra`` for every ``completions`` entry (e.g.
    ``{"CoAx": top_k, "documented backups": truth}``), plus a matched-random completion
    (``base`` + as many random heads from outside it as the largest completion; mean
    over ``n_random`` draws). With ``r(C) = m(C kept) - m(C kept, primaries zero-ablated)``
    and ``r_full = m(clean) - m(primaries zero-ablated)``:

        incompleteness(C) = |r(C) - r_full| / |m(clean)|

    0 means the kept circuit responds to the primaries' removal exactly as the whole
    model does, self-repair included (the clean metric is the scale, so a model that
    repairs completely, r_full = 0, is still well defined).
    """
    engine = _engine(model_or_engine, task)
    P = engine.units(primaries)
    if not P:
        raise ValueError("the primary set is empty")
    every = all_units(engine.n_layers, engine.n_heads)
    core = sorted(set(engine.units(list(base))) | set(P))
    sets = {"base": core}
    for name, extra in completions.items():
        sets[name] = sorted(set(core) | set(engine.units(list(extra))))
    k = max([len(s) - len(core) for s in sets.values()] + [1])
    outside = [u for u in every if u not in core]
    if k > len(outside):
        raise ValueError("the completions are larger than the heads outside the base circuit")
    rng = random.Random(rng_seed)
    randoms = [sorted(set(core) | set(rng.sample(outside, k))) for _ in range(n_random)]
    all_sets = list(sets.values()) + randoms
    variants = [CLEAN, Variant.zero(P)]
    for C in all_sets:
        comp = [u for u in every if u not in C]
        keep = Variant.mean(comp) if comp else CLEAN
        variants += [keep, keep | Variant.zero(P)]
    m = _means(engine, variants, metric_of)
    r_full = m[0] - m[1]
    scale = abs(m[0])
    if scale < 1e-9:
        raise ValueError("the clean metric is 0, so incompleteness has no scale")
    resp = [m[2 + 2 * i] - m[3 + 2 * i] for i in range(len(all_sets))]
    inc = {name: float(abs(resp[i] - r_full) / scale) for i, name in enumerate(sets)}
    rand_inc = [abs(r - r_full) / scale for r in resp[len(sets):]]
    inc[f"matched random (n={n_random})"] = float(np.mean(rand_inc))
    responses = {name: float(resp[i]) for i, name in enumerate(sets)}
    return CircuitCompletion(inc, responses, float(r_full),
                             {"random_incompleteness": [float(x) for x in rand_inc], "random_size": k,
                              "circuits": {n: [str(u) for u in c] for n, c in sets.items()}})


# ---------------------------------------------------------------------------- pruning
STATIC_ORDERS = ("single", "co_ablation", "magnitude", "wanda", "taylor", "random")


@dataclass
class Pruning:
    """Loss after each pruning step for every order (x = fraction of heads pruned)."""

    orders: dict  # name -> {"removed": [...], "loss": [...]} (loss[0] = nothing pruned)
    steps: list  # repair-aware steps: seconds, forward passes, candidates per step
    meta: dict = field(default_factory=dict)

    def curves(self) -> Curves:
        c = Curves("Repair-aware pruning", "fraction of heads pruned", "held-out loss (nats)", log_y=True)
        total = self.meta["n_units"]
        for name, o in self.orders.items():
            g = self.meta["group_size"]
            xs = [min(1.0, g * i / total) for i in range(len(o["loss"]))]
            c.add(name, xs, o["loss"])
        return c

    def to_dict(self) -> dict:
        return {"type": "Pruning", "orders": self.orders, "steps": self.steps, "meta": self.meta}

    def plot(self):
        return self.curves().plot()


def _head_weight_norms(engine: Engine) -> np.ndarray:
    W_O = engine.model.W_O.detach().double()  # [L, H, Dh, d]
    W_V = engine.model.W_V.detach().double()  # [L, H, d, Dh]
    return (W_O.flatten(2).norm(dim=-1) * W_V.flatten(2).norm(dim=-1)).flatten().cpu().numpy()


def _static_scores(engine: Engine, order: str, seed_units, rng_seed: int) -> np.ndarray:
    """Importance per head (lower = pruned first)."""
    from .baselines import attribution_scores
    from .scores import _mean_norms, coax_scan

    U = engine.n_layers * engine.n_heads
    if order == "random":
        return np.random.default_rng(rng_seed).random(U)
    if order == "magnitude":
        return _head_weight_norms(engine)
    if order == "wanda":  # activation x weight: mean |z W_O| over the calibration prompts x |W_V||W_O|
        return _mean_norms(engine, engine.clean) * _head_weight_norms(engine)
    if order == "taylor":
        return attribution_scores(engine, methods=["atp"], progress=False)["atp"]
    if order in ("single", "co_ablation"):
        s = coax_scan(engine, seed=seed_units or [Unit(0, 0)], progress=False)
        if order == "single":
            return s["single"]
        cond = s["conditional"].copy()
        cond[np.isnan(cond)] = np.inf  # seed heads: kept until last
        return cond
    raise ValueError(f"unknown pruning order {order!r}; choose from repair_aware, {', '.join(STATIC_ORDERS)}")


def _write_checkpoint(path: Optional[Path], state: dict) -> None:
    if path is not None:
        atomic_write_text(path, json.dumps(state))


def prune(
    model,
    calibration: Task,
    evaluation: Task,
    *,
    orders: Sequence[str] = ("repair_aware",) + STATIC_ORDERS,
    group_size: int = 1,
    max_fraction: float = 1.0,
    seed=None,
    checkpoint: Union[str, os.PathLike, None] = None,
    stop_after: Optional[int] = None,
    rng_seed: int = 0,
    progress: bool = True,
    on_step: Optional[Callable[[str, float, float], None]] = None,
) -> Pruning:
    """Remove heads ``group_size`` at a time and record the held-out loss on
    ``evaluation`` (cross-entropy of its targets; use an ``induction_task`` or a
    ``custom_task(..., position_mode="all")`` over any text for perplexity) after each step.

    ``repair_aware``: at each step every remaining head is scored by the calibration loss
    when it is removed *in addition to* everything already removed (one batched run of
    all candidates), and the ``group_size`` least important go — so a backup that wakes
    up once its primary is gone is seen as important. Static orders score once on the
    intact model: ``single`` (ablation energy), ``co_ablation`` (conditional energy given
    ``seed``, default the top-3 single-ablation heads), ``magnitude`` (|W_V| |W_O|),
    ``wanda`` (mean output norm x weight norm), ``taylor`` (|AtP| of the task metric),
    ``random``.

    ``checkpoint``: a JSON file written atomically after every step; calling again with
    the same arguments resumes from it and gives the same curves as an uninterrupted run.
    ``stop_after``: stop after this many repair-aware steps (as an interrupt would).
    ``on_step(order, fraction_pruned, loss)`` is called for every new point, e.g.
    ``on_step=lambda o, x, y: curves_widget.append(o, x, y)`` for a live chart.
    """
    unknown = [o for o in orders if o != "repair_aware" and o not in STATIC_ORDERS]
    if unknown:
        raise ValueError(f"unknown pruning order(s) {unknown}; choose from repair_aware, {', '.join(STATIC_ORDERS)}")
    if group_size < 1:
        raise ValueError("group_size must be at least 1")
    if not 0 < max_fraction <= 1:
        raise ValueError("max_fraction must be in (0, 1]")
    cal = Engine(model, calibration, progress=False)
    ev = Engine(model, evaluation, progress=False)
    every = all_units(cal.n_layers, cal.n_heads)
    U = len(every)
    n_steps = int(np.ceil(max_fraction * U / group_size))
    settings = {"orders": list(orders), "group_size": group_size, "max_fraction": max_fraction,
                "n_units": U, "rng_seed": rng_seed, "calibration": len(calibration), "evaluation": len(evaluation)}
    path = Path(checkpoint) if checkpoint is not None else None
    state = {"settings": settings, "orders": {}, "steps": []}
    if path is not None and path.exists():
        saved = json.loads(path.read_text())
        if saved.get("settings") != settings:
            raise ValueError(f"checkpoint {path} was written with other settings {saved.get('settings')}; "
                             "delete it or pass a new checkpoint path")
        state = saved

    def loss_after(engine: Engine, removed_lists: list[list[Unit]]) -> np.ndarray:
        return _means(engine, [Variant.zero(r) if r else CLEAN for r in removed_lists], task_loss)

    if seed is not None:
        seed_units = cal.units(seed)
    elif "co_ablation" in orders:  # default seed: the top-3 single-ablation heads
        from .scores import coax_scan

        single = coax_scan(cal, seed=[Unit(0, 0)], progress=False)["single"]
        seed_units = [every[i] for i in np.argsort(-single)[:3]]
    else:
        seed_units = []

    from tqdm.auto import tqdm

    for name in orders:
        if name in state["orders"] and state["orders"][name].get("done"):
            continue
        if name != "repair_aware":
            score = _static_scores(cal, name, seed_units, rng_seed)
            order = [every[i] for i in np.argsort(score, kind="stable")]
            prefixes = [order[:min(U, group_size * s)] for s in range(n_steps + 1)]
            losses = loss_after(ev, prefixes)
            state["orders"][name] = {"removed": [str(u) for u in prefixes[-1]], "loss": [float(x) for x in losses],
                                     "done": True}
            if on_step is not None:
                for i, x in enumerate(losses):
                    on_step(name, len(prefixes[i]) / U, float(x))
            _write_checkpoint(path, state)
            continue
        o = state["orders"].setdefault("repair_aware", {"removed": [], "loss": [], "done": False})
        if not o["loss"]:
            o["loss"].append(float(loss_after(ev, [[]])[0]))
        removed = cal.units(o["removed"])
        bar = tqdm(total=n_steps, initial=len(o["loss"]) - 1, desc="repair-aware pruning", unit="step",
                   disable=not progress, leave=False)
        while len(o["loss"]) - 1 < n_steps:
            if stop_after is not None and len(o["loss"]) - 1 >= stop_after:
                bar.close()
                return _pruning_result(state, settings, seed_units, stopped=True)
            t0, s0 = time.perf_counter(), snapshot(cal)
            remaining = [u for u in every if u not in removed]
            take = []
            for _ in range(min(group_size, len(remaining))):
                cand = [u for u in remaining if u not in take]
                cal_loss = loss_after(cal, [removed + take + [u] for u in cand])
                take.append(cand[int(np.argmin(cal_loss))])
            cal.forget_bases()
            removed = removed + take
            o["removed"] = [str(u) for u in removed]
            o["loss"].append(float(loss_after(ev, [removed])[0]))
            ev.forget_bases()
            if on_step is not None:
                on_step("repair_aware", len(removed) / U, o["loss"][-1])
            state["steps"].append({"step": len(o["loss"]) - 1, "removed": [str(u) for u in take],
                                   "candidates": len(remaining), "wall_seconds": round(time.perf_counter() - t0, 4),
                                   **seconds_and_passes(cal, s0)})
            _write_checkpoint(path, state)
            bar.update(1)
        bar.close()
        o["done"] = True
        _write_checkpoint(path, state)
    return _pruning_result(state, settings, seed_units, stopped=False)


def _pruning_result(state, settings, seed_units, stopped: bool) -> Pruning:
    orders = {n: {"removed": o["removed"], "loss": o["loss"]} for n, o in state["orders"].items()}
    return Pruning(orders, list(state["steps"]), dict(settings, co_ablation_seed=[str(u) for u in seed_units],
                                                     stopped=stopped))


# ---------------------------------------------------------------------------- induction transfer
@dataclass
class InductionTransfer:
    primaries: list
    completion: list
    effect: float  # metric drop on the evaluation split: primaries + completion
    primaries_effect: float
    random_effects: list
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"type": "InductionTransfer", "primaries": [str(u) for u in self.primaries],
                "completion": [str(u) for u in self.completion], "effect": self.effect,
                "primaries_effect": self.primaries_effect, "random_effects": self.random_effects, "meta": self.meta}

    def plot(self):
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4.6, 3.2))
        ax.bar([0, 1], [self.primaries_effect, self.effect], color=["#999999", "#0072B2"], width=0.6)
        ax.bar([2], [np.mean(self.random_effects)], color="#DDDDDD", width=0.6)
        ax.scatter(2 + np.linspace(-0.15, 0.15, len(self.random_effects)), self.random_effects, color="#777777", zorder=3)
        ax.set_xticks([0, 1, 2], ["primaries", "+ CoAx completion", "+ matched random"])
        ax.set_ylabel("drop of answer log-prob")
        ax.set_title("Induction transfer (evaluation split)", fontsize=10)
        fig.tight_layout()
        return fig


def induction_transfer(model, n_primaries: int = 2, k: int = 2, *, n_prompts: int = 32, half_length: int = 10,
                       n_random: int = 8, rng_seed: int = 0, token_range=None) -> InductionTransfer:
    """Label-free induction pipeline on three disjoint splits of repeated random tokens:
    primaries = the top single-ablation heads on the detection split; CoAx completion
    (top ``k`` by comp given the primaries) on the calibration split; on the evaluation
    split, the drop of the answer log-prob when primaries + completion are ablated, vs
    primaries + ``k`` random heads (``n_random`` draws)."""
    from .scores import coax_scan
    from .tasks import induction_task

    splits = [induction_task(model, n_prompts, half_length, seed=s, token_range=token_range)
              for s in (rng_seed, rng_seed + 1, rng_seed + 2)]
    seen = [set(map(tuple, t.prompts)) for t in splits]
    if seen[0] & seen[2] or seen[1] & seen[2]:
        raise RuntimeError("induction splits overlap; raise n_prompts' token range")
    det = coax_scan(Engine(model, splits[0], progress=False), seed=[Unit(0, 0)], progress=False)
    U = det.n_layers * det.n_heads
    if n_primaries + k >= U:
        raise ValueError(f"n_primaries + k must be below the {U} heads of the model")
    prim = [det.units[i] for i in np.argsort(-det["single"], kind="stable")[:n_primaries]]
    cal = coax_scan(Engine(model, splits[1], progress=False), seed=prim, progress=False)
    completion = [u for u, _ in cal.top(k)]
    ev = Engine(model, splits[2], progress=False)
    rng = random.Random(rng_seed)
    pool = [u for u in all_units(det.n_layers, det.n_heads) if u not in prim]
    draws = [rng.sample(pool, k) for _ in range(n_random)]
    m = _means(ev, [CLEAN, Variant.zero(prim), Variant.zero(prim + completion)]
               + [Variant.zero(prim + d) for d in draws], metric_of)
    return InductionTransfer(prim, completion, float(m[0] - m[2]), float(m[0] - m[1]),
                             [float(m[0] - x) for x in m[3:]],
                             {"splits": [0, 1, 2], "n_prompts": n_prompts, "random_sets": [[str(u) for u in d]
                                                                                          for d in draws]})
