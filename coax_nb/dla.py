"""Direct logit attribution (DLA) of each head to the task's behaviour metric.

A head's DLA is its write into the residual stream (``z @ W_O``), passed through the
final norm with the run's own scale held fixed (centre for LayerNorm, divide by the
scale, multiply by the norm's gain) and read off the unembedding along the metric's
direction: ``W_U[:, correct] - W_U[:, distractor]`` for a logit-difference task,
``W_U[:, correct]`` otherwise. It is the linear, label-using quantity Wang et al.
used to find GPT-2's backup name movers, and it is the ground-truth criterion of the
trained organisms — CoAx never sees it.
"""
from __future__ import annotations

import math
import numbers
from typing import Optional

import numpy as np
import torch

from .engine import CLEAN, BatchView, Engine, Variant
from .tasks import check_count
from .units import Unit


def _answer_directions(engine: Engine, batch: BatchView) -> tuple[torch.Tensor, torch.Tensor]:
    """``[n, P, d]`` unembedding directions and ``[n, P]`` weights (1 where counted)."""
    task = batch.task
    W_U = engine.arch.W_U.detach().to(engine.dtype)  # [d, V]
    tgt = torch.tensor(task.targets, device=engine.device)
    keep = (tgt >= 0).to(engine.dtype)
    direction = W_U.T[tgt.clamp(min=0)]
    if task.distractors is not None:
        dis = torch.tensor(task.distractors, device=engine.device)
        direction = direction - W_U.T[dis.clamp(min=0)]
    return direction, keep


def _check_engine(engine, fn: str) -> None:
    if not isinstance(engine, Engine):
        raise TypeError(f"{fn} takes an Engine (it reuses the engine's cached runs), got {type(engine).__name__}: "
                        f"{fn}(Engine(model, task))")


def head_dla(engine: Engine, variant: Variant = CLEAN) -> np.ndarray:
    """Mean DLA of every head (flat ``[L*H]``) under ``variant``, averaged over the
    counted output positions of every prompt. Ablated heads read 0 (zero ablation)
    or their replacement's attribution (mean/freeze/patch)."""
    _check_engine(engine, "head_dla")
    if engine.task is None or engine.task.targets is None:
        raise ValueError("direct logit attribution needs a task with targets (e.g. ioi_task or an organism's task)")
    run = engine.base(engine.check_variant(variant))
    W_O = engine.arch.W_O.detach().to(engine.dtype)  # [L, H, Dh, d]
    gain = engine.arch.final_norm_gain().to(engine.device, engine.dtype) * engine.arch.logit_multiplier()
    L, H = engine.n_layers, engine.n_heads

    def batch_sum(batch):
        scale = engine.final_scale_at(run, batch)
        if scale is None:
            raise ValueError("direct logit attribution needs the final norm's scale, and this model's bridge "
                             "does not expose it")
        direction, keep = _answer_directions(engine, batch)
        total = torch.zeros(L * H + 1, dtype=torch.float64, device=engine.device)
        for layer in range(L):
            out = torch.einsum("nphe,hed->nphd", engine.outputs_at(run, batch, layer), W_O[layer])
            if engine.arch.final_norm_centers:  # LayerNorm centres before scaling; RMSNorm does not
                out = out - out.mean(-1, keepdim=True)
            out = out / scale[:, :, None] * gain
            dla = torch.einsum("nphd,npd->nph", out, direction)
            total[layer * H:(layer + 1) * H] = (dla * keep[..., None]).sum((0, 1)).double()
        total[-1] = keep.sum().double()  # counted positions
        return total

    total = engine.sum_over_batches(batch_sum)
    return (total[:-1] / max(total[-1].item(), 1.0)).cpu().numpy()


