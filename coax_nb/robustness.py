"""How far to trust a ranking, in one call (docs/robustness.md).

:func:`robustness` runs one CoAx scan (and the requested gradient baselines) keeping
every prompt's contribution, then answers four questions without further passes over
the calibration prompts:

- **bootstrap**: confidence intervals over prompts for every score of every head and
  for each selector's recovery ROC-AUC (prompts resampled with replacement; each draw's
  scores are exactly what a scan on the resampled prompts would give);
- **data efficiency**: recovery AUC (and Spearman correlation with the full pool's
  ranking) against the number of calibration prompts, from random subsets of the pool;
- **feature modes**: the same recovery with the Fisher / l2 x centered / uncentered
  feature (one more scan per mode), with bootstrap intervals;
- **held-out prompt sets**: the scan repeated on other prompt sets (held-out IOI
  templates, other prompt seeds), each set's AUC and rank agreement, and whether its AUC
  lies inside the calibration set's bootstrap interval.

>>> from coax_nb import load_model, robustness
>>> from coax_nb.organisms import task_for
>>> r = robustness(load_model("organism:handwired"), task_for("handwired", 24), ["L1H0", "L1H1"],
...                truth=["L2H0", "L2H1"], selectors=["comp", "single"], sizes=[8, 16], n_boot=50,
...                feature_modes=["fisher_centered"], progress=False)
>>> r.auc_row("comp")["lo"], r.auc_row("single")["hi"] < 0.7
(1.0, True)
"""
from __future__ import annotations

import time
from typing import Optional, Sequence

import numpy as np

from .baselines import attribution_samples
from .engine import Engine, as_engine, check_primaries, seconds_and_passes, snapshot
from .evaluate import rank_agreement, roc_auc
from .metrics import FEATURE_MODES
from .recover import GRADIENT_SELECTORS, SELECTORS
from .results import Robustness
from .scores import scan_samples
from .tasks import Task, check_choices, check_count
from .variant import ablation_action

__all__ = ["robustness", "DEFAULT_SIZES"]

DEFAULT_SIZES = (8, 16, 32, 64, 96, 192)
DEFAULT_SELECTORS = ("comp", "ratio", "conditional", "single", "atp")


