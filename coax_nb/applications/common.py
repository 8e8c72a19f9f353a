"""What the applications share: per-variant means of a per-prompt quantity, the task
loss and the per-prompt accuracy."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from ..engine import Engine, Variant
from ..tasks import Task


def variant_means(engine: Engine, variants: Sequence[Variant], fn: Callable) -> np.ndarray:
    """``fn(task, logits)`` -> per-prompt values, averaged, for each variant (one batched run)."""
    return np.array([float(fn(engine.task, lg).mean()) for lg in engine.logits(list(variants))])


def metric_of(task: Task, logits) -> torch.Tensor:
    return task.metric(logits)


def task_loss(task: Task, logits) -> torch.Tensor:
    """Per-prompt cross-entropy of the target token at the counted positions (nats)."""
    if not isinstance(task, Task):
        raise TypeError(f"task_loss(task, logits) takes the Task first, got {type(task).__name__}")
    if task.targets is None:
        raise ValueError(f"task {task.name!r} has no targets, so it has no loss")
    if len(logits) != len(task):
        raise ValueError(f"got logits for {len(logits)} prompts; task {task.name!r} has {len(task)}")
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


def prompt_accuracy(task: Task, logits) -> torch.Tensor:
    """Per-prompt share of counted positions answered right (Task.accuracy pools them
    over prompts instead)."""
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

