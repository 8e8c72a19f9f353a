"""CoAx scores (method.md §3): single, conditional, comp, coupling, ratio, wake-up,
co-activation affinity, pairwise synergy and greedy conditional completion.

Result types: :class:`UnitScores` (one row per head) and :class:`PairScores`
(head x head matrices). Both serialise to JSON and pandas.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from itertools import combinations
from typing import Optional

import numpy as np
import torch

from . import metrics as M
from .engine import CLEAN, Engine, Variant, seconds_and_passes, snapshot
from .results import Completion, PairScores, UnitScores
from .units import Unit, all_units, parse_units

SCORE_DOCS = {
    "single": "E(z0 -> z_u): first-order ablation saliency",
    "conditional": "E(z_S -> z_{S+u}): the head's effect once the seed S is removed",
    "comp": "CoAx = conditional - single (NaN for seed heads)",
    "coupling": "mean ||f(z_S -> z_{S+u}) - f(z0 -> z_u)||^2: all-order interaction with S",
    "ratio": "conditional / max(single, eps): amplification",
    "wakeup": "output norm with S ablated / clean output norm, at the output positions",
    "coact": "mean correlation of the head's clean output norm with the seed heads' (input-side control)",
}


def _to_engine(model_or_engine, prompts, position_mode, progress) -> Engine:
    if isinstance(model_or_engine, Engine):
        if prompts is not None:
            raise ValueError("pass prompts either to the Engine or here, not both")
        if position_mode is not None and position_mode != model_or_engine.position_mode:
            raise ValueError(f"this engine reads position_mode={model_or_engine.position_mode!r}; "
                             "build another Engine for a different mode")
        return model_or_engine
    if prompts is None:
        raise ValueError("give a prompt set (a Task or token lists) with the model")
    return Engine(model_or_engine, prompts, position_mode=position_mode, progress=progress)


def _check_seed(engine: Engine, seed) -> list[Unit]:
    units = engine.units(seed)
    if not units:
        raise ValueError("the seed set is empty; CoAx conditions on a primary set S: pass e.g. seed=['9.9', '9.6']")
    if len(units) >= engine.n_layers * engine.n_heads:
        raise ValueError("the seed set covers every head, so no head is left to score; remove some seed heads")
    return units


class _Geometry:
    """Per bucket: the fixed support, the clean reference logits and the metric distributions."""

    def __init__(self, engine: Engine, top_r: int, seed_variant: Optional[Variant] = None):
        self.support, self.z0, self.p0, self.zS, self.pS = [], [], [], [], []
        for bi in range(len(engine.buckets)):
            clean = engine.clean.logits[bi]
            sup = M.support_of(clean, top_r)
            z0 = M.on_support(clean, sup)
            self.support.append(sup)
            self.z0.append(z0)
            self.p0.append(M.probs(z0))
            if seed_variant is not None:
                zS = M.on_support(engine.base(seed_variant).logits[bi], sup)
                self.zS.append(zS)
                self.pS.append(M.probs(zS))

    def count(self, engine: Engine) -> int:
        return sum(len(b.index) * len(b.positions) for b in engine.buckets)


def _row_energies(f: torch.Tensor) -> list[float]:
    """``||f||^2`` summed over prompts and positions, per leading row, as host floats."""
    return M.sq_norm(f).flatten(1).sum(1).double().cpu().tolist()


def _group_size(engine: Engine, bi: int, top_r: int, budget_bytes: Optional[float] = None) -> int:
    if budget_bytes is None:  # features of a whole group live at once: a quarter of free GPU memory
        budget_bytes = 2**29
        if engine.device.type == "cuda":
            budget_bytes = min(0.25 * torch.cuda.mem_get_info(engine.device)[0], 2**33)
    b = engine.buckets[bi]
    width = top_r if top_r > 0 else engine.d_vocab
    per_unit = 4 * len(b.index) * len(b.positions) * width * 3
    return max(1, int(budget_bytes // per_unit))


def coax_scan(
    model_or_engine,
    prompts=None,
    seed=(),
    *,
    position_mode: Optional[str] = None,
    top_r: int = 0,
    geometry: str = "clean",
    feature_mode: str = "fisher_centered",
    eps: float = 1e-9,
    progress: bool = True,
    heads=None,
) -> UnitScores:
    """Score every head (or only ``heads``; the rest are NaN — how a shard of a
    distributed scan works): single, conditional (given the seed set S ablated), CoAx
    ``comp``, ``coupling``, amplification ``ratio``, ``wakeup`` and ``coact``.

    >>> from coax_nb import load_model, coax_scan
    >>> from coax_nb.organisms import task_for
    >>> model = load_model("organism:handwired")
    >>> s = coax_scan(model, task_for("organism:handwired", 32), seed=["1.0", "1.1"], progress=False)
    >>> [str(u) for u, _ in s.top(2)]   # the two dormant backups
    ['2.0', '2.1']

    Costs 1 + 1 + 2U forward passes over the prompt set (less with prefix reuse).
    """
    M.check_options(feature_mode, geometry, top_r)
    engine = _to_engine(model_or_engine, prompts, position_mode, progress)
    seed_units = _check_seed(engine, seed)
    from .resources import check_scan_fits

    check_scan_fits(engine, top_r, announce=progress and engine.device.type == "cuda")
    t0, s0 = time.perf_counter(), snapshot(engine)
    S = Variant.zero(seed_units)
    geo = _Geometry(engine, top_r, S)
    L, H = engine.n_layers, engine.n_heads
    U = L * H
    single, cond, coup = np.zeros(U), np.zeros(U), np.zeros(U)
    is_seed = np.zeros(U, bool)
    for u in seed_units:
        is_seed[u.flat(H)] = True
    wanted = np.ones(U, bool)
    if heads is not None:
        wanted[:] = False
        for u in engine.units(heads):
            wanted[u.flat(H)] = True

    from tqdm.auto import tqdm

    bar = tqdm(total=int(wanted.sum()) * len(engine.buckets), desc="CoAx scan", unit="head",
               disable=not progress, leave=False)
    for bi in range(len(engine.buckets)):
        g = _group_size(engine, bi, top_r)
        p_cond = geo.pS[bi] if geometry == "conditional" else geo.p0[bi]
        for layer in range(L):
            layer_heads = [Unit(layer, h) for h in range(H) if wanted[layer * H + h]]
            for s in range(0, len(layer_heads), g):
                group = layer_heads[s:s + g]
                f_single = {}
                for _, idx, lg in engine.run([Variant.zero([u]) for u in group], CLEAN, buckets=[bi], progress=False,
                                             support=geo.support[bi]):
                    f = M.features(geo.z0[bi], M.on_support(lg, None), geo.p0[bi], feature_mode)
                    energies = _row_energies(f)  # one device->host copy per chunk
                    for row, vi in enumerate(idx):
                        f_single[vi] = f[row]
                        single[group[vi].flat(H)] += energies[row]
                scored = [u for u in group if not is_seed[u.flat(H)]]
                variants = [S | Variant.zero([u]) for u in scored]
                for _, idx, lg in engine.run(variants, S, buckets=[bi], progress=False, support=geo.support[bi]):
                    f = M.features(geo.zS[bi], M.on_support(lg, None), p_cond, feature_mode)
                    ref = torch.stack([f_single[group.index(scored[vi])] for vi in idx])
                    energies, couplings = _row_energies(f), _row_energies(f - ref)
                    for row, vi in enumerate(idx):
                        uid = scored[vi].flat(H)
                        cond[uid] += energies[row]
                        coup[uid] += couplings[row]
                bar.update(len(group))
    bar.close()
    count = geo.count(engine)
    single, cond, coup = single / count, cond / count, coup / count
    cond[is_seed] = np.nan
    coup[is_seed] = np.nan
    for arr in (single, cond, coup):
        arr[~wanted] = np.nan
    comp = cond - single
    ratio = cond / np.maximum(single, eps)
    wakeup = _wakeup(engine, S)
    wakeup[is_seed] = np.nan
    meta = {
        "position_mode": engine.position_mode, "top_r": top_r, "geometry": geometry,
        "feature_mode": feature_mode, "n_prompts": engine.n_prompts,
        "model": getattr(engine.model, "coax_source", None),
        "task": engine.task.name if engine.task is not None else None,
        "wall_seconds": round(time.perf_counter() - t0, 3), **seconds_and_passes(engine, s0),
    }
    return UnitScores(L, H, seed_units, {
        "single": single, "conditional": cond, "comp": comp, "coupling": coup, "ratio": ratio,
        "wakeup": wakeup, "coact": _coact_to_seed(engine, seed_units, is_seed),
    }, meta)


def ablation_energy(model_or_engine, variant: Variant, prompts=None, *, reference: Variant = CLEAN,
                    top_r: int = 0, feature_mode: str = "fisher_centered", position_mode=None) -> float:
    """Fisher energy ``E(z_reference -> z_variant)`` of one variant, clean metric."""
    M.check_options(feature_mode, "clean", top_r)
    engine = _to_engine(model_or_engine, prompts, position_mode, False)
    geo = _Geometry(engine, top_r)
    total = 0.0
    for bi in range(len(engine.buckets)):
        z_ref = M.on_support(engine.base(reference).logits[bi], geo.support[bi])
        for _, _, lg in engine.run([variant], reference, buckets=[bi], progress=False,
                                     support=geo.support[bi]):
            f = M.features(z_ref, M.on_support(lg, None), geo.p0[bi], feature_mode)
            total += M.sq_norm(f).sum().item()
    return total / geo.count(engine)


def _mean_norms(engine: Engine, run) -> np.ndarray:
    norms = engine.head_output_norms(run, "output")  # per bucket [n, P, L, H]
    total = sum(x.sum(dim=(0, 1)) for x in norms)
    count = sum(x.shape[0] * x.shape[1] for x in norms)
    return (total / count).flatten().double().cpu().numpy()


def _wakeup(engine: Engine, S: Variant) -> np.ndarray:
    clean = _mean_norms(engine, engine.clean)
    seeded = _mean_norms(engine, engine.base(S))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(clean > 0, seeded / clean, np.nan)


def _clean_norm_samples(engine: Engine) -> torch.Tensor:
    """Clean per-head output norms at every (prompt, position): ``[samples, U]``."""
    norms = engine.head_output_norms(engine.clean, "all")
    return torch.cat([x.reshape(-1, engine.n_layers * engine.n_heads) for x in norms]).double()


def _corr(x: torch.Tensor) -> torch.Tensor:
    x = x - x.mean(0)
    sd = x.norm(dim=0)
    c = (x.T @ x) / torch.outer(sd, sd)
    return torch.where(torch.outer(sd, sd) > 0, c, torch.full_like(c, float("nan")))


def _coact_to_seed(engine: Engine, seed_units, is_seed) -> np.ndarray:
    # a head whose output norm never varies co-activates with nothing: correlation 0
    c = np.nan_to_num(_corr(_clean_norm_samples(engine)).cpu().numpy(), nan=0.0)
    ids = [u.flat(engine.n_heads) for u in seed_units]
    out = np.abs(c[:, ids]).mean(axis=1)
    out[is_seed] = np.nan
    return out


def co_activation(model_or_engine, units=None, prompts=None, *, position_mode=None, progress=True) -> PairScores:
    """Co-activation affinity: correlation across (prompt, position) of per-head output
    norms on the clean run (an input-side control; no ablation)."""
    engine = _to_engine(model_or_engine, prompts, position_mode, progress)
    chosen = engine.units(units) if units is not None else all_units(engine.n_layers, engine.n_heads)
    ids = [u.flat(engine.n_heads) for u in chosen]
    c = _corr(_clean_norm_samples(engine)[:, ids]).cpu().numpy()
    return PairScores(chosen, {"affinity": c}, {"n_prompts": engine.n_prompts, "position_mode": engine.position_mode})


def synergy(
    model_or_engine,
    units,
    prompts=None,
    *,
    position_mode: Optional[str] = None,
    top_r: int = 0,
    feature_mode: str = "fisher_centered",
    eps: float = 1e-12,
    progress: bool = True,
) -> PairScores:
    """Pairwise synergy for a head set M: ``I_uv = f(z0->z_uv) - f(z0->z_u) - f(z0->z_v)``,
    ``raw[u, v] = mean ||I_uv||^2`` and ``normalized = raw / sqrt(single_u single_v)``.
    The diagonal is NaN. Costs |M| + |M|(|M|-1)/2 variants."""
    M.check_options(feature_mode, "clean", top_r)
    engine = _to_engine(model_or_engine, prompts, position_mode, progress)
    chosen = engine.units(units)
    if len(chosen) < 2:
        raise ValueError("synergy needs at least two heads")
    t0, s0 = time.perf_counter(), snapshot(engine)
    geo = _Geometry(engine, top_r)
    m = len(chosen)
    raw, single = np.zeros((m, m)), np.zeros(m)
    pairs = list(combinations(range(m), 2))
    from tqdm.auto import tqdm

    bar = tqdm(total=len(pairs) * len(engine.buckets), desc="synergy", unit="pair", disable=not progress, leave=False)
    for bi in range(len(engine.buckets)):
        fs = [None] * m
        for _, idx, lg in engine.run([Variant.zero([u]) for u in chosen], CLEAN, buckets=[bi], progress=False,
                                     support=geo.support[bi]):
            f = M.features(geo.z0[bi], M.on_support(lg, None), geo.p0[bi], feature_mode)
            energies = _row_energies(f)
            for row, vi in enumerate(idx):
                fs[vi] = f[row]
                single[vi] += energies[row]
        F = torch.stack(fs)
        variants = [Variant.zero([chosen[i], chosen[j]]) for i, j in pairs]
        for _, idx, lg in engine.run(variants, CLEAN, buckets=[bi], progress=False, support=geo.support[bi]):
            f = M.features(geo.z0[bi], M.on_support(lg, None), geo.p0[bi], feature_mode)
            ii = torch.tensor([pairs[vi][0] for vi in idx], device=F.device)
            jj = torch.tensor([pairs[vi][1] for vi in idx], device=F.device)
            vals = _row_energies(f - F[ii] - F[jj])
            for row, vi in enumerate(idx):
                i, j = pairs[vi]
                raw[i, j] += vals[row]
                raw[j, i] += vals[row]
            bar.update(len(idx))
    bar.close()
    count = geo.count(engine)
    raw, single = raw / count, single / count
    np.fill_diagonal(raw, np.nan)
    norm = raw / np.sqrt(np.maximum(np.outer(single, single), eps))
    meta = {"position_mode": engine.position_mode, "top_r": top_r, "feature_mode": feature_mode,
            "n_prompts": engine.n_prompts, "single": single.tolist(),
            "wall_seconds": round(time.perf_counter() - t0, 3), **seconds_and_passes(engine, s0)}
    return PairScores(chosen, {"normalized": norm, "raw": raw}, meta)


def greedy_completion(
    model_or_engine,
    seed,
    k: int,
    prompts=None,
    *,
    candidates=None,
    position_mode: Optional[str] = None,
    top_r: int = 0,
    feature_mode: str = "fisher_centered",
    progress: bool = True,
) -> Completion:
    """Starting from the seed set A = S, repeatedly add the head whose ablation energy
    given A (reference = A ablated, clean metric) is largest; ``k`` steps."""
    M.check_options(feature_mode, "clean", top_r)
    engine = _to_engine(model_or_engine, prompts, position_mode, progress)
    chosen = _check_seed(engine, seed)
    pool = engine.units(candidates) if candidates is not None else all_units(engine.n_layers, engine.n_heads)
    pool = [u for u in pool if u not in chosen]
    if k < 1 or k > len(pool):
        raise ValueError(f"k must be between 1 and {len(pool)} (the candidates outside the seed)")
    geo = _Geometry(engine, top_r)
    count = geo.count(engine)
    added, gains = [], []
    from tqdm.auto import tqdm

    for _ in tqdm(range(k), desc="greedy completion", disable=not progress, leave=False):
        A = Variant.zero(chosen + added)
        energy = np.zeros(len(pool))
        for bi in range(len(engine.buckets)):
            zA = M.on_support(engine.base(A).logits[bi], geo.support[bi])
            for _, idx, lg in engine.run([A | Variant.zero([u]) for u in pool], A, buckets=[bi], progress=False,
                                     support=geo.support[bi]):
                f = M.features(zA, M.on_support(lg, None), geo.p0[bi], feature_mode)
                energy[idx] += M.sq_norm(f).sum(dim=(1, 2)).cpu().double().numpy()
        best = int(np.argmax(energy))
        added.append(pool.pop(best))
        gains.append(float(energy[best] / count))
    return Completion(chosen, added, gains, {"position_mode": engine.position_mode, "top_r": top_r})
