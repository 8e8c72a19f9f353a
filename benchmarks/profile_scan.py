"""Where a full CoAx scan spends its time: one scan (Engine build included) under
``torch.profiler``, after a warm-up scan, with the operators ranked by their own time on the
host and, on a GPU, on the device, and how busy the device was.

    python benchmarks/profile_scan.py                                   # CPU, GPT-2-small shape
    python benchmarks/profile_scan.py --family llama --vocab 32000      # a Llama of the same size
    python benchmarks/profile_scan.py --device cuda --prompts 96 --dtype bf16 --trace trace.json

On a GPU the figure that decides the next step is the device's busy share: the sum of its
kernels' times over the scan's wall time. Well under 1 means the host (Python, hooks, one
call per block) is what the scan waits for, which CUDA graphs or ``torch.compile`` remove;
near 1 means the kernels themselves. ``--trace`` writes a Chrome trace (chrome://tracing).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from shape import BUILDERS, add_shape_arguments, late_primaries, random_prompts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_shape_arguments(ap)
    ap.add_argument("--family", default="gpt2", choices=sorted(BUILDERS), help="the random model's architecture")
    ap.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    ap.add_argument("--top", type=int, default=20, help="operators to list in each table")
    ap.add_argument("--trace", default=None, help="write a Chrome trace of the profiled scan here")
    ap.add_argument("--json", default=None, help="write the summary here")
    args = ap.parse_args()

    from torch.profiler import ProfilerActivity, profile

    from coax_nb import Engine, coax_scan, load_model

    cuda = torch.device(args.device).type == "cuda"
    if args.dtype != "fp32" and not cuda:
        ap.error("bf16 and fp16 are for a GPU (load_model refuses them on a CPU)")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(BUILDERS[args.family](Path(tmp), args), device=args.device, dtype=args.dtype)
    prompts = random_prompts(args).tolist()
    primaries = late_primaries(args.layers)

    def scan():
        sync()
        t0 = time.perf_counter()
        engine = Engine(model, prompts, progress=False)
        coax_scan(engine, primaries=primaries, progress=False)
        sync()
        return time.perf_counter() - t0, engine

    warm, _ = scan()  # kernels chosen, memory pooled: the profiled scan is a steady one
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        wall, engine = scan()
    plain, _ = scan()  # the profiler's own overhead: the same scan without it
    events = prof.key_averages()
    device_us = sum(e.self_device_time_total for e in events) if cuda else 0.0
    summary = {
        "device": torch.cuda.get_device_name() if cuda else "cpu", "dtype": args.dtype, "family": args.family, "torch": torch.__version__,
        "shape": {k: getattr(args, k) for k in ("layers", "heads", "d_model", "vocab", "prompts", "length")},
        "scan_s": {"warm_up": warm, "profiled": wall, "unprofiled": plain},
        "engine": engine.describe(), "self_check": engine.self_check, "stats": dict(vars(engine.stats)),
    }
    print(f"device {summary['device']}, {args.dtype}; scan {plain:.3f} s (warm-up {warm:.3f} s, "
          f"under the profiler {wall:.3f} s)")
    print(f"engine: {engine.describe()}; block calls' rows {engine.stats.block_rows}, chunks {engine.stats.chunks}")
    if cuda:
        summary["device_busy_share"] = device_us / 1e6 / wall
        print(f"device busy {device_us / 1e6:.3f} s of the profiled {wall:.3f} s: "
              f"{summary['device_busy_share']:.0%} (the rest the device waits for the host)")
        print(events.table(sort_by="self_cuda_time_total", row_limit=args.top))
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.top))
    summary["top_host_ops"] = [{"name": e.key, "calls": e.count, "self_host_ms": e.self_cpu_time_total / 1e3}
                               for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:args.top]]
    if cuda:
        summary["top_device_ops"] = [{"name": e.key, "calls": e.count, "self_device_ms": e.self_device_time_total / 1e3}
                                     for e in sorted(events, key=lambda e: -e.self_device_time_total)[:args.top]]
    if args.trace:
        prof.export_chrome_trace(args.trace)
        print(f"trace: {args.trace}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1, default=str))


if __name__ == "__main__":
    main()