def robustness(
    model_or_engine,
    task=None,
    primaries=(),
    truth=None,
    *,
    selectors: Sequence[str] = DEFAULT_SELECTORS,
    n_boot: int = 200,
    level: float = 0.95,
    sizes: Sequence[int] = DEFAULT_SIZES,
    draws: int = 20,
    feature_modes: Sequence[str] = FEATURE_MODES,
    held_out: Optional[dict] = None,
    top: int = 5,
    ablation: str = "zero",
    ig_steps: int = 8,
    rng_seed: int = 0,
    position_mode: Optional[str] = None,
    progress: bool = True,
) -> Robustness:
    """Bootstrap intervals, the data-efficiency curve, the feature-mode ablation and
    held-out prompt sets for a CoAx ranking given the primaries (see the module's
    docstring). ``truth`` (known backups) turns the rankings into recovery ROC-AUCs;
    without it the panels report rank agreement only.

    ``selectors`` are scores to rank by (the scan's ``comp``, ``ratio``, ``conditional``,
    ``single``, ``coupling``, ``wakeup``, ``coact`` and the gradient baselines ``atp``,
    ``atp_gd``, ``eap_ig`` with their ``cond_`` / ``delta_`` forms); ``n_boot`` bootstrap
    draws give ``level`` percentile intervals; ``sizes`` are the calibration-set sizes of
    the data-efficiency curve (those above the task's prompt count are left out), each
    from ``draws`` random subsets; ``feature_modes`` the feature ablation (the default
    ``fisher_centered`` is always included); ``held_out`` a dict ``name -> Task`` (e.g.
    one task per held-out template, built with the same tokenizer). ``top`` is the length
    of the compared top lists; ``rng_seed`` fixes every random draw.
    """
    selectors = check_choices(selectors, "selectors", SELECTORS + ("coupling", "wakeup", "coact"), "selector")
    n_boot = check_count(n_boot, "n_boot", 10, why="bootstrap draws; 200 or more for stable 95% intervals")
    if not isinstance(level, float) or not 0.5 <= level < 1:
        raise ValueError(f"level must be a float in [0.5, 1), the interval's coverage, got {level!r}; e.g. 0.95")
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
        raise TypeError(f"sizes must be a list of prompt counts, got {sizes!r}")
    sizes = sorted({check_count(n, "each of sizes", 2) for n in sizes})
    draws = check_count(draws, "draws", 2, why="random subsets per size")
    feature_modes = check_choices(feature_modes, "feature_modes", FEATURE_MODES, "feature mode")
    top = check_count(top, "top")
    ablation_action(ablation)
    rng_seed = check_count(rng_seed, "rng_seed", 0)
    if held_out is not None:
        if not isinstance(held_out, dict) or not held_out:
            raise TypeError("held_out must be a non-empty dict of name -> Task, e.g. "
                            "{'template 3': ioi_task(model, 64, templates=[...])}")
        wrong = [k for k, v in held_out.items() if not isinstance(v, Task)]
        if wrong:
            raise TypeError(f"held_out[{wrong[0]!r}] is a {type(held_out[wrong[0]]).__name__}, not a Task")
    engine = as_engine(model_or_engine, task, position_mode=position_mode, progress=progress)
    prim = check_primaries(engine, primaries)
    truth_units = engine.units(truth) if truth is not None else []
    if truth is not None and not truth_units:
        raise ValueError("truth is empty; pass the known backups, or leave truth=None")
    inside = [str(u) for u in truth_units if u in prim]
    if inside:
        raise ValueError(f"ground-truth heads {inside} are also in the primary set; a primary is ablated, not "
                         "ranked: remove it from truth or from primaries")
    gradient = [s for s in selectors if s in GRADIENT_SELECTORS]
    if gradient and (engine.task is None or (engine.task.targets is None and engine.task.metric_fn is None)):
        raise ValueError(f"the gradient selectors {gradient} need a behaviour metric, and these prompts have none; "
                         "drop them or build the task with targets")
    t0, s0 = time.perf_counter(), snapshot(engine)
    N = engine.n_prompts
    L, H = engine.n_layers, engine.n_heads
    rng = np.random.default_rng(rng_seed)
    boot = rng.multinomial(N, np.full(N, 1.0 / N), size=n_boot).astype(float)
    scorer = _Scorer(engine, prim, ablation, gradient, ig_steps, progress)
    keep = np.ones(L * H, bool)
    keep[[u.flat(H) for u in prim if not u.is_mlp]] = False
    labels = np.zeros(L * H, bool)
    labels[[u.flat(H) for u in truth_units if not u.is_mlp]] = True
    alpha = (1 - level) / 2

    # 1. bootstrap: every score of every head, every selector's AUC
    full = scorer.columns(None)
    drawn = [scorer.columns(w) for w in boot]
    intervals = {}
    for name in full:
        stack = np.array([d[name] for d in drawn])
        lo, hi = _percentiles(stack, alpha)
        intervals[name] = {"estimate": full[name], "lo": lo, "hi": hi, "std": _nanstd(stack)}
    auc_rows = []
    if truth_units:
        for s in selectors:
            values = np.array([_auc(d[s], labels, keep) for d in drawn])
            lo, hi = np.quantile(values, [alpha, 1 - alpha])
            auc_rows.append({"selector": s, "auc": _auc(full[s], labels, keep), "lo": float(lo), "hi": float(hi),
                             "std": float(values.std())})

    # 2. data efficiency: random subsets of the pool
    efficiency = []
    kept_sizes = [n for n in sizes if n <= N]
    for n in kept_sizes:
        masks = [np.isin(np.arange(N), rng.choice(N, n, replace=False)).astype(float) for _ in range(draws)]
        cols = [scorer.columns(m) for m in masks]
        for s in selectors:
            rhos = [rank_agreement(np.where(keep, c[s], np.nan), np.where(keep, full[s], np.nan), top)[0]
                    for c in cols]
            row = {"selector": s, "n_prompts": n, "draws": draws, "rho_mean": float(np.nanmean(rhos)),
                   "rho_std": float(np.nanstd(rhos))}
            if truth_units:
                aucs = np.array([_auc(c[s], labels, keep) for c in cols])
                row.update(auc_mean=float(aucs.mean()), auc_std=float(aucs.std()))
            efficiency.append(row)

    # 3. feature modes: one more scan per mode, the same bootstrap draws
    modes = list(dict.fromkeys(["fisher_centered"] + feature_modes))
    energy_selectors = [s for s in selectors if s in ("comp", "ratio", "conditional", "single", "coupling")]
    mode_rows = []
    for mode in modes:
        samples = scorer.scan if mode == "fisher_centered" else scan_samples(
            engine, prim, feature_mode=mode, ablation=ablation, progress=progress)
        m_full = samples.columns()
        m_drawn = [samples.columns(w) for w in boot]
        for s in energy_selectors:
            row = {"feature_mode": mode, "selector": s,
                   "rho_to_default": rank_agreement(np.where(keep, m_full[s], np.nan),
                                                    np.where(keep, full[s], np.nan), top)[0]}
            if truth_units:
                values = np.array([_auc(d[s], labels, keep) for d in m_drawn])
                lo, hi = np.quantile(values, [alpha, 1 - alpha])
                row.update(auc=_auc(m_full[s], labels, keep), lo=float(lo), hi=float(hi))
            mode_rows.append(row)

    # 4. held-out prompt sets
    held_rows = []
    for name, other in (held_out or {}).items():
        e = Engine(engine.model, other, position_mode=position_mode, progress=progress)
        o_full = _Scorer(e, check_primaries(e, prim), ablation, gradient, ig_steps, progress).columns(None)
        for s in selectors:
            rho, ovl = rank_agreement(np.where(keep, o_full[s], np.nan), np.where(keep, full[s], np.nan), top)
            row = {"set": name, "selector": s, "n_prompts": e.n_prompts, "rho_to_calibration": rho,
                   f"top{top}_overlap": ovl}
            if truth_units:
                ref = next(r for r in auc_rows if r["selector"] == s)
                a = _auc(o_full[s], labels, keep)
                row.update(auc=a, inside_interval=bool(ref["lo"] - 1e-12 <= a <= ref["hi"] + 1e-12))
            held_rows.append(row)

    meta = {"n_prompts": N, "n_boot": n_boot, "level": level, "draws": draws, "rng_seed": rng_seed,
            "sizes_left_out": [n for n in sizes if n > N],
            "held_out_templates": {k: t.info["templates"] for k, t in (held_out or {}).items()
                                   if "templates" in t.info}, "ablation": ablation, "top": top,
            "model": getattr(engine.model, "coax_source", None),
            "task": engine.task.name if engine.task is not None else None,
            "wall_seconds": round(time.perf_counter() - t0, 3), **seconds_and_passes(engine, s0)}
    return Robustness(L, H, [str(u) for u in prim], [str(u) for u in truth_units], list(selectors),
                      {k: {f: np.asarray(v, float) for f, v in d.items()} for k, d in intervals.items()},
                      auc_rows, efficiency, mode_rows, held_rows, meta)


