"""How much work and memory a CoAx scan needs, known before it starts."""
from __future__ import annotations

import os
from typing import Optional

import torch


def estimate_scan(engine, top_r: int = 0, chunk_variants: Optional[int] = None) -> dict:
    """Work and memory of a CoAx scan on this engine, before running it."""
    L, H, d, V = engine.n_layers, engine.n_heads, engine.d_model, engine.d_vocab
    rows = sum(len(b.index) for b in engine.buckets)
    T = max(b.length for b in engine.buckets)
    P = max(len(b.positions) for b in engine.buckets)
    bytes_el = torch.finfo(engine.dtype).bits // 8
    params = sum(p.numel() for p in engine.model.parameters())
    cache = rows * T * L * (d + H * engine.d_head) * bytes_el * 2  # clean + seed-ablated resid and z
    chunk = chunk_variants or engine._chunk_variants(engine.buckets[0])
    width = top_r if top_r > 0 else V
    activ = chunk * rows * (T * (6 * d + 8 * d + 3 * H * T) + 3 * P * width) * bytes_el
    # forward block-rows: single + conditional per head, each from its own layer on (prefix reuse)
    block_rows = 2 * rows * sum(L - layer for layer in range(L)) * H
    flops = 2 * params * T * block_rows / L
    return {"parameters": params, "weights_bytes": params * bytes_el, "cache_bytes": cache,
            "chunk_activation_bytes": activ, "chunk_variants": chunk, "forward_pass_equivalents": block_rows / (L * rows),
            "approx_flops": flops}


def available_bytes(device: torch.device) -> int:
    """Free accelerator memory, or free host memory on the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def check_scan_fits(engine, top_r: int = 0, announce: bool = False) -> dict:
    """Estimate the scan; print it when ``announce``; raise a clear error with a
    suggestion when the cache and one chunk cannot fit in the memory left."""
    est = estimate_scan(engine, top_r)
    need = est["cache_bytes"] + est["chunk_activation_bytes"]
    have = available_bytes(engine.device)
    gib = 1 / 2**30
    if announce:
        print(f"CoAx scan: ~{est['forward_pass_equivalents']:.0f} forward-pass equivalents, ~{est['approx_flops']:.2e} "
              f"FLOPs; memory beyond the weights ~{need * gib:.2f} GiB ({have * gib:.1f} GiB free)")
    if need > have:
        raise MemoryError(
            f"the scan needs ~{need * gib:.1f} GiB beyond the weights but {have * gib:.1f} GiB are free on "
            f"{engine.device}: use fewer prompts per bucket (Engine(..., max_bucket_prompts=...)), a fixed top-r "
            f"support (top_r=256) or smaller chunks (Engine(..., max_chunk_rows=...))")
    return est
