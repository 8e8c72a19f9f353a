"""GPU correctness: the organisms' CoAx scores on CUDA (fp32 and bf16) against the CPU
run, and bf16 against fp32 on the GPT-2-small shape.

    python benchmarks/gpu_check.py
"""
import tempfile
from pathlib import Path

import numpy as np
import torch

from coax_nb import Engine, coax_scan, load_model, organisms
from coax_nb.organisms import task_for
from coax_nb.toy import build_toy_model


def ranks(x):
    x = np.nan_to_num(x, nan=-np.inf)
    return np.argsort(np.argsort(-x))


def spearman(a, b):
    ok = ~(np.isnan(a) | np.isnan(b))
    return float(np.corrcoef(ranks(a[ok]), ranks(b[ok]))[0, 1])


for name in organisms.names():
    card = organisms.card(name)
    task = task_for(f"organism:{name}", 64, prompt_seed=7)
    out = {}
    for dev, dt in (("cpu", "fp32"), ("cuda", "fp32"), ("cuda", "bf16")):
        m = load_model(f"organism:{name}", device=dev, dtype=dt)
        out[(dev, dt)] = coax_scan(Engine(m, task, progress=False), primaries=card["primaries"], progress=False)
    ref = out[("cpu", "fp32")]
    for key in (("cuda", "fp32"), ("cuda", "bf16")):
        s = out[key]
        rel = np.nanmax(np.abs(s["comp"] - ref["comp"])) / np.nanmax(np.abs(ref["comp"]))
        top = [str(u) for u, _ in s.top(len(card["backups"]))]
        print(f"{name:18s} {key[0]} {key[1]}: max |comp - cpu| / max|comp| = {rel:.2e}; "
              f"Spearman {spearman(s['comp'], ref['comp']):.4f}; top {top} (cpu {[str(u) for u, _ in ref.top(len(top))]})")

tmp = tempfile.mkdtemp()
path = build_toy_model(Path(tmp) / "m", n_layers=12, n_heads=12, d_model=768, vocab_size=50257, n_ctx=64, init_std=0.02)
g = torch.Generator().manual_seed(1)
prompts = torch.randint(2, 50257, (96, 16), generator=g)
prompts[:, 0] = 0
res = {}
for dt in ("fp32", "bf16"):
    m = load_model(path, device="cuda", dtype=dt)
    res[dt] = coax_scan(Engine(m, prompts.tolist(), progress=False), primaries=[(9, 0), (9, 1), (10, 0)], progress=False)
for col in ("single", "conditional", "comp"):
    a, b = res["fp32"][col], res["bf16"][col]
    print(f"GPT-2 shape bf16 vs fp32 {col}: Spearman {spearman(b, a):.4f}, "
          f"median relative error {np.nanmedian(np.abs(b - a) / np.maximum(np.abs(a), 1e-12)):.3f}")
