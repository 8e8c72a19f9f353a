"""First-order (gradient) baselines of method.md §4, computed in batches through the engine.

Every estimator scores each head by how much ablating it -- replacing its output ``z``
by ``r``: zeros (``ablation="zero"``, the default), its mean clean output (``"mean"``) or
its output on the paired corrupted prompt (``"resample"``); see
:meth:`Engine.replacement_at` -- would change the task's behaviour metric ``m`` (IOI
logit difference, induction answer log-prob, or any differentiable ``metric_fn``):

- ``atp``: per prompt ``a = sum_{pos, d_head} (z - r) * dm/dz`` (the first-order
  estimate of the ablation's effect ``m(ablated) - m`` is ``-a``); score = mean over
  prompts of ``|a|``.
- ``atp_gd`` (AtP* GradDrop): for each layer l, the same estimate with layer l's
  residual contribution detached from the backward pass (forward unchanged);
  score = mean over prompts of ``sum_l |a_l| / (L - 1)``.
- ``eap_ig``: for one attention layer at a time, its head outputs are moved to
  ``r + alpha (z - r)``, ``alpha = k / steps`` (k = 1..steps; the rest of the model
  recomputes from there), gradients averaged over the steps; attribution =
  ``(r - z) * mean grad`` summed per head, averaged signed over prompts, ranked by
  ``|.|`` (the score is the absolute value).
- ``cond_*``: the same estimator in the graph with the primaries removed (the same
  ablation); ``delta_*``: ``cond_* - *``, the two-state difference.

One backward pass covers a whole batch of same-length prompts (prompts do not interact, so the
gradient of the summed metric is every prompt's own gradient).
"""
from __future__ import annotations

import time
from typing import Optional, Sequence

import numpy as np
import torch

from .cache import cached
from .compat import renamed
from .engine import CLEAN, BatchView, Engine, Variant, as_engine, check_primaries, seconds_and_passes, snapshot
from .results import UnitScores
from .tasks import check_choices, check_count
from .variant import ablation_action

METHODS = ("atp", "atp_gd", "eap_ig")


