"""CoAx scores (method.md §3): single, conditional, comp, coupling, ratio, wake-up,
co-activation affinity, pairwise synergy and greedy conditional completion.

Each function says *what* to ablate and against which reference; the engine's one
energy kernel (:meth:`Engine.energies`) runs it. Results are the types in
:mod:`coax_nb.results`.
"""
from __future__ import annotations

import time
import warnings
from itertools import combinations
from typing import Optional

import numpy as np
import torch

from . import metrics as M
from .cache import cached
from .compat import renamed
from .engine import CLEAN, Engine, Term, Variant, as_engine, check_primaries, seconds_and_passes, snapshot
from .results import Completion, PairScores, UnitScores
from .tasks import check_count
from .units import Unit, all_units, parse_groups
from .variant import ablation_action

SCORE_DOCS = {
    "single": "E(z0 -> z_u): first-order ablation saliency",
    "conditional": "E(z_S -> z_{S+u}): the head's effect once the primaries S are removed",
    "comp": "CoAx = conditional - single (NaN for the primaries)",
    "coupling": "mean ||f(z_S -> z_{S+u}) - f(z0 -> z_u)||^2: all-order interaction with S",
    "ratio": "conditional / max(single, eps): amplification",
    "wakeup": "output norm with S ablated / clean output norm, at the output positions",
    "coact": "mean correlation of the head's clean output norm with the primaries' (input-side control)",
}


def _scan_meta(engine: Engine, t0: float, s0, **options) -> dict:
    return {"position_mode": engine.position_mode, **options, "n_prompts": engine.n_prompts,
            "model": getattr(engine.model, "coax_source", None),
            "task": engine.task.name if engine.task is not None else None, "engine_check": engine.self_check,
            "wall_seconds": round(time.perf_counter() - t0, 3), **seconds_and_passes(engine, s0)}


def _wanted(engine: Engine, heads) -> list[Unit]:
    if heads is None:
        return all_units(engine.n_layers, engine.n_heads)
    units = engine.units(heads)
    if not units:
        raise ValueError("heads is empty, so there is nothing to score; leave heads=None to score every head")
    return units


def single_scan(
    model_or_engine,
    task=None,
    *,
    heads=None,
    position_mode: Optional[str] = None,
    top_r: int = 0,
    feature_mode: str = "fisher_centered",
    ablation: str = "zero",
    effect: str = "fisher",
    progress: bool = True,
) -> UnitScores:
    """First-order ablation energy ``single(u) = E(z0 -> z_u)`` of every head (or only
    ``heads``; the rest are NaN). No primaries: one forward pass per head.
    ``ablation`` and ``effect`` as in :func:`coax_scan`."""
    M.check_options(feature_mode, "clean", top_r)
    ablation_action(ablation)
    engine = as_engine(model_or_engine, task, position_mode=position_mode, progress=progress)
    M.check_effect(effect, top_r, engine.task)
    t0, s0 = time.perf_counter(), snapshot(engine)
    units = sorted(_wanted(engine, heads))
    E = engine.energies([[(1.0, Term(Variant.ablate([u], ablation)))] for u in units], top_r=top_r,
                        feature_mode=feature_mode, effect=effect, desc="single ablation", progress=progress)
    single = np.full(engine.n_layers * engine.n_heads, np.nan)
    single[[u.flat(engine.n_heads) for u in units]] = E
    meta = _scan_meta(engine, t0, s0, top_r=top_r, feature_mode=feature_mode, ablation=ablation, effect=effect)
    return UnitScores(engine.n_layers, engine.n_heads, [], {"single": single}, meta)


