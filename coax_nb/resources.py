"""The one memory planner: how many variants go through one batched forward, how many
feature tensors the energy kernel holds at once, and what a whole scan will cost --
known before it starts. The engine asks :func:`plan_batch` for every batch it runs;
:func:`estimate_scan` and :func:`estimate_synergy` report the same plan, with the work and
a rough time, for a CoAx scan and a synergy matrix."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from itertools import combinations
from typing import Optional

import torch

log = logging.getLogger("coax_nb")


@dataclass(frozen=True)
class BatchPlan:
    chunk_variants: int  # variants per batched forward (rows = variants x prompts)
    feature_terms: int  # new Fisher-feature tensors the energy kernel computes per group
    activation_bytes: int  # one chunk's activations and logits
    feature_bytes: int  # one group's features with their temporaries
    shared_variants: int  # variants in flight at once when they share prefixes (their residuals)


def working_budget(device: torch.device) -> float:
    """Bytes for activations and features: half the free GPU memory, 1.5 GiB on the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return 0.5 * free
    return 1.5 * 2**30


# On a CPU an allocation of 32 MiB or more (glibc's largest mmap threshold) comes as fresh
# pages from the kernel, each faulted in on first touch: one elementwise pass over a 33 MiB
# tensor took 9.0 ms, over a 30 MiB one 1.8 ms. A chunk is sized so that each of its tensors
# (the MLP's hidden layer, the queries, keys and values, the attention scores, the logits) stays
# below that, with a mebibyte to spare for what the allocators add; larger chunks run the
# matmuls no faster (benchmarks/chunks.py, its README).
CPU_LARGEST_TENSOR_BYTES = 31 * 2**20


