"""How the cost of a scan and of a synergy matrix grows with the model and the workload.

    python benchmarks/scaling.py                        # CPU, the default grid (a few minutes)
    python benchmarks/scaling.py --device cuda --json scaling_gpu.json --figure scaling_gpu.png

From a base shape (4 layers x 8 heads, d_model 256, vocabulary 8000, 8 prompts x 16
tokens), one factor at a time is varied -- heads per layer, d_model, prompts, vocabulary --
and the full CoAx scan (clean, S, every head alone and with S) and the synergy matrix over
every head are timed, each in one run of this script on one device. The fitted exponent
is the slope of log(seconds) against log(factor): 1 means the cost doubles when the factor
doubles. Random weights, built and loaded through the local-path code users take.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

BASE = {"heads": 8, "d_model": 256, "prompts": 8, "vocab": 8000}
GRID = {"heads": [4, 8, 16], "d_model": [128, 256, 512], "prompts": [4, 8, 16, 32], "vocab": [2000, 8000, 32000]}
LAYERS, LENGTH = 4, 16


def measure(shape: dict, device: str, repeats: int) -> dict:
    from coax_nb import Engine, coax_scan, load_model, synergy
    from coax_nb.toy import build_toy_model
    from coax_nb.units import all_units

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = build_toy_model(Path(tmp) / "m", n_layers=LAYERS, n_heads=shape["heads"], d_model=shape["d_model"],
                               vocab_size=shape["vocab"], n_ctx=64, init_std=0.02)
        model = load_model(path, device=device)
    g = torch.Generator().manual_seed(1)
    prompts = torch.randint(2, shape["vocab"], (shape["prompts"], LENGTH), generator=g)
    prompts[:, 0] = 0
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    heads = [str(u) for u in all_units(LAYERS, shape["heads"])]
    scan, syn = [], []
    for _ in range(repeats):  # the fastest of the repeats: the least disturbed by other work on the machine
        sync()
        t0 = time.perf_counter()
        engine = Engine(model, prompts.tolist(), progress=False)
        coax_scan(engine, primaries=heads[-3:], progress=False)
        sync()
        scan.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        synergy(engine, heads, progress=False)
        sync()
        syn.append(time.perf_counter() - t0)
    return {"scan": min(scan), "synergy": min(syn), "n_heads": len(heads)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", default=None)
    ap.add_argument("--figure", default=None, help="write the log-log figure (PNG) here")
    args = ap.parse_args()

    print(f"device: {args.device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
          f"{', ' + torch.cuda.get_device_name() if args.device.startswith('cuda') else ''}); torch {torch.__version__}")
    print(f"base: {LAYERS} layers, {BASE['heads']} heads per layer, d_model {BASE['d_model']}, vocabulary "
          f"{BASE['vocab']}, {BASE['prompts']} prompts x {LENGTH} tokens; fastest of {args.repeats} runs")
    results = {}
    for factor, values in GRID.items():
        for v in values:
            shape = dict(BASE, **{factor: v})
            r = measure(shape, args.device, args.repeats)
            results.setdefault(factor, []).append({"value": v, **r})
            print(f"  {factor:8s} = {v:6d}: scan {r['scan']:7.2f} s, synergy over {r['n_heads']} heads "
                  f"{r['synergy']:7.2f} s")
    fits = {}
    print("\n| factor | values | scan seconds | scan exponent | synergy seconds | synergy exponent |")
    print("|---|---|---|---:|---|---:|")
    for factor, rows in results.items():
        x = np.log([r["value"] for r in rows])
        fits[factor] = {k: float(np.polyfit(x, np.log([r[k] for r in rows]), 1)[0]) for k in ("scan", "synergy")}
        values = ", ".join(str(r["value"]) for r in rows)
        scan = ", ".join(f"{r['scan']:.2f}" for r in rows)
        syn = ", ".join(f"{r['synergy']:.2f}" for r in rows)
        print(f"| {factor} | {values} | {scan} | {fits[factor]['scan']:.2f} | {syn} | "
              f"{fits[factor]['synergy']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": args.device, "base": BASE, "layers": LAYERS,
                                               "length": LENGTH, "torch": torch.__version__,
                                               "results": results, "exponents": fits}, indent=1))
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
        for ax, kind in zip(axes, ("scan", "synergy")):
            for factor, rows in results.items():
                base = BASE[factor]
                xs = [r["value"] / base for r in rows]
                ax.plot(xs, [r[kind] for r in rows], marker="o",
                        label=f"{factor} (slope {fits[factor][kind]:.2f})")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("factor / its base value")
            ax.set_ylabel("seconds")
            ax.set_title(f"{'full CoAx scan' if kind == 'scan' else 'synergy over every head'} ({args.device})")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.figure, dpi=110)
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
