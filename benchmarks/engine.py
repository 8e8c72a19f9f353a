"""Engine vs the naive loop: a full CoAx scan (single + conditional for every head),
side by side in one run.

    python benchmarks/engine.py                      # GPT-2-small shape, 32 prompts x 16 tokens
    python benchmarks/engine.py --layers 4 --prompts 8   # a quick look

The model has random weights (GPT-2-small shape: 12 layers x 12 heads, d_model 768,
vocabulary 50257), built here and loaded through the same local-path code users take.
The naive loop runs one full forward per variant with a hook on hook_z (full
unembedding at every position) and computes the same energies; both results are
compared so the speed-up is for identical numbers.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from shape import add_shape_arguments


def flops_per_token_block(d: int, d_mlp: int, T: int) -> float:
    # QKV + O projections, MLP, and the attention scores/mix, multiply-adds x2
    return 2 * (4 * d * d + 2 * d * d_mlp) + 4 * T * d


def main() -> None:
    ap = argparse.ArgumentParser()
    add_shape_arguments(ap, prompts=32, device=None)
    args = ap.parse_args()

    from coax_nb import Engine, Variant, coax_scan, load_model
    from coax_nb import metrics as M
    from coax_nb.toy import build_toy_model
    from coax_nb.units import all_units

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = build_toy_model(Path(tmp) / "m", n_layers=args.layers, n_heads=args.heads, d_model=args.d_model,
                               vocab_size=args.vocab, n_ctx=max(64, args.length), init_std=0.02)
        model = load_model(path, device=args.device)
        print(f"built and loaded the model in {time.perf_counter() - t0:.1f} s on {model.cfg.device}")
    L, H, d, V, n, T = args.layers, args.heads, args.d_model, args.vocab, args.prompts, args.length
    g = torch.Generator().manual_seed(1)
    prompts = torch.randint(2, V, (n, T), generator=g)
    prompts[:, 0] = 0
    seed = [(L - 3, 0), (L - 3, 1), (L - 2, 0)] if L >= 3 else [(0, 0)]
    dev = next(model.parameters()).device
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)

    # --- engine: the whole scan, clean and seed runs included
    sync()
    t0 = time.perf_counter()
    engine = Engine(model, prompts.tolist(), progress=False)
    scores = coax_scan(engine, primaries=seed, progress=False)
    sync()
    t_engine = time.perf_counter() - t0

    # --- naive: one forward per variant, full logits, same energies
    sync()
    t0 = time.perf_counter()
    units = all_units(L, H)
    seed_units = engine.units(seed)
    S = Variant.zero(seed_units)
    z0 = torch.stack(engine.naive_logits(Variant())).float()
    zS = torch.stack(engine.naive_logits(S)).float()
    p0 = M.probs(z0)
    single_ref = np.zeros(L * H)
    cond_ref = np.full(L * H, np.nan)
    for i, u in enumerate(units):
        zu = torch.stack(engine.naive_logits(Variant.zero([u]))).float()
        single_ref[i] = M.sq_norm(M.features(z0, zu, p0)).mean().item()
        if u not in seed_units:
            zSu = torch.stack(engine.naive_logits(S | Variant.zero([u]))).float()
            cond_ref[i] = M.sq_norm(M.features(zS, zSu, p0)).mean().item()
    sync()
    t_naive = time.perf_counter() - t0

    err = max(np.nanmax(np.abs(scores["single"] - single_ref)), np.nanmax(np.abs(scores["conditional"] - cond_ref)))
    scale = max(np.nanmax(np.abs(single_ref)), 1e-30)
    d_mlp = 4 * d
    n_var = L * H + (L * H - len(seed_units))
    naive_flops = (n_var + 2) * n * T * (L * flops_per_token_block(d, d_mlp, T) + 2 * d * V)
    engine_flops = engine.stats.block_rows * T * flops_per_token_block(d, d_mlp, T) + \
        (engine.stats.forward_rows - 2 * n) * 2 * d * V + 2 * n * T * 2 * d * V
    print(f"shape: {L} layers x {H} heads, d_model {d}, vocab {V}; {n} prompts x {T} tokens; "
          f"{n_var} variants (single + conditional)")
    print(f"naive loop : {t_naive:8.2f} s  {naive_flops / 1e12:7.2f} TFLOP  {naive_flops / t_naive / 1e9:7.1f} GFLOP/s")
    print(f"engine     : {t_engine:8.2f} s  {engine_flops / 1e12:7.2f} TFLOP  {engine_flops / t_engine / 1e9:7.1f} GFLOP/s"
          f"  ({engine.describe()})")
    print(f"speed-up   : {t_naive / t_engine:.2f}x   (minimum-work bound from FLOPs: {naive_flops / engine_flops:.2f}x)")
    print(f"max |engine - naive| energy: {err:.2e}; largest energy {scale:.3e}; relative {err / scale:.2e}")


if __name__ == "__main__":
    main()