@renamed(seed="primaries")
def coax_scan(
    model_or_engine,
    task=None,
    primaries=(),
    *,
    position_mode: Optional[str] = None,
    top_r: int = 0,
    geometry: str = "clean",
    feature_mode: str = "fisher_centered",
    ablation: str = "zero",
    effect: str = "fisher",
    eps: float = 1e-9,
    progress: bool = True,
    heads=None,
) -> UnitScores:
    """Score every head (or only ``heads``; the rest are NaN — how a shard of a
    distributed scan works): single, conditional (given the primary set S ablated),
    CoAx ``comp``, ``coupling``, amplification ``ratio``, ``wakeup`` and ``coact``.

    >>> from coax_nb import load_model, coax_scan
    >>> from coax_nb.organisms import task_for
    >>> model = load_model("organism:handwired")
    >>> s = coax_scan(model, task_for("organism:handwired", 32), primaries=["L1H0", "L1H1"], progress=False)
    >>> [str(u) for u, _ in s.top(2)]   # the two dormant backups
    ['L2H0', 'L2H1']

    ``ablation`` is what removing a head means: ``"zero"`` (the paper's), ``"mean"`` (its
    mean clean output) or ``"resample"`` (its output on the task's paired corrupted
    prompt). ``effect`` is what an ablation's effect is measured in: ``"fisher"`` (the
    centered Fisher energy, label-free), ``"kl"`` (KL from the reference distribution)
    or ``"task"`` (the drop of the task's behaviour metric, signed); docs/method.md
    says when each fits.

    Costs 1 + 1 + 2U forward passes over the prompt set (less with prefix reuse: each
    variant starts at its first ablated block, and ``S + {u}`` shares ``{u}``'s blocks
    below S), plus one per layer for the MLP-share diagnostic (``meta['mlp_share']``) in a
    full scan.
    """
    M.check_options(feature_mode, geometry, top_r)
    ablation_action(ablation)
    engine = as_engine(model_or_engine, task, position_mode=position_mode, progress=progress)
    M.check_effect(effect, top_r, engine.task)
    prim = check_primaries(engine, primaries)
    from .resources import check_scan_fits

    check_scan_fits(engine, top_r, announce=progress, primaries=prim)

    def compute():
        t0, s0 = time.perf_counter(), snapshot(engine)
        samples = scan_samples(engine, prim, top_r=top_r, geometry=geometry, feature_mode=feature_mode,
                               ablation=ablation, effect=effect, eps=eps, progress=progress, heads=heads)
        E_mlp = samples.mlp_energies()
        cols = samples.columns()
        meta = _scan_meta(engine, t0, s0, top_r=top_r, geometry=geometry, feature_mode=feature_mode,
                          ablation=ablation, effect=effect,
                          **_mlp_diagnostic(samples.mlps, E_mlp, cols["single"]))
        return UnitScores(engine.n_layers, engine.n_heads, prim, cols, meta)
    options = {"primaries": [str(u) for u in prim], "top_r": top_r, "geometry": geometry, "feature_mode": feature_mode,
               "ablation": ablation, "effect": effect, "eps": eps,
               "heads": None if heads is None else [str(u) for u in engine.units(heads)]}
    return cached("coax_scan", engine, options, compute)


