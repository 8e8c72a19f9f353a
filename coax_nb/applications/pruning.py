"""Repair-aware pruning: remove heads greedily by the loss they leave given everything
already removed, against static orders scored once on the intact model."""
from __future__ import annotations

import json
import numbers
import os
import time
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np

from ..baselines import attribution_scores
from ..compat import renamed
from ..engine import CLEAN, Engine, Variant, seconds_and_passes, snapshot
from ..io import atomic_write_text, check_writable_file
from ..models import weights_fingerprint
from ..results import Pruning
from ..scores import coax_scan, single_scan
from ..tasks import Task, check_choices, check_count, tokenizer_fingerprint
from ..units import Unit, all_units
from ..variant import ablation_action
from .common import task_loss, variant_means

STATIC_ORDERS = ("single", "co_ablation", "magnitude", "wanda", "taylor", "random")


def _head_weight_norms(engine: Engine) -> np.ndarray:
    W_O = engine.arch.W_O.detach().double()  # [L, H, Dh, d]
    W_V = engine.arch.W_V.detach().double()  # [L, H, d, Dh]
    return (W_O.flatten(2).norm(dim=-1) * W_V.flatten(2).norm(dim=-1)).flatten().cpu().numpy()


def _static_scores(engine: Engine, order: str, primaries: list[Unit], rng_seed: int, ablation: str) -> np.ndarray:
    """Importance per head (lower = pruned first); the ablation-based orders remove heads
    the way ``ablation`` says."""
    U = engine.n_layers * engine.n_heads
    if order == "random":
        return np.random.default_rng(rng_seed).random(U)
    if order == "magnitude":
        return _head_weight_norms(engine)
    if order == "wanda":  # activation x weight: mean |z W_O| over the calibration prompts x |W_V||W_O|
        return engine.mean_output_norms(engine.clean) * _head_weight_norms(engine)
    if order == "taylor":
        return attribution_scores(engine, methods=["atp"], ablation=ablation, progress=False)["atp"]
    if order == "single":
        return single_scan(engine, ablation=ablation, progress=False)["single"]
    if order == "co_ablation":
        cond = coax_scan(engine, primaries=primaries, ablation=ablation, progress=False)["conditional"].copy()
        cond[np.isnan(cond)] = np.inf  # primaries: kept until last
        return cond
    raise ValueError(f"unknown pruning order {order!r}; choose from repair_aware, {', '.join(STATIC_ORDERS)}")


def _write_checkpoint(path: Optional[Path], state: dict) -> None:
    if path is not None:
        atomic_write_text(path, json.dumps(state))


def _run_fingerprint(model, calibration: Task, evaluation: Task, options: dict) -> dict:
    tok = tokenizer_fingerprint(getattr(model, "tokenizer", None)) or calibration.tokenizer_fingerprint
    return {"model": weights_fingerprint(model), "tokenizer": tok,
            "prompts": {"calibration": calibration.fingerprint(), "evaluation": evaluation.fingerprint()},
            "options": options}


def _read_checkpoint(path: Path, fingerprint: dict) -> dict:
    """The saved state, if it belongs to this very run; else a ValueError saying what differs."""
    fix = "delete the file or pass a new checkpoint path to start over"
    if path.is_dir():
        raise ValueError(f"checkpoint {path} is a folder; pass a file path, e.g. {path / 'prune.json'}")
    try:
        saved = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"checkpoint {path} is not a pruning checkpoint (not JSON: {e}); {fix}") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("orders"), dict):
        raise ValueError(f"checkpoint {path} is not a pruning checkpoint; {fix}")
    old = saved.get("fingerprint")
    if not isinstance(old, dict):
        raise ValueError(f"checkpoint {path} predates fingerprints: it does not record which model, prompts and "
                         f"options it belongs to, so resuming it could return another run's curves; {fix}")
    differ = []
    if old.get("model") != fingerprint["model"]:
        differ.append(f"model (weights hash {old.get('model')} in the checkpoint, {fingerprint['model']} now)")
    if old.get("tokenizer") != fingerprint["tokenizer"]:
        differ.append(f"tokenizer ({old.get('tokenizer')} in the checkpoint, {fingerprint['tokenizer']} now)")
    for part, h in fingerprint["prompts"].items():
        was = (old.get("prompts") or {}).get(part)
        if was != h:
            differ.append(f"{part} prompts (hash {was} in the checkpoint, {h} now)")
    # checkpoints written before the ablation option existed were zero-ablation runs
    was, now = {"ablation": "zero", **(old.get("options") or {})}, fingerprint["options"]
    changed = [f"{k}: {was.get(k)!r} in the checkpoint, {now.get(k)!r} now"
               for k in sorted(set(was) | set(now)) if was.get(k) != now.get(k)]
    if changed:
        differ.append(f"other settings ({'; '.join(changed)})")
    if differ:
        raise ValueError(f"checkpoint {path} belongs to another run; what differs: {', '.join(differ)}. "
                         f"Resuming needs the same model, prompts, tokenizer and options: {fix}")
    return saved


