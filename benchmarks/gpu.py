"""GPU figures for issue 9, side by side in one run (GPT-2-small shape, random weights):
matmul peak, full CoAx scan (fp32 / bf16) vs the naive loop, the full 144 x 144 synergy
matrix, and one repair-aware pruning step.

    python benchmarks/gpu.py --device cuda --prompts 96 --json out.json
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from shape import add_shape_arguments


def timed(fn, sync):
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - t0


def matmul_peak(device, dtype, n=8192, reps=10):
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2 * n ** 3 * reps / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    add_shape_arguments(ap, prompts=96, device="cuda")
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--skip-synergy", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from coax_nb import Engine, Variant, coax_scan, load_model, synergy
    from coax_nb import metrics as M
    from coax_nb.applications import prune
    from coax_nb.tasks import induction_task
    from coax_nb.toy import build_toy_model
    from coax_nb.units import all_units

    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    res = {"device": torch.cuda.get_device_name(dev) if cuda else "cpu", "torch": torch.__version__}
    if cuda:
        res["matmul_tflops_fp32"] = matmul_peak(dev, torch.float32) / 1e12
        torch.backends.cuda.matmul.allow_tf32 = True
        res["matmul_tflops_tf32"] = matmul_peak(dev, torch.float32) / 1e12
        torch.backends.cuda.matmul.allow_tf32 = False
        res["matmul_tflops_bf16"] = matmul_peak(dev, torch.bfloat16) / 1e12
        print({k: round(v, 1) for k, v in res.items() if k.startswith("matmul")}, flush=True)
    L, H, d, V, n, T = args.layers, args.heads, args.d_model, args.vocab, args.prompts, args.length
    tmp = tempfile.mkdtemp()
    path = build_toy_model(Path(tmp) / "m", n_layers=L, n_heads=H, d_model=d, vocab_size=V, n_ctx=64, init_std=0.02)
    g = torch.Generator().manual_seed(1)
    prompts = torch.randint(2, V, (n, T), generator=g)
    prompts[:, 0] = 0
    prompts = prompts.tolist()
    seed = [(L - 3, 0), (L - 3, 1), (L - 2, 0)]
    params = None
    for dtype in ("fp32", "bf16") if cuda else ("fp32",):
        model = load_model(path, device=args.device, dtype=dtype)
        params = sum(p.numel() for p in model.parameters())
        Engine(model, prompts[:8], progress=False)  # warm-up (kernels, allocator)
        engine, t_build = timed(lambda: Engine(model, prompts, progress=False), sync)
        scores, t_scan = timed(lambda: coax_scan(engine, primaries=seed, progress=False), sync)
        scores2, t_scan2 = timed(lambda: coax_scan(engine, primaries=seed, progress=False), sync)
        res[f"scan_{dtype}"] = {"engine_build_s": t_build, "scan_s": t_scan, "scan_again_s": t_scan2,
                                "total_s": t_build + t_scan, "variants": 2 * L * H - len(seed),
                                "fpe": scores.meta["forward_passes"]}
        print(dtype, {k: round(v, 3) for k, v in res[f"scan_{dtype}"].items()}, flush=True)
        if not args.skip_naive:
            def naive():
                units = all_units(L, H)
                S = Variant.zero(engine.units(seed))
                z0 = torch.stack(engine.naive_logits(Variant())).float()
                zS = torch.stack(engine.naive_logits(S)).float()
                p0 = M.probs(z0)
                single, cond = np.zeros(L * H), np.full(L * H, np.nan)
                for i, u in enumerate(units):
                    zu = torch.stack(engine.naive_logits(Variant.zero([u]))).float()
                    single[i] = M.sq_norm(M.features(z0, zu, p0)).mean().item()
                    if u not in S.units:
                        zSu = torch.stack(engine.naive_logits(S | Variant.zero([u]))).float()
                        cond[i] = M.sq_norm(M.features(zS, zSu, p0)).mean().item()
                return single, cond
            (single, cond), t_naive = timed(naive, sync)
            err = max(np.nanmax(np.abs(scores["single"] - single)), np.nanmax(np.abs(scores["conditional"] - cond)))
            res[f"naive_{dtype}_s"] = t_naive
            res[f"speedup_vs_naive_{dtype}"] = t_naive / (t_build + t_scan)
            res[f"max_abs_energy_diff_{dtype}"] = float(err)
            res[f"largest_energy_{dtype}"] = float(np.nanmax(single))
            print(f"{dtype} naive {t_naive:.2f} s; engine {t_build + t_scan:.3f} s; x{t_naive / (t_build + t_scan):.1f}; "
                  f"max diff {err:.2e} of {np.nanmax(single):.3e}", flush=True)
        if not args.skip_synergy:
            units = [(layer, h) for layer in range(L) for h in range(H)]
            pairs, t_syn = timed(lambda: synergy(engine, units, progress=False), sync)
            res[f"synergy_{dtype}_s"] = t_syn
            res[f"synergy_{dtype}_variants"] = len(units) * (len(units) + 1) // 2
            print(f"synergy {L * H}x{L * H} {dtype}: {t_syn:.2f} s", flush=True)
        task = induction_task(model, n, half_length=T // 2, prompt_seed=3)
        ev = induction_task(model, n, half_length=T // 2, prompt_seed=4)
        p, t_prune = timed(lambda: prune(model, task, ev, orders=["repair_aware"], stop_after=1, progress=False), sync)
        res[f"prune_step_{dtype}"] = {"total_s": t_prune, **p.steps[0]}
        print(f"pruning step {dtype}: {p.steps[0]}", flush=True)
        engine = model = None  # free the GPU before the next dtype
        if cuda:
            torch.cuda.empty_cache()
    res["parameters"] = params
    res["shape"] = {"layers": L, "heads": H, "d_model": d, "vocab": V, "prompts": n, "tokens": T}
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=float))
    print(json.dumps(res, indent=1, default=float))


if __name__ == "__main__":
    main()
