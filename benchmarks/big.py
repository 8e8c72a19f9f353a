"""A 7B-parameter-class scan on one 80 GB GPU: GPT-2 architecture at 32 layers x 32 heads,
d_model 4096, d_mlp 16384 (6.9 B parameters with the GPT-2 vocabulary), random bf16
weights initialised on the GPU, CoAx scan with a fixed clean top-256 support; then, with
``--synergy-top N``, the synergy matrix over the scan's top N heads (by the conditional
score), its plan (work, rough time, memory) printed before it starts.

    python benchmarks/big.py --prompts 16 --length 16 --top-r 256 --synergy-top 64
    python benchmarks/big.py --device cpu --layers 4 --heads 4 --d-model 64 --vocab 300 --synergy-top 6   # a dry run
"""
import argparse
import json
import tempfile
import time

import torch
from shape import add_shape_arguments


def main():
    ap = argparse.ArgumentParser()
    add_shape_arguments(ap, layers=32, heads=32, d_model=4096, device="cuda")
    ap.add_argument("--top-r", type=int, default=256)
    ap.add_argument("--synergy-top", type=int, default=0, help="then the synergy over the scan's top N heads")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    from transformer_lens.model_bridge import TransformerBridge
    from transformers import GPT2Config, GPT2LMHeadModel

    from coax_nb import Engine, coax_scan, synergy
    from coax_nb.resources import estimate_scan, estimate_synergy
    from coax_nb.toy import SPECIALS, word_tokenizer

    t0 = time.perf_counter()
    cfg = GPT2Config(vocab_size=a.vocab, n_positions=64, n_embd=a.d_model, n_layer=a.layers, n_head=a.heads,
                     n_inner=4 * a.d_model, initializer_range=0.02, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(a.device):
        hf = GPT2LMHeadModel(cfg).eval()
    torch.set_default_dtype(torch.float32)
    d = tempfile.mkdtemp()
    cfg.save_pretrained(d)
    word_tokenizer(list(SPECIALS) + [f"w{i}" for i in range(a.vocab - 2)]).save_pretrained(d)
    bridge = TransformerBridge.boot_transformers(d, hf_model=hf, device=a.device, dtype=torch.bfloat16)
    bridge.eval()
    params = sum(p.numel() for p in bridge.parameters())
    t_build = time.perf_counter() - t0
    cuda = torch.device(a.device).type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    print(f"built {params / 1e9:.2f} B parameters in {t_build:.1f} s"
          + (f"; {torch.cuda.memory_allocated() / 2**30:.1f} GiB on the GPU" if cuda else ""), flush=True)
    g = torch.Generator().manual_seed(1)
    prompts = torch.randint(2, a.vocab, (a.prompts, a.length), generator=g)
    prompts[:, 0] = 0
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    engine = Engine(bridge, prompts.tolist(), progress=False)
    L = a.layers
    primaries = [(L - 3, 0), (L - 3, 1), (L - 2, 0)]
    est = estimate_scan(engine, a.top_r, primaries=engine.units(primaries))
    print("estimate:", {k: (round(v / 2**30, 2) if k.endswith("bytes") else v) for k, v in est.items()}, flush=True)
    scores = coax_scan(engine, primaries=primaries, top_r=a.top_r, progress=False)
    sync()
    t_scan = time.perf_counter() - t0
    res = {"device": torch.cuda.get_device_name() if cuda else "cpu", "parameters": params, "build_s": t_build,
           "scan_s": t_scan, "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
           "variants": 2 * L * a.heads - 3, "fpe": scores.meta["forward_passes"], "top_r": a.top_r,
           "prompts": a.prompts, "tokens": a.length, "top3": [[str(u), v] for u, v in scores.top(3)],
           "engine": engine.describe()}
    if a.synergy_top:
        top = [u for u, _ in scores.top(a.synergy_top)]
        plan = estimate_synergy(engine, top, a.top_r)
        print(f"synergy over the top {len(top)} heads, the plan:",
              {k: (round(v / 2**30, 2) if k.endswith("bytes") else v) for k, v in plan.items()}, flush=True)
        t0 = time.perf_counter()
        pairs = synergy(engine, top, top_r=a.top_r, progress=False)
        sync()
        res["synergy"] = {"heads": len(top), "variants": plan["variants"], "planned_s": plan["seconds"],
                          "seconds": time.perf_counter() - t0, "fpe": pairs.meta["forward_passes"],
                          "planned_fpe": plan["forward_pass_equivalents"]}
    print(json.dumps(res, indent=1), flush=True)
    if a.json:
        open(a.json, "w").write(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
