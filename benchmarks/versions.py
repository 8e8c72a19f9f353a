"""This checkout's engine against an earlier revision's, side by side in one run.

    python benchmarks/versions.py --baseline 71c2a34                    # GPT-2-small shape, CPU
    python benchmarks/versions.py --baseline 71c2a34 --family llama --vocab 32000
    python benchmarks/versions.py --baseline 71c2a34 --synergy --layers 4 --heads 8 --d-model 256 --vocab 8000 --prompts 8

The same full CoAx scan (clean, S, every head alone, S + every other head; the full
vocabulary at the last position) on the same random-weight model and prompts, run by
this checkout's ``coax_nb`` and by the baseline revision's (checked out with ``git
worktree`` into a temp folder), each in its own subprocess, alternating over
``--repeats`` rounds so that machine noise falls on both alike. The energies must agree
(checked). Each subprocess times the Engine build and the scan, not the imports; with
``--synergy`` also the synergy matrix over every head (its raw values checked too).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# run by each subprocess with its own coax_nb first on the path
CHILD = r"""
import json, sys, time
import torch
import coax_nb
from coax_nb import Engine, coax_scan, load_model, synergy
sys.path.insert(0, {here!r})
from shape import late_primaries
args = json.loads({args!r})
prompts = torch.load(args["prompts"])
model = load_model(args["model"], device="cpu")
t0 = time.perf_counter()
engine = Engine(model, prompts.tolist(), progress=False)
scores = coax_scan(engine, primaries=[f"L{{a}}H{{b}}" for a, b in late_primaries(args["layers"])], progress=False)
seconds = time.perf_counter() - t0
out = {{"seconds": seconds, "source": coax_nb.__file__, "path": engine.self_check["path"],
       "single": scores["single"].tolist(), "conditional": scores["conditional"].tolist()}}
if args["synergy"]:
    heads = [f"L{{a}}H{{b}}" for a in range(args["layers"]) for b in range(args["heads"])]
    t0 = time.perf_counter()
    pairs = synergy(engine, heads, progress=False)
    out["synergy_seconds"] = time.perf_counter() - t0
    out["synergy"] = [x for x in pairs["raw"].flatten().tolist() if x == x]
print(json.dumps(out))
"""


def main() -> None:
    sys.path.insert(0, str(HERE))
    from shape import BUILDERS, add_shape_arguments, random_prompts

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_shape_arguments(ap)
    ap.add_argument("--baseline", required=True, help="a git revision of this repository")
    ap.add_argument("--family", default="gpt2", choices=sorted(BUILDERS))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--synergy", action="store_true", help="also time the synergy matrix over every head")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old = tmp / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), args.baseline],
                       check=True, capture_output=True)
        try:
            model = BUILDERS[args.family](tmp, args)
            torch.save(random_prompts(args), tmp / "prompts.pt")
            spec = json.dumps({"model": str(model), "prompts": str(tmp / "prompts.pt"), "layers": args.layers,
                               "heads": args.heads, "synergy": args.synergy})
            code = CHILD.format(here=str(HERE), args=spec)
            runs: dict = {"this checkout": [], args.baseline: []}
            for _ in range(args.repeats):
                for name, src in (("this checkout", ROOT), (args.baseline, old)):
                    env = dict(os.environ, PYTHONPATH=str(src))
                    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                         cwd=tmp)
                    if out.returncode:
                        raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
                    runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], capture_output=True)
    new, base = runs["this checkout"], runs[args.baseline]
    assert new[0]["source"].startswith(str(ROOT)) and base[0]["source"].startswith(str(old)), "wrong coax_nb imported"
    energies = [np.array(r["single"] + r["conditional"], dtype=float) for r in new + base]
    diff = max(float(np.nanmax(np.abs(e - energies[0]))) for e in energies)
    largest = float(np.nanmax(np.abs(energies[0])))
    assert diff <= 1e-5 * largest, f"energies differ by {diff:.3g} (largest {largest:.3g})"
    if args.synergy:
        raws = [np.array(r["synergy"]) for r in new + base]
        syn_diff = max(float(np.abs(r - raws[0]).max()) for r in raws)
        assert syn_diff <= 1e-5 * float(np.abs(raws[0]).max()), f"synergy differs by {syn_diff:.3g}"
    print(f"{args.family}, {args.layers} layers x {args.heads} heads, d_model {args.d_model}, vocabulary "
          f"{args.vocab}; {args.prompts} prompts x {args.length} tokens; cpu, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")
    print("| engine | path | seconds (each round) | this checkout is x faster |")
    print("|---|---|---|---:|")
    best = min(r["seconds"] for r in new)
    for name, rs in (("this checkout", new), (args.baseline, base)):
        seconds = ", ".join(f"{r['seconds']:.2f}" for r in rs)
        print(f"| {name} | {rs[0]['path']} | {seconds} | {min(r['seconds'] for r in rs) / best:.2f} |")
    print(f"energies agree to {diff:.2e} (largest {largest:.3g})")
    if args.synergy:
        best = min(r["synergy_seconds"] for r in new)
        print(f"\n| engine | synergy over {args.layers * args.heads} heads: seconds (each round) | this checkout is x faster |")
        print("|---|---|---:|")
        for name, rs in (("this checkout", new), (args.baseline, base)):
            seconds = ", ".join(f"{r['synergy_seconds']:.2f}" for r in rs)
            print(f"| {name} | {seconds} | {min(r['synergy_seconds'] for r in rs) / best:.2f} |")
        print(f"synergy (raw) agrees to {syn_diff:.2e}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "family": args.family, "shape": vars(args), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "max_energy_difference": diff, "largest_energy": largest,
            "runs": {k: [{key: r[key] for key in ("seconds", "path", "synergy_seconds") if key in r} for r in v]
                     for k, v in runs.items()}},
            indent=1))


if __name__ == "__main__":
    main()