class ScanSamples:
    """A CoAx scan kept per prompt, so that the scores of any reweighting of the prompts
    (a bootstrap draw, a subset) come without another forward pass: ``columns(w)`` with
    ``w`` a weight (count) per prompt; ``columns()`` is :func:`coax_scan`'s own answer.

    Holds per prompt: every energy's sum over the prompt's output positions, each head's
    summed output norm at the output positions on the clean and the S-ablated run (for
    ``wakeup``), and the sums behind the correlation of each head's clean output norm with
    the primaries' (for ``coact``)."""

    def __init__(self, engine: Engine, prim: list, energies: np.ndarray, where: list, mlps: list,
                 effect: str, eps: float, S: Variant):
        L, H = engine.n_layers, engine.n_heads
        self.n_layers, self.n_heads, self.primaries, self.mlps, self.eps = L, H, prim, mlps, eps
        self.n_prompts = engine.n_prompts
        self.energies, self.where = energies, where
        self.outputs = engine.prompt_weights(effect)
        self.is_primary = np.zeros(L * H, bool)
        self.is_primary[[u.flat(H) for u in prim if not u.is_mlp]] = True  # an MLP primary has no column
        out_rows = engine.sample_prompts("output")
        self.norm_clean = _per_prompt_sums(engine.head_output_norms(engine.clean, "output"), out_rows, engine)
        self.norm_ablated = _per_prompt_sums(engine.head_output_norms(engine.base(S), "output"), out_rows, engine)
        x = _clean_norm_samples(engine).cpu().numpy()
        all_rows = engine.sample_prompts("all")
        ids = [u.flat(H) for u in prim if not u.is_mlp]
        self.coact_ids = ids
        self.n_samples = np.bincount(all_rows, minlength=engine.n_prompts).astype(float)
        self.sx = _add_rows(x, all_rows, engine.n_prompts)
        self.sxx = _add_rows(x * x, all_rows, engine.n_prompts)
        # one primary at a time: a [samples, heads, |S|] product would multiply the peak memory by |S|
        self.sxp = np.stack([_add_rows(x * x[:, [j]], all_rows, engine.n_prompts) for j in ids], axis=-1) \
            if ids else np.zeros((engine.n_prompts, L * H, 0))

    def _weights(self, w) -> np.ndarray:
        return np.ones(self.n_prompts) if w is None else np.asarray(w, float)

    def mlp_energies(self, w=None) -> np.ndarray:
        w = self._weights(w)
        E = self.energies[len(self.where):]
        return E @ w / (self.outputs @ w)

    def columns(self, w=None) -> dict:
        """Every scan score over flat head ids, for prompt weights ``w`` (default: all 1)."""
        w = self._weights(w)
        L, H = self.n_layers, self.n_heads
        E = self.energies[:len(self.where)] @ w / (self.outputs @ w)
        cols = {name: np.full(L * H, np.nan) for name in ("single", "conditional", "coupling")}
        for (name, u), e in zip(self.where, E):
            cols[name][u.flat(H)] = e
        single, cond, coup = cols["single"], cols["conditional"], cols["coupling"]
        clean, ablated = w @ self.norm_clean, w @ self.norm_ablated
        with np.errstate(divide="ignore", invalid="ignore"):
            wakeup = np.where(clean > 0, ablated / clean, np.nan)
        wakeup[self.is_primary] = np.nan
        return {"single": single, "conditional": cond, "comp": cond - single, "coupling": coup,
                "ratio": cond / np.maximum(single, self.eps), "wakeup": wakeup, "coact": self._coact(w)}

    def _coact(self, w: np.ndarray) -> np.ndarray:
        if not self.coact_ids:  # only MLP primaries: no head output to correlate with
            return np.full(self.n_layers * self.n_heads, np.nan)
        n = w @ self.n_samples
        sx, sxx = w @ self.sx, w @ self.sxx
        var = sxx - sx * sx / n
        cov = np.einsum("i,iup->up", w, self.sxp) - np.outer(sx, sx[self.coact_ids]) / n
        with np.errstate(divide="ignore", invalid="ignore"):
            c = cov / np.sqrt(np.outer(var, var[self.coact_ids]))
        # a head whose output norm never varies co-activates with nothing: correlation 0
        c = np.where(np.outer(var, var[self.coact_ids]) > 0, c, 0.0)
        out = np.abs(np.nan_to_num(c, nan=0.0)).mean(axis=1)
        out[self.is_primary] = np.nan
        return out


def _per_prompt_sums(norms: torch.Tensor, rows: np.ndarray, engine: Engine) -> np.ndarray:
    """``[samples, L, H]`` summed into ``[prompts, L*H]`` (float64)."""
    return _add_rows(norms.reshape(len(rows), -1).double().cpu().numpy(), rows, engine.n_prompts)


def _add_rows(x: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n,) + x.shape[1:])
    np.add.at(out, rows, x)
    return out


def scan_samples(engine: Engine, prim: list, *, top_r: int = 0, geometry: str = "clean",
                 feature_mode: str = "fisher_centered", ablation: str = "zero", effect: str = "fisher",
                 eps: float = 1e-9, progress: bool = True, heads=None) -> ScanSamples:
    """The forward passes of a CoAx scan (:func:`coax_scan`), kept per prompt."""
    S = Variant.ablate(prim, ablation)
    metric = "base" if geometry == "conditional" else "clean"
    units = sorted(_wanted(engine, heads))
    # per head: single, then (outside S) conditional and coupling = ||f_cond - f_single||^2
    combos, where = [], []
    for u in units:
        single = Term(Variant.ablate([u], ablation))
        combos.append([(1.0, single)])
        where.append(("single", u))
        if u not in prim:
            cond = Term(S | Variant.ablate([u], ablation), S, metric)
            combos += [[(1.0, cond)], [(1.0, cond), (-1.0, single)]]
            where += [("conditional", u), ("coupling", u)]
    mlps = mlp_units(engine) if heads is None else []
    combos += [[(1.0, Term(Variant.ablate([u], ablation)))] for u in mlps]
    E = engine.energies(combos, top_r=top_r, feature_mode=feature_mode, effect=effect, desc="CoAx scan",
                        progress=progress, per_prompt=True)
    return ScanSamples(engine, prim, E, where, mlps, effect, eps, S)