def _per_head(delta: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``sum over positions and d_head of delta * g`` -> [n, H]."""
    return (delta * g).sum(dim=(1, 3)).double()


def _atp_terms(engine: Engine, bi: BatchView, zs, gs, ablation: str) -> torch.Tensor:
    """Per prompt and head ``a = sum (z - r) * grad`` -> [n, L, H]: minus the first-order
    effect of replacing ``z`` by the ablation's replacement ``r``."""
    return torch.stack([_per_head(z - engine.replacement_at(bi, layer, ablation), g)
                        for layer, (z, g) in enumerate(zip(zs, gs))], 1)


def _atp(engine: Engine, bi: BatchView, variant: Variant, ablation: str = "zero") -> torch.Tensor:
    zs, gs, _ = engine.gradients(bi, variant)
    return _atp_terms(engine, bi, zs, gs, ablation)


def _atp_graddrop(engine: Engine, bi: BatchView, variant: Variant, ablation: str = "zero") -> torch.Tensor:
    L = engine.n_layers
    total = 0
    for drop in range(L):
        zs, gs, _ = engine.gradients(bi, variant, drop_layer=drop)
        total = total + _atp_terms(engine, bi, zs, gs, ablation).abs()
    return total / max(L - 1, 1)


def _eap_ig(engine: Engine, bi: BatchView, variant: Variant, steps: int, ablation: str = "zero") -> torch.Tensor:
    per_layer = []
    for layer in range(engine.n_layers):
        rep = engine.replacement_at(bi, layer, ablation)
        grad_sum, z_clean = 0, None
        for k in range(1, steps + 1):  # the path from the replacement (alpha = 0) to z (alpha = 1)
            zs, gs, _ = engine.gradients(bi, variant, scaled_layer=layer, alpha=k / steps, scaled_from=rep)
            grad_sum = grad_sum + gs[layer]
            if k == steps:
                z_clean = zs[layer]
        per_layer.append(_per_head(rep - z_clean, grad_sum / steps))
    return torch.stack(per_layer, 1)


@renamed(seed="primaries")
def attribution_scores(
    model_or_engine,
    task=None,
    primaries=(),
    *,
    methods: Sequence[str] = METHODS,
    ig_steps: int = 8,
    ablation: str = "zero",
    position_mode: Optional[str] = None,
    progress: bool = True,
) -> UnitScores:
    """Gradient baselines for every head, intact and (when ``primaries`` are given) in
    the primaries-ablated graph, as one :class:`UnitScores` with columns ``atp``, ``atp_gd``,
    ``eap_ig``, ``cond_*`` and ``delta_*``.

    Costs per prompt: AtP 1 forward+backward, GradDrop L, EAP-IG ``L x ig_steps``;
    doubled with primaries. ``meta['cost']`` records seconds and passes per method.
    ``ablation`` is the removal the estimates are of, and how the primaries are removed
    in the conditional graph: ``"zero"``, ``"mean"`` or ``"resample"`` (as in
    :func:`coax_nb.coax_scan`).
    """
    methods = check_choices(methods, "methods", METHODS, "attribution method")
    ablation_action(ablation)
    ig_steps = check_count(ig_steps, "ig_steps", why="integration steps of EAP-IG")
    engine = as_engine(model_or_engine, task, position_mode=position_mode, progress=progress)
    seed_units = engine.units(primaries)  # none given (None, (), []): the intact graph only
    if seed_units:
        seed_units = check_primaries(engine, seed_units)
    L, H = engine.n_layers, engine.n_heads

    def compute():
        samples, cost, t_start = attribution_samples(engine, seed_units, methods, ig_steps, ablation, progress)
        columns = samples.columns()
        meta = {"ablation": ablation, "ig_steps": ig_steps, "n_prompts": engine.n_prompts,
                "position_mode": engine.position_mode, "model": getattr(engine.model, "coax_source", None),
                "cost": cost, "engine_check": engine.self_check,
                "wall_seconds": round(time.perf_counter() - t_start, 3)}
        return UnitScores(L, H, seed_units, columns, meta)
    options = {"primaries": [str(u) for u in seed_units], "methods": list(methods), "ig_steps": ig_steps,
               "ablation": ablation}
    return cached("attribution_scores", engine, options, compute)


class AttributionSamples:
    """The gradient baselines kept per prompt: ``columns(w)`` gives every column of
    :func:`attribution_scores` for a weight (count) per prompt, without another pass;
    ``columns()`` is its own answer."""

    def __init__(self, per_prompt: dict, is_seed: np.ndarray, conditional: bool):
        self.per_prompt, self.is_seed, self.conditional = per_prompt, is_seed, conditional
        self.n_prompts = len(next(iter(per_prompt.values())))

    def columns(self, w=None) -> dict:
        w = np.ones(self.n_prompts) if w is None else np.asarray(w, float)
        out = {}
        for name, rows in self.per_prompt.items():
            score = w @ rows / w.sum()
            out[name] = np.abs(score) if name.endswith("eap_ig") else score  # EAP-IG: |.| of the signed mean
        if self.conditional:
            for method in [n for n in self.per_prompt if n in METHODS]:
                out[f"cond_{method}"][self.is_seed] = np.nan
                out[f"delta_{method}"] = out[f"cond_{method}"] - out[method]
        return out


def attribution_samples(engine: Engine, seed_units: list, methods: Sequence[str], ig_steps: int, ablation: str,
                        progress: bool) -> tuple[AttributionSamples, dict, float]:
    """The passes of :func:`attribution_scores`, kept per prompt; with the cost per method
    and the start time."""
    L, H = engine.n_layers, engine.n_heads
    states = [("", CLEAN)] + ([("cond_", Variant.ablate(seed_units, ablation))] if seed_units else [])
    is_seed = np.zeros(L * H, bool)
    for u in seed_units:
        if not u.is_mlp:
            is_seed[u.flat(H)] = True
    from tqdm.auto import tqdm

    cost_per = {"atp": 1, "atp_gd": L, "eap_ig": L * ig_steps}
    bar = tqdm(total=sum(cost_per[m] for m in methods) * len(states) * engine.n_prompts,
               desc="gradient baselines", unit="backward", disable=not progress, leave=False)
    per_prompt, cost = {}, {}
    t_start = time.perf_counter()
    for method in methods:
        s0, t0 = snapshot(engine), time.perf_counter()
        for prefix, variant in states:
            def per_batch(batch, method=method, variant=variant):
                if method == "atp":
                    est = _atp(engine, batch, variant, ablation).abs()
                elif method == "atp_gd":
                    est = _atp_graddrop(engine, batch, variant, ablation)
                else:
                    est = _eap_ig(engine, batch, variant, ig_steps, ablation)  # signed; |.| after averaging
                bar.update(cost_per[method] * batch.size)
                return est.cpu()
            per_prompt[prefix + method] = engine.per_prompt(per_batch).reshape(engine.n_prompts, -1).double().numpy()
        cost[method] = {**seconds_and_passes(engine, s0), "wall_seconds": round(time.perf_counter() - t0, 4)}
    bar.close()
    return AttributionSamples(per_prompt, is_seed, bool(seed_units)), cost, t_start