def head_dla_at(engine: Engine, prompt: int, variant: Variant = CLEAN) -> tuple[np.ndarray, np.ndarray]:
    """DLA of every head at each output position of one prompt: ``([P, L*H] values,
    [P] weights)``, the weight 1 where the position is counted by the task's metric (the
    same terms :func:`head_dla` averages)."""
    _check_engine(engine, "head_dla_at")
    if engine.task is None or engine.task.targets is None:
        raise ValueError("direct logit attribution needs a task with targets (e.g. ioi_task or an organism's task)")
    if isinstance(prompt, bool) or not isinstance(prompt, (int, np.integer)) or not 0 <= prompt < engine.n_prompts:
        raise ValueError(f"prompt must be an index 0..{engine.n_prompts - 1} of the engine's prompts, got {prompt!r}")
    run = engine.base(engine.check_variant(variant))
    W_O = engine.arch.W_O.detach().to(engine.dtype)
    gain = engine.arch.final_norm_gain().to(engine.device, engine.dtype) * engine.arch.logit_multiplier()
    bi, b = next((i, b) for i, b in enumerate(engine.buckets) if prompt in b.index)
    batch = BatchView(bi, len(b.index), b.positions, engine.task.subset(b.index))
    row = b.index.index(prompt)
    scale = engine.final_scale_at(run, batch)
    if scale is None:
        raise ValueError("direct logit attribution needs the final norm's scale, and this model's bridge does not "
                         "expose it")
    direction, keep = _answer_directions(engine, batch)
    out = []
    for layer in range(engine.n_layers):
        w = torch.einsum("phe,hed->phd", engine.outputs_at(run, batch, layer)[row], W_O[layer])
        if engine.arch.final_norm_centers:
            w = w - w.mean(-1, keepdim=True)
        w = w / scale[row][:, None] * gain
        out.append(torch.einsum("phd,pd->ph", w, direction[row]))
    return torch.cat(out, 1).double().cpu().numpy(), keep[row].double().cpu().numpy()


def dla_ground_truth(engine: Engine, n_primaries: Optional[int] = None, primary_share: float = 0.25,
                     rise_threshold: float = 0.1) -> dict:
    """The labelled causal criterion for primaries and backups (independent of CoAx).

    - primaries: the ``n_primaries`` heads with the largest clean DLA; when not given,
      every head whose clean DLA is at least ``primary_share`` x the largest head's.
    - backups: non-primary heads whose DLA rises by more than ``rise_threshold`` x the
      primaries' summed clean DLA when the primaries are zero-ablated.
    """
    _check_engine(engine, "dla_ground_truth")
    H, U = engine.n_heads, engine.n_layers * engine.n_heads
    if n_primaries is not None:
        n_primaries = check_count(n_primaries, "n_primaries", why="heads taken as primaries")
        if n_primaries >= U:
            raise ValueError(f"n_primaries={n_primaries} leaves no head of the {U} to be a backup; pass at most {U - 1}")
    if isinstance(primary_share, bool) or not isinstance(primary_share, numbers.Real) or not 0 < primary_share <= 1:
        raise ValueError(f"primary_share must be a number in (0, 1] (a share of the largest head's DLA), got "
                         f"{primary_share!r}")
    if isinstance(rise_threshold, bool) or not isinstance(rise_threshold, numbers.Real) \
            or not 0 <= rise_threshold < math.inf:
        raise ValueError(f"rise_threshold must be a finite number >= 0 (a share of the primaries' DLA), got "
                         f"{rise_threshold!r}")
    clean = head_dla(engine)
    order = np.argsort(-clean)
    if n_primaries is None:
        if clean[order[0]] <= 0:
            raise ValueError("no head has a positive direct logit attribution on this task, so none is a primary "
                             "by share of the largest; pass n_primaries= to take the top heads anyway")
        prim = [int(i) for i in order if clean[i] >= primary_share * clean[order[0]]]
    else:
        prim = [int(i) for i in order[:n_primaries]]
    primaries = [Unit(i // H, i % H) for i in prim]
    ablated = head_dla(engine, Variant.zero(primaries))
    rise = ablated - clean
    budget = float(clean[prim].sum())
    backups = [Unit(int(i) // H, int(i) % H) for i in np.argsort(-rise)
               if i not in prim and rise[i] > rise_threshold * budget]
    return {"primaries": primaries, "backups": backups, "clean_dla": clean, "ablated_dla": ablated,
            "rise": rise, "threshold_logits": rise_threshold * budget}
