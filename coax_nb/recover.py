"""The backup-recovery experiment (method.md §5): every selector ranks the heads outside
the primaries; ROC-AUC, AP and P@k against the ground-truth backups, with cost, in one
table (a :class:`coax_nb.results.RecoveryResult`).

>>> from coax_nb import load_model, recovery
>>> from coax_nb.organisms import task_for
>>> model = load_model("organism:handwired")
>>> r = recovery(model, task_for("organism:handwired", 16), primaries=["L1H0", "L1H1"],
...              truth=["L2H0", "L2H1"], selectors=["comp", "single", "atp"], progress=False)
>>> r.auc("comp"), r.auc("single") < 0.6
(1.0, True)
"""
from __future__ import annotations

import time
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch

from .baselines import attribution_scores
from .compat import renamed
from .engine import Engine, check_primaries
from .evaluate import evaluate
from .metrics import check_options
from .results import RecoveryResult
from .scores import coax_scan
from .tasks import Task, check_choices, check_count, check_prompt_seeds
from .units import parse_units
from .variant import ablation_action

SCAN_SELECTORS = ("comp", "ratio", "conditional", "single", "coact")
GRADIENT_SELECTORS = ("atp", "atp_gd", "eap_ig", "cond_atp", "cond_atp_gd", "cond_eap_ig",
                      "delta_atp", "delta_atp_gd", "delta_eap_ig")
SELECTORS = SCAN_SELECTORS + GRADIENT_SELECTORS
DEFAULT_SELECTORS = ("comp", "ratio", "conditional", "single", "coact", "atp", "atp_gd", "eap_ig",
                     "cond_atp", "delta_atp")