def plan_batch(arch, dtype: torch.dtype, device: torch.device, n: int, length: int, positions: int,
               width: int, max_chunk_rows: Optional[int] = None) -> BatchPlan:
    """Plan for ``n`` prompts of ``length`` tokens read at ``positions`` output positions,
    ``width`` logits each (the vocabulary, or a fixed top-r support)."""
    budget = working_budget(device)
    bytes_el = torch.finfo(dtype).bits // 8
    work_el = 8 if dtype == torch.float64 else 4  # energies are accumulated in at least fp32
    # activations in the model's dtype, plus the logits turned into features with a few temporaries
    block_bytes = bytes_el * length * (6 * arch.d_model + 2 * arch.d_mlp + 3 * arch.n_heads * length)
    per_row = block_bytes + work_el * 6 * positions * width
    if max_chunk_rows is not None:
        chunk = max(1, max_chunk_rows // n)
    else:
        chunk = max(1, int(2 * budget / 3 // (per_row * n)))
        if device.type == "cpu":
            largest = max(bytes_el * length * max(arch.d_mlp, 3 * arch.d_model, arch.n_heads * length),
                          work_el * positions * width)  # per prompt-row
            chunk = min(chunk, max(1, CPU_LARGEST_TENSOR_BYTES // (largest * n)))
    # a group's features (and two temporaries of each) take at most a third of the budget, 8 GiB at most
    per_term = 3 * work_el * n * positions * width
    terms = max(1, int(min(budget / 3, 2**33) // per_term))
    # variants run block by block hold two residuals each (entering and leaving a block): a third
    shared = max(chunk, int(budget / 3 // (2 * bytes_el * n * length * arch.d_model)))
    return BatchPlan(chunk, terms, chunk * n * per_row, terms * per_term, shared)


def estimate_scan(engine, top_r: int = 0, chunk_variants: Optional[int] = None, primaries=()) -> dict:
    """Work, memory and a rough time of a CoAx scan on this engine, before running it (with
    ``primaries``, the units of S, the conditional ablations' shared blocks counted)."""
    L, H = engine.n_layers, engine.n_heads
    # forward block-rows: each head's single ablation from its own layer on (prefix reuse); its
    # conditional one shares the single's blocks below S's first layer (shared prefixes: the
    # direct path only)
    shares = engine.self_check.get("path") == "direct"
    first = min((u.layer for u in primaries), default=0) if shares else 0
    block_rows = engine.workload()["prompts"] * H * sum(2 * L - layer - max(layer, first) for layer in range(L))
    return _costs(engine, top_r, block_rows, cached_runs=2, chunk_variants=chunk_variants)


def estimate_synergy(engine, units, top_r: int = 0) -> dict:
    """Work, memory and a rough time of a synergy matrix over ``units`` (heads, MLP units
    or groups, as :func:`coax_nb.scores.synergy` takes them) on this engine, before it runs.

    On the direct path each single ``{u}`` runs the blocks from u's layer on, and each pair
    ``{u, v}`` the blocks from the later of its two layers on: below that the pair is
    ``{u}``, whose blocks it shares with ``{u}`` and with the other pairs of ``u`` that run
    in the same energy group. So the count is a floor, met when every pair runs beside its
    single (a pair's ``{u}`` blocks are computed again in each later group)."""
    L = engine.n_layers
    firsts = [min(x.layer for x in getattr(u, "members", (u,))) for u in units]
    m = len(firsts)
    if engine.self_check.get("path") == "direct":
        blocks = sum(L - f for f in firsts) + sum(L - max(a, b) for a, b in combinations(firsts, 2))
    else:  # every variant through every block
        blocks = L * (m + m * (m - 1) // 2)
    est = _costs(engine, top_r, engine.workload()["prompts"] * blocks, cached_runs=1)
    est["variants"] = m + m * (m - 1) // 2
    return est


def _costs(engine, top_r: int, block_rows: int, cached_runs: int, chunk_variants: Optional[int] = None) -> dict:
    """What a computation of ``block_rows`` forward block-rows costs on this engine: FLOPs,
    the cached runs' and one chunk's memory, and a rough time (those block-rows at the speed
    of one block timed when the engine was built; the unembeddings and features not counted)."""
    L, H = engine.n_layers, engine.n_heads
    work = engine.workload()
    rows, T = work["prompts"], work["max_length"]
    bytes_el = torch.finfo(engine.dtype).bits // 8
    params = sum(p.numel() for p in engine.model.parameters())
    cache = rows * T * L * (engine.d_model + H * engine.d_head) * bytes_el * cached_runs
    plan = engine.plan(top_r)
    chunk = chunk_variants or plan.chunk_variants
    activ = plan.activation_bytes * chunk // max(1, plan.chunk_variants)
    return {"parameters": params, "weights_bytes": params * bytes_el, "cache_bytes": cache,
            "chunk_activation_bytes": activ, "feature_bytes": plan.feature_bytes, "chunk_variants": chunk,
            "feature_terms": plan.feature_terms, "forward_pass_equivalents": block_rows / (L * rows),
            "approx_flops": 2 * params * T * block_rows / L, "seconds": block_rows * engine.block_row_seconds}


def available_bytes(device: torch.device) -> int:
    """Free accelerator memory, or free host memory on the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def check_scan_fits(engine, top_r: int = 0, announce: bool = False, primaries=()) -> dict:
    """Estimate the scan; with ``announce``, log the plan when it runs on a GPU or would take
    over a minute; raise a clear error with a suggestion when the cache and one chunk cannot
    fit in the memory left."""
    return _check_fits(engine, estimate_scan(engine, top_r, primaries=primaries), "CoAx scan", announce)


def check_synergy_fits(engine, units, top_r: int = 0, announce: bool = False) -> dict:
    """:func:`check_scan_fits` for a synergy matrix over ``units``."""
    est = estimate_synergy(engine, units, top_r)
    return _check_fits(engine, est, f"synergy over {len(units)} units ({est['variants']} variants)", announce)


def _check_fits(engine, est: dict, what: str, announce: bool) -> dict:
    need = est["cache_bytes"] + est["chunk_activation_bytes"]
    have = available_bytes(engine.device)
    gib = 1 / 2**30
    if announce and (engine.device.type == "cuda" or est["seconds"] > 60):
        log.warning("%s: ~%.0f forward-pass equivalents, ~%.2e FLOPs, roughly %s at a timed block's speed; "
                    "memory beyond the weights ~%.2f GiB (%.1f GiB free)", what, est["forward_pass_equivalents"],
                    est["approx_flops"], _duration(est["seconds"]), need * gib, have * gib)
    if need > have:
        raise MemoryError(
            f"the {what} needs ~{need * gib:.1f} GiB beyond the weights but {have * gib:.1f} GiB are free on "
            f"{engine.device}: use fewer prompts per batch (Engine(..., max_bucket_prompts=...)), a fixed top-r "
            f"support (top_r=256) or smaller chunks (Engine(..., max_chunk_rows=...))")
    return est


def _duration(seconds: float) -> str:
    """Seconds as a person reads them: 12.3 s, 4.5 min, 2.1 h."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
