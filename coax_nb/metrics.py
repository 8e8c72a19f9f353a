"""Fisher features and energies (method.md §2), computed on the device.

For reference logits ``z_ref`` and intervened logits ``z`` on the support,
``d = z_ref - z`` and the centered Fisher feature is ``f = sqrt(p) * (d - <p, d>)``,
so ``||f||^2 = d^T (diag p - p p^T) d``: the second-order KL cost of the change.
"""
from __future__ import annotations

from typing import Optional

import torch

FEATURE_MODES = ("fisher_centered", "fisher_uncentered", "l2_centered", "l2_uncentered")
GEOMETRIES = ("clean", "conditional")
EFFECTS = ("fisher", "kl", "task")  # what one ablation's effect is measured in (method.md §2)


def check_options(feature_mode: str, geometry: str, top_r: int) -> None:
    if feature_mode not in FEATURE_MODES:
        raise ValueError(f"feature_mode must be one of {FEATURE_MODES}, got {feature_mode!r}")
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry must be one of {GEOMETRIES}, got {geometry!r}")
    if not isinstance(top_r, int) or top_r < 0:
        raise ValueError(f"top_r must be a non-negative integer (0 = full vocabulary), got {top_r!r}")
    if top_r == 1 and feature_mode.endswith("_centered"):
        raise ValueError(f"top_r=1 leaves one token in the support, where the centered feature ({feature_mode}) "
                         "is always 0 (it needs at least 2 tokens to compare), so every score would be 0; "
                         "pass top_r >= 2, or top_r=0 for the full vocabulary")


def check_effect(effect: str, top_r: int, task=None) -> None:
    if effect not in EFFECTS:
        raise ValueError(f"effect must be one of {EFFECTS}, got {effect!r}")
    if effect == "task":
        if task is None or (task.targets is None and task.metric_fn is None):
            raise ValueError("effect='task' measures the drop of the task's behaviour metric, and these prompts have "
                             "none: build the engine from a task with targets (ioi_task, an organism's task, "
                             "custom_task(answers=...)), or use effect='fisher' (label-free)")
        if 0 < top_r:
            raise ValueError(f"effect='task' reads the answer's logit, which a top-{top_r} support may not hold; "
                             "use top_r=0 (the full vocabulary)")


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """Energies are accumulated in at least fp32 (fp64 stays fp64)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def support_of(clean_logits: torch.Tensor, top_r: int) -> Optional[torch.Tensor]:
    """Fixed support: the clean top-r token ids ``[..., r]`` per position, or None (full vocab)."""
    if top_r <= 0 or top_r >= clean_logits.shape[-1]:
        return None
    return clean_logits.topk(top_r, dim=-1).indices


def on_support(logits: torch.Tensor, support: Optional[torch.Tensor]) -> torch.Tensor:
    """Gather ``logits [..., n, P, V]`` onto the support ``[n, P, r]`` (as work dtype)."""
    x = logits.to(work_dtype(logits.dtype))
    if support is None:
        return x
    return x.gather(-1, support.expand(*x.shape[:-1], support.shape[-1]))


def probs(logits_on_support: torch.Tensor) -> torch.Tensor:
    """The metric distribution; on a top-r support it is renormalised over the support."""
    return torch.softmax(logits_on_support, dim=-1)


def features(z_ref: torch.Tensor, z: torch.Tensor, p: torch.Tensor, mode: str = "fisher_centered") -> torch.Tensor:
    """Feature of the change ``z_ref -> z`` (all on the support, broadcastable)."""
    d = z_ref - z
    if mode == "fisher_centered":
        return p.sqrt() * (d - (p * d).sum(-1, keepdim=True))
    if mode == "fisher_uncentered":
        return p.sqrt() * d
    if mode == "l2_centered":
        return d - d.mean(-1, keepdim=True)
    if mode == "l2_uncentered":
        return d
    raise ValueError(f"feature_mode must be one of {FEATURE_MODES}, got {mode!r}")


def sq_norm(f: torch.Tensor) -> torch.Tensor:
    """``||f||^2`` per (prompt, position) (a contraction: no squared copy of ``f``)."""
    return torch.einsum("...v,...v->...", f, f)


def kl_divergence(ref_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(p_ref || p) per position, in nats; in float64, since a small KL is a difference
    of nearly equal log-probabilities (in fp32 it can even come out negative)."""
    lp_ref = torch.log_softmax(ref_logits.double(), -1)
    lp = torch.log_softmax(logits.double(), -1)
    return (lp_ref.exp() * (lp_ref - lp)).sum(-1)