@renamed(seed="primaries")
def recovery(
    model,
    task: Union[Task, Callable[[int], Task]],
    primaries,
    truth,
    selectors: Sequence[str] = DEFAULT_SELECTORS,
    *,
    prompt_seeds: Optional[Sequence[int]] = None,
    k: Optional[int] = None,
    ig_steps: int = 8,
    top_r: int = 0,
    ablation: str = "zero",
    progress: bool = True,
    title: Optional[str] = None,
) -> RecoveryResult:
    """Run every selector and score it at recovering ``truth`` (heads outside the
    ``primaries`` only; ``seed=`` is the old name of ``primaries=``).

    ``model`` may be an :class:`Engine`, or a list of Engines, one per prompt set (then
    ``task=None``; their cached clean runs are reused). ``task`` is a :class:`Task`, or a
    function ``prompt_seed -> Task`` together with ``prompt_seeds`` to repeat over several
    prompt sets (rows then hold mean and std, as the paper reports; ``meta["per_repeat"]``
    each prompt set's values). Selectors: the scan's ``comp``, ``ratio``, ``conditional``,
    ``single``, ``coact`` (one CoAx scan) and the gradient baselines ``atp``, ``atp_gd``,
    ``eap_ig`` with their ``cond_`` / ``delta_`` two-state forms. ``ablation`` (``"zero"``,
    ``"mean"`` or ``"resample"``) is what removing a head means for every selector: the
    scan's ablations and the removal the gradient baselines estimate.
    """
    check_options("fisher_centered", "clean", top_r)  # checked before any model runs
    ablation_action(ablation)
    if k is not None:
        k = check_count(k, "k", why="precision is measured over the k top-ranked heads; "
                                    "leave k=None for the number of truth heads")
    ig_steps = check_count(ig_steps, "ig_steps", why="integration steps of EAP-IG")
    selectors = check_choices(selectors, "selectors", SELECTORS, "selector")
    if prompt_seeds is not None:
        prompt_seeds = check_prompt_seeds(prompt_seeds)
    engines = None
    if isinstance(model, Engine) or (isinstance(model, (list, tuple)) and model
                                     and all(isinstance(e, Engine) for e in model)):
        engines = [model] if isinstance(model, Engine) else list(model)  # their cached clean runs are reused
        if task is not None or prompt_seeds:
            raise ValueError("with an Engine, pass task=None: the engine's own prompts are used")
        tasks = [e.task for e in engines]
        model_of = engines[0].model
    elif task is None:
        raise ValueError("give the task (e.g. ioi_task(model)) or a task builder with prompt_seeds, "
                         "or pass an Engine as the model")
    elif isinstance(task, torch.nn.Module):
        raise TypeError(f"task is a model ({type(task).__name__}); recovery(model, task, primaries, truth) takes "
                        "the model first and the task second")
    elif callable(task) and not isinstance(task, Task):
        if not prompt_seeds:
            raise ValueError("a task builder needs prompt_seeds=[...] to know which prompt sets to draw")
        tasks = [task(s) for s in prompt_seeds]
        wrong = [type(t).__name__ for t in tasks if not isinstance(t, Task)]
        if wrong:
            raise TypeError(f"the task builder returned a {wrong[0]}, not a Task; it must map a prompt seed to a "
                            "Task, e.g. lambda s: ioi_task(model, 32, prompt_seed=s)")
    else:
        if prompt_seeds:
            raise ValueError("prompt_seeds needs a task builder (a function prompt_seed -> Task), not a fixed Task")
        tasks = [task]
    if engines is None:
        model_of = model
    repeats, costs = [], []
    for i, t in enumerate(tasks):
        engine = engines[i] if engines else Engine(model, t, progress=progress)
        prim = check_primaries(engine, primaries)
        truth_units = parse_units(truth, engine.n_layers, engine.n_heads)
        if not truth_units:
            raise ValueError("the ground-truth set is empty; pass the known backups as truth=[...]")
        overlap = [str(u) for u in truth_units if u in prim]
        if overlap:
            raise ValueError(f"ground-truth heads {overlap} are also in the primary set; a primary is ablated, "
                             "not ranked — remove it from truth or from primaries")
        cost = {}
        t0 = time.perf_counter()
        scores = coax_scan(engine, primaries=prim, top_r=top_r, ablation=ablation, progress=progress)
        scan_cost = {"seconds": scores.meta["wall_seconds"], "forward_passes": scores.meta["forward_passes"],
                     "backward_passes": 0.0}
        for s in SCAN_SELECTORS:
            cost[s] = scan_cost
        methods = sorted({s.split("_", 1)[1] if s.startswith(("cond_", "delta_")) else s
                          for s in selectors if s in GRADIENT_SELECTORS}, key=["atp", "atp_gd", "eap_ig"].index)
        if methods:
            grads = attribution_scores(engine, None, prim, methods=methods, ig_steps=ig_steps, ablation=ablation,
                                       progress=progress)
            scores = scores.merged(grads)
            for m in methods:
                c = grads.meta["cost"][m]
                for s in (m, f"cond_{m}", f"delta_{m}"):
                    cost[s] = {"seconds": c["wall_seconds"], "forward_passes": c["forward_passes"],
                               "backward_passes": c["backward_passes"]}
        scores.meta["repeat"] = i
        scores.meta["recovery_seconds"] = round(time.perf_counter() - t0, 3)
        repeats.append(scores)
        costs.append(cost)
    rows, per_repeat = [], {}
    for s in selectors:
        evals = [evaluate(sc, truth_units, by=s, k=k) for sc in repeats]
        kk = evals[0]["k"]
        row = {"selector": s, "ablation": ablation, "k": kk, "n_truth": len(truth_units)}
        for name, key in (("roc_auc", "roc_auc"), ("ap", "ap"), ("p_at_k", f"p@{kk}")):
            vals = np.array([e[key] for e in evals])
            row[name] = float(vals.mean())
            row[name + "_std"] = float(vals.std())
            per_repeat.setdefault(s, {})[name] = [float(v) for v in vals]
        for c in ("seconds", "forward_passes", "backward_passes"):
            row[c] = float(np.mean([cost[s][c] for cost in costs]))
        rows.append(row)
    meta = {"repeats": len(tasks), "prompt_seeds": list(prompt_seeds) if prompt_seeds else None,
            "n_prompts": [len(t) for t in tasks], "per_repeat": per_repeat, "ig_steps": ig_steps, "top_r": top_r,
            "ablation": ablation,
            "model": getattr(model_of, "coax_source", None),
            "title": title or f"Backup recovery ({ablation} ablation)"}
    return RecoveryResult(rows, repeats, truth_units, prim, meta)
