"""The engine against what a user would write instead, side by side in one run.

    python benchmarks/peers.py                          # GPT-2-small shape, 16 prompts x 16 tokens
    python benchmarks/peers.py --layers 4 --prompts 8   # a quick look
    python benchmarks/peers.py --json out.json          # also write the figures
    python benchmarks/peers.py --device cuda --prompts 96 --dtype bf16   # the GPU targets (fp32: add --tf32 to allow TF32)
    python benchmarks/peers.py --family llama --vocab 32000   # a Llama of the same size (rotary, RMSNorm, SwiGLU)
    python benchmarks/peers.py --family bloom --skip a,c      # a BLOOM (ALiBi), the engine and loop (b) only

One full CoAx scan (clean, S, every head alone, S + every other head; energies on the
full vocabulary at the last position) computed four ways on the same model and prompts:

- engine: ``coax_scan`` (its Engine build and self-check included in its time);
- (a) plain Hugging Face: one ``AutoModelForCausalLM`` forward per variant, a forward
  pre-hook on each block's attention output projection (GPT-2's ``attn.c_proj``,
  Llama's ``self_attn.o_proj``, BLOOM's ``self_attention.dense``) zeroing the ablated
  heads' slices of its input, full logits;
- (b) the same with ``logits_to_keep=1`` (only the last position unembedded);
- (c) TransformerLens: ``run_with_hooks`` per variant with hooks on ``blocks.L.attn.hook_z``
  (the TransformerBridge users load), full logits.

Loops (a)-(c) compute their energies here, with a Fisher energy written in this file
(not the project's metrics code), so agreement is a check of the engine, not of shared
code. The model has random weights of the requested shape, saved to a temp folder and
loaded from there by both libraries. Nothing is timed inside the test suite.
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
from shape import BUILDERS, add_shape_arguments, late_primaries, random_prompts

# per family: the random model's builder and each block's attention output projection
FAMILIES = {
    "gpt2": (BUILDERS["gpt2"], lambda model: [block.attn.c_proj for block in model.transformer.h]),
    "llama": (BUILDERS["llama"], lambda model: [layer.self_attn.o_proj for layer in model.model.layers]),
    "bloom": (BUILDERS["bloom"], lambda model: [block.self_attention.dense for block in model.transformer.h]),
}


def cpu_name() -> str:
    """The processor's model name (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fisher_energy(z_ref: torch.Tensor, z: torch.Tensor, p: torch.Tensor) -> float:
    """Mean over prompts of sum_i p_i (d_i - E_p[d])^2, d = z_ref - z (float64)."""
    d = (z_ref - z).double()
    p = p.double()
    centred = d - (p * d).sum(-1, keepdim=True)
    return float((p * centred * centred).sum(-1).mean())


def hf_loop(model, projections, tokens, variants, heads: int, keep_last: bool):
    """One forward per variant; a pre-hook on each attention output projection zeroes the
    ablated heads' slices of its input."""
    d_head = model.config.hidden_size // heads
    current: dict[int, list[int]] = {}

    def pre_hook(layer):
        def fn(module, args):
            zero = current.get(layer)
            if not zero:
                return None
            x = args[0].clone()
            for h in zero:
                x[..., h * d_head:(h + 1) * d_head] = 0
            return (x,) + tuple(args[1:])
        return fn

    handles = [proj.register_forward_pre_hook(pre_hook(i)) for i, proj in enumerate(projections)]
    out = []
    try:
        with torch.no_grad():
            for v in variants:
                current.clear()
                for layer, head in v:
                    current.setdefault(layer, []).append(head)
                kwargs = {"logits_to_keep": 1} if keep_last else {}
                out.append(model(tokens, **kwargs).logits[:, -1].float())
    finally:
        for h in handles:
            h.remove()
    return out