@renamed(seed="primaries")
def prune(
    model,
    calibration: Task,
    evaluation: Task,
    *,
    orders: Sequence[str] = ("repair_aware",) + STATIC_ORDERS,
    group_size: int = 1,
    max_fraction: float = 1.0,
    primaries=None,
    checkpoint: Union[str, os.PathLike, None] = None,
    stop_after: Optional[int] = None,
    rng_seed: int = 0,
    ablation: str = "zero",
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
    ``primaries``, default the top-3 single-ablation heads), ``magnitude`` (|W_V| |W_O|),
    ``wanda`` (mean output norm x weight norm), ``taylor`` (|AtP| of the task metric),
    ``random``. ``ablation`` is how a head is removed, in the pruning and in the orders
    that ablate (``"zero"``, ``"mean"`` or ``"resample"``; resample needs both tasks'
    paired corrupted prompts).

    ``checkpoint``: a JSON file written atomically after every step; calling again with
    the same arguments resumes from it and gives the same curves as an uninterrupted run.
    It records a fingerprint of the run (a hash of the model's weights, the tokenizer,
    hashes of both prompt sets with their targets, and the options); a checkpoint of
    any other run is refused, naming what differs.
    ``stop_after``: stop after this many repair-aware steps (as an interrupt would).
    ``on_step(order, fraction_pruned, loss)`` is called for every new point, e.g.
    ``on_step=lambda o, x, y: curves_widget.append(o, x, y)`` for a live chart.
    """
    orders = check_choices(orders, "orders", ("repair_aware",) + STATIC_ORDERS, "pruning order")
    ablation_action(ablation)
    if isinstance(model, Engine):
        raise TypeError("prune takes the model, not an Engine: it builds engines over the calibration and the "
                        "evaluation prompts; pass engine.model")
    for name, t in (("calibration", calibration), ("evaluation", evaluation)):
        if not isinstance(t, Task):
            raise TypeError(f"{name} must be a Task (prompts with targets, e.g. ioi_task(model) or "
                            f"induction_task(model)), got {type(t).__name__}")
        if t.targets is None:
            raise ValueError(f"the {name} task {t.name!r} has no targets, so there is no loss to prune by; build it "
                             "with answers (custom_task(..., answers=[...])) or use induction_task")
    if on_step is not None and not callable(on_step):
        raise TypeError(f"on_step must be a function (order, fraction_pruned, loss), got {type(on_step).__name__}")
    group_size = check_count(group_size, "group_size", why="heads removed per step")
    rng_seed = check_count(rng_seed, "rng_seed", 0)
    if stop_after is not None:
        stop_after = check_count(stop_after, "stop_after", 0)
    if isinstance(max_fraction, bool) or not isinstance(max_fraction, numbers.Real) or not 0 < max_fraction <= 1:
        raise ValueError(f"max_fraction must be a number in (0, 1] (the share of heads to remove), "
                         f"got {max_fraction!r}")
    max_fraction = float(max_fraction)
    cal = Engine(model, calibration, progress=False)
    ev = Engine(model, evaluation, progress=False)
    every = all_units(cal.n_layers, cal.n_heads)
    U = len(every)
    n_steps = int(np.ceil(max_fraction * U / group_size))
    settings = {"orders": list(orders), "group_size": group_size, "max_fraction": max_fraction,
                "n_units": U, "rng_seed": rng_seed, "calibration": len(calibration), "evaluation": len(evaluation),
                "ablation": ablation}
    given = None if primaries is None else [str(u) for u in cal.units(primaries)]
    path = Path(checkpoint) if checkpoint is not None else None
    state = {"settings": settings, "orders": {}, "steps": []}
    if path is not None:
        fingerprint = _run_fingerprint(cal.model, calibration, evaluation, dict(settings, primaries=given))
        if path.exists():
            state = _read_checkpoint(path, fingerprint)
        else:
            state["fingerprint"] = fingerprint
            check_writable_file(path, "the checkpoint")
            _write_checkpoint(path, state)  # an unwritable path fails now, not after the first order

    def loss_after(engine: Engine, removed_lists: list[list[Unit]]) -> np.ndarray:
        return variant_means(engine, [Variant.ablate(r, ablation) if r else CLEAN for r in removed_lists], task_loss)

    if primaries is not None:
        P = cal.units(primaries)
    elif "co_ablation" in orders:  # default: the top-3 single-ablation heads
        P = [every[i] for i in np.argsort(-single_scan(cal, ablation=ablation, progress=False)["single"])[:3]]
    else:
        P = []

    def result(stopped: bool) -> Pruning:
        done = {n: {"removed": o["removed"], "loss": o["loss"]} for n, o in state["orders"].items()}
        return Pruning(done, list(state["steps"]), P, dict(settings, stopped=stopped))

    from tqdm.auto import tqdm

    for name in orders:
        if name in state["orders"] and state["orders"][name].get("done"):
            continue
        if name != "repair_aware":
            score = _static_scores(cal, name, P, rng_seed, ablation)
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
                return result(stopped=True)
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
    return result(stopped=False)