def ablation_energy(model_or_engine, variant: Variant, task=None, *, reference: Variant = CLEAN,
                    top_r: int = 0, feature_mode: str = "fisher_centered", position_mode=None) -> float:
    """Fisher energy ``E(z_reference -> z_variant)`` of one variant, clean metric."""
    M.check_options(feature_mode, "clean", top_r)
    engine = as_engine(model_or_engine, task, position_mode=position_mode, progress=False)
    engine.check_variant(variant)
    engine.check_variant(reference, "reference")
    return float(engine.energies([[(1.0, Term(variant, reference))]], top_r=top_r, feature_mode=feature_mode)[0])


def mlp_units(engine: Engine) -> list[Unit]:
    """Every layer's MLP unit, when the model exposes each MLP's output (else none)."""
    if any(engine.arch.mlp_hook(layer) is None for layer in range(engine.n_layers)):
        return []
    return [Unit.mlp(layer) for layer in range(engine.n_layers)]


MLP_SHARE_WARNING = 0.5


def _mlp_diagnostic(mlps: list, mlp_single: np.ndarray, head_single: np.ndarray) -> dict:
    """The MLP-share diagnostic: the share of the first-order ablation effect that the MLP
    layers carry, ``sum |single(MLP)| / (sum |single(MLP)| + sum |single(head)|)``. CoAx
    ranks heads; when MLPs carry most of the behaviour (the method's stated limit) a
    head ranking says little, and the scan warns."""
    if not mlps:
        return {}
    m, h = float(np.abs(mlp_single).sum()), float(np.nansum(np.abs(head_single)))
    share = m / (m + h) if m + h > 0 else 0.0
    if share > MLP_SHARE_WARNING:
        top = max(zip(mlps, mlp_single), key=lambda x: abs(x[1]))[0]
        warnings.warn(f"MLP layers carry {share:.0%} of the first-order ablation effect on this task ({top} the "
                      "most); CoAx scores attention heads, and a head ranking says little about a behaviour that "
                      "feed-forward layers dominate (the method's stated limit, docs/method.md)", UserWarning,
                      stacklevel=3)
    return {"mlp_share": round(share, 6), "mlp_single": {str(u): float(e) for u, e in zip(mlps, mlp_single)}}


def _corr(x: torch.Tensor) -> torch.Tensor:
    x = x - x.mean(0)
    sd = x.norm(dim=0)
    c = (x.T @ x) / torch.outer(sd, sd)
    return torch.where(torch.outer(sd, sd) > 0, c, torch.full_like(c, float("nan")))


def _clean_norm_samples(engine: Engine) -> torch.Tensor:
    """Clean per-head output norms at every (prompt, position): ``[samples, U]``."""
    return engine.head_output_norms(engine.clean, "all").reshape(-1, engine.n_layers * engine.n_heads).double()


def co_activation(model_or_engine, units=None, task=None, *, position_mode=None, progress=True) -> PairScores:
    """Co-activation affinity: correlation across (prompt, position) of per-head output
    norms on the clean run (an input-side control; no ablation)."""
    engine = as_engine(model_or_engine, task, position_mode=position_mode, progress=progress)
    chosen = engine.units(units) if units is not None else all_units(engine.n_layers, engine.n_heads)
    if not chosen:
        raise ValueError("units is empty; pass the heads to correlate, or units=None for every head")
    ids = [u.flat(engine.n_heads) for u in chosen]
    c = _corr(_clean_norm_samples(engine)[:, ids]).cpu().numpy()
    return PairScores(chosen, {"affinity": c}, {"n_prompts": engine.n_prompts, "position_mode": engine.position_mode})


