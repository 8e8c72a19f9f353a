"""The backup-recovery experiment (method.md §5): every selector ranks the non-seed
heads; ROC-AUC, AP and P@k against the ground-truth backups, with cost, in one table.

>>> from coax_nb import load_model, recovery
>>> from coax_nb.organisms import task_for
>>> model = load_model("organism:handwired")
>>> r = recovery(model, task_for("organism:handwired", 16), seed=["1.0", "1.1"],
...              truth=["2.0", "2.1"], selectors=["comp", "single", "atp"], progress=False)
>>> r.auc("comp"), r.auc("single") < 0.6
(1.0, True)
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Union

import numpy as np

from .engine import Engine
from .evaluate import evaluate
from .scores import _check_seed, coax_scan
from .tasks import Task
from .units import parse_units

SCAN_SELECTORS = ("comp", "ratio", "conditional", "single", "coact")
GRADIENT_SELECTORS = ("atp", "atp_gd", "eap_ig", "cond_atp", "cond_atp_gd", "cond_eap_ig",
                      "delta_atp", "delta_atp_gd", "delta_eap_ig")
SELECTORS = SCAN_SELECTORS + GRADIENT_SELECTORS
DEFAULT_SELECTORS = ("comp", "ratio", "conditional", "single", "coact", "atp", "atp_gd", "eap_ig",
                     "cond_atp", "delta_atp")
LABELS = {
    "comp": "CoAx (conditional - single)", "ratio": "CoAx ratio", "conditional": "conditional energy",
    "single": "single ablation", "coact": "co-activation affinity", "atp": "AtP", "atp_gd": "AtP* GradDrop",
    "eap_ig": "EAP-IG", "cond_atp": "conditional AtP", "cond_atp_gd": "conditional AtP* GradDrop",
    "cond_eap_ig": "conditional EAP-IG", "delta_atp": "AtP two-state difference",
    "delta_atp_gd": "GradDrop two-state difference", "delta_eap_ig": "EAP-IG two-state difference",
}


@dataclass
class RecoveryResult:
    """One row per selector (mean and std over repeats) plus every repeat's per-head scores."""

    rows: list
    scores: list  # one UnitScores per repeat, all selectors as columns
    truth: list
    seed: list
    meta: dict = field(default_factory=dict)

    def row(self, selector: str) -> dict:
        for r in self.rows:
            if r["selector"] == selector:
                return r
        raise KeyError(f"no selector {selector!r} in this result; have {[r['selector'] for r in self.rows]}")

    def auc(self, selector: str) -> float:
        return self.row(selector)["roc_auc"]

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows)

    def to_dict(self) -> dict:
        return {"type": "RecoveryResult", "rows": self.rows, "truth": [str(u) for u in self.truth],
                "seed": [str(u) for u in self.seed], "scores": [s.to_dict() for s in self.scores], "meta": self.meta}

    def to_json(self, path: Optional[os.PathLike] = None) -> str:
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            from .io import atomic_write_text

            atomic_write_text(path, text)
        return text

    def table(self) -> str:
        k = self.rows[0]["k"] if self.rows else 0
        rep = self.meta.get("repeats", 1)
        pm = rep > 1
        head = (f"{'selector':<28} {'ROC-AUC':>13} {'AP':>13} {'P@' + str(k):>13} {'seconds':>9} "
                f"{'fwd':>7} {'bwd':>7}")
        lines = [head]
        for r in self.rows:
            def cell(name):
                return f"{r[name]:.3f}" + (f" ± {r[name + '_std']:.3f}" if pm else "")
            lines.append(f"{LABELS.get(r['selector'], r['selector']):<28} {cell('roc_auc'):>13} {cell('ap'):>13} "
                         f"{cell('p_at_k'):>13} {r['seconds']:>9.3f} {r['forward_passes']:>7.1f} "
                         f"{r['backward_passes']:>7.1f}")
        lines.append(f"(truth: {len(self.truth)} backups; seed {', '.join(map(str, self.seed))}; "
                     f"{rep} prompt set{'s' if rep > 1 else ''}; cost columns are per repeat, shared by the "
                     "selectors one pass computes)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.table()

    def plot(self, ax=None):
        """Horizontal bars of ROC-AUC (± std over repeats), chance at 0.5."""
        import matplotlib.pyplot as plt

        rows = sorted(self.rows, key=lambda r: r["roc_auc"])
        if ax is None:
            fig, ax = plt.subplots(figsize=(6, 0.35 * len(rows) + 1.2))
        else:
            fig = ax.figure
        y = np.arange(len(rows))
        colors = ["#0072B2" if r["selector"] in SCAN_SELECTORS[:3] else "#999999" for r in rows]
        ax.barh(y, [r["roc_auc"] for r in rows], xerr=[r.get("roc_auc_std", 0) for r in rows], color=colors)
        ax.set_yticks(y, [LABELS.get(r["selector"], r["selector"]) for r in rows])
        ax.axvline(0.5, color="k", ls="--", lw=0.8)
        ax.set_xlim(0, 1.05)
        ax.set_xlabel("ROC-AUC at recovering the ground-truth backups")
        ax.set_title(self.meta.get("title", "Backup recovery"))
        fig.tight_layout()
        return fig


def recovery(
    model,
    task: Union[Task, Callable[[int], Task]],
    seed,
    truth,
    selectors: Sequence[str] = DEFAULT_SELECTORS,
    *,
    prompt_seeds: Optional[Sequence[int]] = None,
    k: Optional[int] = None,
    ig_steps: int = 8,
    top_r: int = 0,
    progress: bool = True,
    title: Optional[str] = None,
) -> RecoveryResult:
    """Run every selector and score it at recovering ``truth`` (non-seed heads only).

    ``model`` may be an :class:`Engine` (then ``task=None``; its cached clean run is
    reused). ``task`` is a :class:`Task`, or a function ``prompt_seed -> Task`` together with
    ``prompt_seeds`` to repeat over several prompt sets (rows then hold mean and std,
    as the paper reports). Selectors: the scan's ``comp``, ``ratio``, ``conditional``,
    ``single``, ``coact`` (one CoAx scan) and the gradient baselines ``atp``, ``atp_gd``,
    ``eap_ig`` with their ``cond_`` / ``delta_`` two-state forms.
    """
    from .baselines import attribution_scores

    unknown = [s for s in selectors if s not in SELECTORS]
    if unknown:
        raise ValueError(f"unknown selector(s) {unknown}; choose from {', '.join(SELECTORS)}")
    if not selectors:
        raise ValueError("no selectors given")
    if isinstance(model, Engine):  # reuse its cached clean run
        if task is not None or prompt_seeds:
            raise ValueError("with an Engine, pass task=None: the engine's own prompts are used")
        tasks = [model.task]
        model_of = model.model
    elif callable(task) and not isinstance(task, Task):
        if not prompt_seeds:
            raise ValueError("a task builder needs prompt_seeds=[...] to know which prompt sets to draw")
        tasks = [task(s) for s in prompt_seeds]
    else:
        if prompt_seeds:
            raise ValueError("prompt_seeds needs a task builder (a function seed -> Task), not a fixed Task")
        tasks = [task]
    if not isinstance(model, Engine):
        model_of = model
    repeats, costs = [], []
    for i, t in enumerate(tasks):
        engine = model if isinstance(model, Engine) else Engine(model, t, progress=progress)
        seed_units = _check_seed(engine, seed)
        truth_units = parse_units(truth, engine.n_layers, engine.n_heads)
        if not truth_units:
            raise ValueError("the ground-truth set is empty; pass the known backups as truth=[...]")
        overlap = [str(u) for u in truth_units if u in seed_units]
        if overlap:
            raise ValueError(f"ground-truth heads {overlap} are also in the seed set; a seed head is ablated, "
                             "not ranked — remove it from truth or from seed")
        cost = {}
        t0 = time.perf_counter()
        scores = coax_scan(engine, seed=seed_units, top_r=top_r, progress=progress)
        scan_cost = {"seconds": scores.meta["wall_seconds"], "forward_passes": scores.meta["forward_passes"],
                     "backward_passes": 0.0}
        for s in SCAN_SELECTORS:
            cost[s] = scan_cost
        methods = sorted({s.split("_", 1)[1] if s.startswith(("cond_", "delta_")) else s
                          for s in selectors if s in GRADIENT_SELECTORS}, key=["atp", "atp_gd", "eap_ig"].index)
        if methods:
            grads = attribution_scores(engine, seed=seed_units, methods=methods, ig_steps=ig_steps, progress=progress)
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
    rows = []
    for s in selectors:
        evals = [evaluate(sc, truth_units, by=s, k=k) for sc in repeats]
        kk = evals[0]["k"]
        row = {"selector": s, "k": kk, "n_truth": len(truth_units)}
        for name, key in (("roc_auc", "roc_auc"), ("ap", "ap"), ("p_at_k", f"p@{kk}")):
            vals = np.array([e[key] for e in evals])
            row[name] = float(vals.mean())
            row[name + "_std"] = float(vals.std())
        for c in ("seconds", "forward_passes", "backward_passes"):
            row[c] = float(np.mean([cost[s][c] for cost in costs]))
        rows.append(row)
    meta = {"repeats": len(tasks), "prompt_seeds": list(prompt_seeds) if prompt_seeds else None,
            "n_prompts": [len(t) for t in tasks], "ig_steps": ig_steps, "top_r": top_r,
            "model": getattr(model_of, "coax_source", None), "title": title or "Backup recovery"}
    return RecoveryResult(rows, repeats, truth_units, seed_units, meta)