def tl_loop(bridge, tokens, variants):
    """One run_with_hooks per variant on blocks.L.attn.hook_z, as TransformerLens code does."""
    out = []
    with torch.no_grad():
        for v in variants:
            by_layer: dict[int, list[int]] = {}
            for layer, head in v:
                by_layer.setdefault(layer, []).append(head)

            def make(heads):
                def fn(z, hook):
                    z[:, :, heads] = 0.0
                    return z
                return fn
            hooks = [(f"blocks.{layer}.attn.hook_z", make(hs)) for layer, hs in by_layer.items()]
            out.append(bridge.run_with_hooks(tokens, fwd_hooks=hooks)[:, -1].float())
    return out


def energies(logits, units, primaries):
    """single and conditional energies from the loop's logits, in the scan's variant order."""
    z0, zS = logits[0], logits[1]
    p0 = torch.softmax(z0.double(), -1)
    n = len(units)
    single = np.array([fisher_energy(z0, logits[2 + i], p0) for i in range(n)])
    cond = np.full(n, np.nan)
    j = 2 + n
    for i, u in enumerate(units):
        if u not in primaries:
            cond[i] = fisher_energy(zS, logits[j], p0)
            j += 1
    return single, cond


def multiply_adds(stats, layers: int, length: int, d_model: int, vocab: int, variants: int, prompts: int) -> dict:
    """The weight matrices' multiply-adds over the whole scan, in units of d_model², of the engine's
    run (from its counters) and of loop (b) (every variant a full forward, the last position
    unembedded). A block is 12 units per token: queries, keys, values and output 4, the MLP
    8 (GPT-2's and BLOOM's 4 d_model, the Llama builder's SwiGLU of 8/3 d_model, all heads
    with their own keys and values). A block given a cached run's head outputs skips the
    queries, keys and values (3 per token); a narrowed last block computes the output
    projection and the MLP (9) at the output position alone. The unembedding is
    vocab / d_model per output row. Attention scores and elementwise work are left out."""
    unembed = vocab / d_model
    engine = (12 * length * stats.block_rows - 3 * length * stats.attention_reused_rows
              - 9 * (length - 1) * stats.narrowed_rows + unembed * stats.forward_rows)
    loop = variants * prompts * (12 * length * layers + unembed)
    return {"engine": engine, "loop_b": loop, "ratio": loop / engine}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_shape_arguments(ap)
    ap.add_argument("--family", default="gpt2", choices=sorted(FAMILIES), help="the random model's architecture")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"],
                    help="every contender's weights and activations (energies are computed in float32/64)")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 matmuls on CUDA (off by default: exact fp32)")
    ap.add_argument("--skip", default="", help="contenders to leave out, e.g. 'a,c' (the engine always runs)")
    ap.add_argument("--json", default=None, help="write the figures to this file")
    args = ap.parse_args()

    import transformers
    from transformers import AutoModelForCausalLM

    from coax_nb import Engine, coax_scan, load_model
    from coax_nb.units import all_units

    L, H, d, V, n, T = args.layers, args.heads, args.d_model, args.vocab, args.prompts, args.length
    dev = torch.device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    prompts = random_prompts(args)
    units = [(u.layer, u.head) for u in all_units(L, H)]
    primaries = late_primaries(L)
    variants = [[], primaries] + [[u] for u in units] + [primaries + [u] for u in units if u not in primaries]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    with tempfile.TemporaryDirectory() as tmp:
        build, projections = FAMILIES[args.family]
        path = build(Path(tmp), args)
        bridge = load_model(path, device=str(dev), dtype=args.dtype)
        hf = AutoModelForCausalLM.from_pretrained(path).to(dev, dtype).eval()
    proj = projections(hf)
    tokens = prompts.to(dev)
    print(f"device: {dev} ({cpu_name()}, {torch.get_num_threads()} threads"
          f"{', ' + torch.cuda.get_device_name(dev) if dev.type == 'cuda' else ''}); torch {torch.__version__}, "
          f"transformers {transformers.__version__}; {args.dtype}"
          f"{' (TF32 ' + ('on' if args.tf32 else 'off') + ')' if dev.type == 'cuda' and dtype == torch.float32 else ''}")
    print(f"shape: {args.family}, {L} layers x {H} heads, d_model {d}, vocabulary {V}; {n} prompts x {T} tokens; "
          f"{len(variants)} forward variants (clean, S, {len(units)} single, {len(variants) - 2 - len(units)} "
          f"conditional); S = {', '.join(f'L{a}H{b}' for a, b in primaries)}")

    rows = {}
    sync()
    t0 = time.perf_counter()
    engine = Engine(bridge, prompts.tolist(), progress=False)
    scores = coax_scan(engine, primaries=[f"L{a}H{b}" for a, b in primaries], progress=False)
    sync()
    rows["engine"] = {"seconds": time.perf_counter() - t0, "single": scores["single"],
                      "conditional": scores["conditional"]}
    print(f"engine: {rows['engine']['seconds']:.2f} s ({engine.describe()})")
    work = multiply_adds(engine.stats, L, T, d, V, len(variants), n)
    print(f"multiply-adds (units of d_model^2, the whole scan): engine {work['engine']:.4g}, loop (b) {work['loop_b']:.4g}: "
          f"{work['ratio']:.2f}x less work ({engine.stats.block_rows} block-rows, "
          f"{engine.stats.attention_reused_rows} with reused head outputs, {engine.stats.narrowed_rows} narrowed)")

    contenders = [("a", "plain HF, full logits", lambda: hf_loop(hf, proj, tokens, variants, H, keep_last=False)),
                  ("b", "plain HF, logits_to_keep=1", lambda: hf_loop(hf, proj, tokens, variants, H, keep_last=True)),
                  ("c", "TransformerLens run_with_hooks on hook_z", lambda: tl_loop(bridge, tokens, variants))]
    for key, name, fn in contenders:
        if key in skip:
            continue
        sync()
        t0 = time.perf_counter()
        logits = fn()
        sync()
        seconds = time.perf_counter() - t0
        single, cond = energies(logits, units, primaries)
        rows[key] = {"name": name, "seconds": seconds, "single": single, "conditional": cond}
        print(f"({key}) {name}: {seconds:.2f} s")

    ref = rows["engine"]
    scale = float(np.nanmax(np.abs(np.concatenate([ref["single"], ref["conditional"]]))))
    print(f"\n| contender | seconds | engine is x faster | max abs energy difference to the engine "
          f"(largest energy {scale:.3g}) |")
    print("|---|---:|---:|---:|")
    print(f"| engine (`coax_scan`) | {ref['seconds']:.2f} | 1.00 | — |")
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name()
    record = {"device": str(dev), "device_name": device_name, "dtype": args.dtype,
              "tf32": bool(args.tf32 and dev.type == "cuda"),
              "shape": {"family": args.family, "layers": L, "heads": H, "d_model": d, "vocab": V, "prompts": n,
                        "length": T},
              "engine_check": engine.self_check,
              "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
              "threads": torch.get_num_threads(), "engine_seconds": ref["seconds"], "multiply_adds": work,
              "contenders": {}}
    for key in ("a", "b", "c"):
        if key not in rows:
            continue
        r = rows[key]
        err = max(float(np.nanmax(np.abs(r["single"] - ref["single"]))),
                  float(np.nanmax(np.abs(r["conditional"] - ref["conditional"]))))
        print(f"| ({key}) {r['name']} | {r['seconds']:.2f} | {r['seconds'] / ref['seconds']:.2f} | {err:.2e} |")
        record["contenders"][key] = {"name": r["name"], "seconds": r["seconds"],
                                     "ratio": r["seconds"] / ref["seconds"], "max_energy_difference": err}
    record["largest_energy"] = scale
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