def synergy(
    model_or_engine,
    units,
    task=None,
    *,
    position_mode: Optional[str] = None,
    top_r: int = 0,
    feature_mode: str = "fisher_centered",
    ablation: str = "zero",
    effect: str = "fisher",
    eps: float = 1e-12,
    progress: bool = True,
) -> PairScores:
    """Pairwise synergy for a unit set M: ``I_uv = f(z0->z_uv) - f(z0->z_u) - f(z0->z_v)``,
    ``raw[u, v] = mean ||I_uv||^2`` and ``normalized = raw / sqrt(single_u single_v)``.
    The diagonal is NaN. Costs |M| + |M|(|M|-1)/2 variants. ``units`` may hold heads and
    MLP units, or be a dict ``{name: units}`` of groups, each ablated as one unit (modules
    of the grid). With a scalar ``effect``
    (``"kl"``, ``"task"``) the interaction is ``raw = e(uv) - e(u) - e(v)`` (signed) and
    ``normalized = raw / sqrt(|e(u) e(v)|)``; ``ablation`` as in :func:`coax_scan`."""
    M.check_options(feature_mode, "clean", top_r)
    ablation_action(ablation)
    engine = as_engine(model_or_engine, task, position_mode=position_mode, progress=progress)
    M.check_effect(effect, top_r, engine.task)
    chosen = parse_groups(units, engine.n_layers, engine.n_heads) if isinstance(units, dict) else engine.units(units)
    if len(chosen) < 2:
        raise ValueError(f"synergy needs at least two distinct heads, got {len(chosen)} "
                         f"({', '.join(map(str, chosen)) or 'none'}); pass e.g. units=['L0H0', 'L0H1']")

    from .resources import check_synergy_fits

    check_synergy_fits(engine, chosen, top_r, announce=progress)

    def compute():
        t0, s0 = time.perf_counter(), snapshot(engine)
        m = len(chosen)
        singles = [Term(Variant.ablate([u], ablation)) for u in chosen]
        pairs = list(combinations(range(m), 2))
        combos = [[(1.0, t)] for t in singles]
        combos += [[(1.0, Term(Variant.ablate([chosen[i], chosen[j]], ablation))), (-1.0, singles[i]),
                    (-1.0, singles[j])] for i, j in pairs]
        E = engine.energies(combos, top_r=top_r, feature_mode=feature_mode, effect=effect, desc="synergy",
                            progress=progress)
        single = E[:m]
        raw = np.zeros((m, m))
        for (i, j), e in zip(pairs, E[m:]):
            raw[i, j] = raw[j, i] = e
        np.fill_diagonal(raw, np.nan)
        norm = raw / np.sqrt(np.maximum(np.abs(np.outer(single, single)), eps))
        meta = {"position_mode": engine.position_mode, "top_r": top_r, "feature_mode": feature_mode,
                "ablation": ablation, "effect": effect,
                "n_prompts": engine.n_prompts, "single": single.tolist(), "engine_check": engine.self_check,
                "wall_seconds": round(time.perf_counter() - t0, 3), **seconds_and_passes(engine, s0)}
        return PairScores(chosen, {"normalized": norm, "raw": raw}, meta)
    # a group is its name and its members: the same name over other heads is another matrix
    options = {"units": [[str(u), [str(x) for x in getattr(u, "members", (u,))]] for u in chosen], "top_r": top_r,
               "feature_mode": feature_mode, "ablation": ablation, "effect": effect, "eps": eps}
    return cached("synergy", engine, options, compute)


@renamed(seed="primaries")
def greedy_completion(
    model_or_engine,
    primaries,
    k: int,
    task=None,
    *,
    candidates=None,
    position_mode: Optional[str] = None,
    top_r: int = 0,
    feature_mode: str = "fisher_centered",
    ablation: str = "zero",
    progress: bool = True,
) -> Completion:
    """Starting from A = S (the primaries), repeatedly add the head whose ablation energy
    given A (reference = A ablated, clean metric) is largest; ``k`` steps. ``ablation``
    as in :func:`coax_scan`."""
    M.check_options(feature_mode, "clean", top_r)
    ablation_action(ablation)
    k = check_count(k, "k", why="heads to add to the primaries")
    engine = as_engine(model_or_engine, task, position_mode=position_mode, progress=progress)
    chosen = check_primaries(engine, primaries)
    pool = engine.units(candidates) if candidates is not None else all_units(engine.n_layers, engine.n_heads)
    pool = [u for u in pool if u not in chosen]
    if not pool:
        raise ValueError("no candidate head is left outside the primaries; pass candidates= with heads that are "
                         "not primaries, or candidates=None for every head")
    if k < 1 or k > len(pool):
        raise ValueError(f"k must be between 1 and {len(pool)} (the candidates outside the primaries)")
    added, gains = [], []
    from tqdm.auto import tqdm

    for _ in tqdm(range(k), desc="greedy completion", disable=not progress, leave=False):
        A = Variant.ablate(chosen + added, ablation)
        energy = engine.energies([[(1.0, Term(A | Variant.ablate([u], ablation), A))] for u in pool], top_r=top_r,
                                 feature_mode=feature_mode, progress=False)
        best = int(np.argmax(energy))
        added.append(pool.pop(best))
        gains.append(float(energy[best]))
    return Completion(chosen, added, gains, {"position_mode": engine.position_mode, "top_r": top_r,
                                             "ablation": ablation})
