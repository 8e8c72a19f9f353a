"""How the chunk size (variants per batched forward) changes a full CoAx scan, side by side.

    python benchmarks/chunks.py                       # GPT-2-small shape on the CPU: planner vs fixed sizes
    python benchmarks/chunks.py --rows 16 64 544 --repeats 2 --json out.json

The same scan (clean, S, every head alone, S + every other head; full vocabulary at the
last position) on one random-weight model, once with the memory planner's chunk size and
once per ``--rows`` value (prompt-rows per chunk, ``Engine(max_chunk_rows=...)``),
interleaved over ``--repeats`` rounds so that machine noise falls on every setting alike.
Every setting must give the same energies (checked). Nothing here is timed in the tests.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from shape import add_shape_arguments, build_random_gpt2, late_primaries, random_prompts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_shape_arguments(ap)
    ap.add_argument("--rows", type=int, nargs="+", default=[16, 64, 544],
                    help="fixed chunk sizes in prompt-rows (544 = 34 variants x 16 prompts, the planner's "
                         "CPU choice before it capped activations)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from coax_nb import Engine, coax_scan, load_model

    L, H, n, T = args.layers, args.heads, args.prompts, args.length
    prompts = random_prompts(args)
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(build_random_gpt2(Path(tmp), args), device=args.device)
    primaries = [f"L{a}H{b}" for a, b in late_primaries(L)]
    settings = [None] + list(args.rows)
    times: dict = {str(s): [] for s in settings}
    chunks, reference = {}, None
    for _ in range(args.repeats):
        for rows in settings:
            t0 = time.perf_counter()
            engine = Engine(model, prompts.tolist(), progress=False, max_chunk_rows=rows)
            scores = coax_scan(engine, primaries=primaries, progress=False)
            times[str(rows)].append(time.perf_counter() - t0)
            chunks[str(rows)] = engine.plan().chunk_variants
            energies = np.concatenate([scores["single"], scores["conditional"]])
            if reference is None:
                reference = energies
            assert np.allclose(energies, reference, rtol=1e-5, atol=1e-9, equal_nan=True), rows
    best = {k: min(v) for k, v in times.items()}
    print(f"{L} layers x {H} heads, d_model {args.d_model}, vocabulary {args.vocab}; {n} prompts x {T} tokens; "
          f"{args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("| chunk | variants per chunk | seconds (each round) | planner is x faster |")
    print("|---|---:|---|---:|")
    for key in times:
        label = "planner" if key == "None" else f"{key} rows"
        print(f"| {label} | {chunks[key]} | {', '.join(f'{t:.2f}' for t in times[key])} | "
              f"{best[key] / best['None']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"times": times, "chunk_variants": chunks, "args": vars(args)},
                                              indent=1))


if __name__ == "__main__":
    main()