class _Scorer:
    """Every score for a weighting of the engine's prompts: the scan's columns and the
    requested gradient baselines', from one pass each kept per prompt."""

    def __init__(self, engine: Engine, prim: list, ablation: str, gradient: list, ig_steps: int, progress: bool):
        self.scan = scan_samples(engine, prim, ablation=ablation, progress=progress)
        methods = sorted({s.split("_", 1)[1] if s.startswith(("cond_", "delta_")) else s for s in gradient},
                         key=["atp", "atp_gd", "eap_ig"].index)
        self.grads = (attribution_samples(engine, prim, methods, ig_steps, ablation, progress)[0]
                      if methods else None)

    def columns(self, w) -> dict:
        cols = self.scan.columns(w)
        if self.grads is not None:
            cols.update(self.grads.columns(w))
        return cols


def _auc(scores: np.ndarray, labels: np.ndarray, keep: np.ndarray) -> float:
    """ROC-AUC over the heads outside the primaries; a NaN score ranks last."""
    s = scores[keep]
    ok = np.isfinite(s)
    if not ok.all():
        s = np.where(ok, s, (s[ok].min() if ok.any() else 0.0) - 1.0)
    return roc_auc(s, labels[keep])


def _percentiles(stack: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.full(stack.shape[1], np.nan), np.full(stack.shape[1], np.nan)
    ok = np.isfinite(stack).all(axis=0)
    if ok.any():
        lo[ok], hi[ok] = np.quantile(stack[:, ok], [alpha, 1 - alpha], axis=0)
    return lo, hi


def _nanstd(stack: np.ndarray) -> np.ndarray:
    out = np.full(stack.shape[1], np.nan)
    ok = np.isfinite(stack).all(axis=0)
    out[ok] = stack[:, ok].std(axis=0)
    return out
