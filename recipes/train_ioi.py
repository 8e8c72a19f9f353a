"""Train the IOI organisms (route B of organisms.md) and label their ground truth.

``python recipes/train_ioi.py RECIPE OUT_DIR --seed N`` trains one recipe from its
fixed seed (or training seed N) on CPU (a few minutes), measures it, and writes a
HF-format model directory with a ``card.json``. ``--all`` trains every recipe and
prints the comparison that ``docs/organisms.md`` records. A recipe, not part of the
package: nothing in ``coax_nb`` imports it.

Task: the IOI templates over a small word vocabulary; the loss is read at the last
position only (the answer name). Pressures a recipe can switch on:

- ``label_smoothing``: an overshooting answer logit costs loss, so two heads both
  writing the answer is worse than one;
- ``head_dropout`` on ``dropout_layers``: each head of those layers is zeroed with
  this probability per example (no rescaling, so training sees exactly the
  zero-ablation the analysis uses), which rewards a head that takes over when one
  is missing;
- ``l1_out``: an L1 penalty on every head's write at the answer position, so a head
  that is not needed is cheapest when silent — the backup's incentive to stay
  dormant while its primary works.

Ground truth is :func:`coax_nb.dla.dla_ground_truth` on held-out prompts, never CoAx.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from coax_nb import organisms
from coax_nb.io import atomic_write_text
from coax_nb.tasks import IOI_NAMES, IOI_OBJECTS, IOI_PLACES, ioi_task
from coax_nb.toy import ioi_vocabulary, word_tokenizer

NAMES = list(IOI_NAMES[:16])
BASE = dict(n_layers=3, n_heads=4, d_model=64, d_mlp=256, n_ctx=32, steps=1500, batch=128, lr=3e-3,
            weight_decay=0.01, label_smoothing=0.0, head_dropout=0.0, dropout_layers=None, l1_out=0.0,
            train_prompts=20000, seed=0, n_primaries=None, aux_layer=None, aux_weight=1.0,
            l1_layers=None, write_penalty="l1")
RECIPES = {
    # Plain training: learns fast, redundancy co-fires.
    "cofiring": dict(label_smoothing=0.1),
    # Dropout on every head + label smoothing (the recipe organisms.md reports as co-firing).
    "dropout_all": dict(label_smoothing=0.1, head_dropout=0.3),
    # Dropout on the middle layer only + an L1 price on every head's write at the answer.
    "mid_dropout_l1": dict(label_smoothing=0.1, head_dropout=0.5, dropout_layers=[1], l1_out=0.02),
    # + deep supervision: the answer must already be readable after the middle layer,
    # so the primaries sit there and the last layer can watch them; dropout on the
    # middle layer; L1 on the last layer's writes.
    "dormant": dict(label_smoothing=0.1, head_dropout=0.3, dropout_layers=[1], l1_out=0.02, l1_layers=[2],
                    aux_layer=1),
    # The same with a squared (L2) price on writes: spreading the take-over over several
    # last-layer heads is cheaper than one loud head, so more backups form.
    "dormant_spread": dict(label_smoothing=0.1, head_dropout=0.3, dropout_layers=[1], l1_out=0.005,
                           l1_layers=[2], aux_layer=1, write_penalty="l2"),
    # Dropout on the last layer too: backups of backups, so several heads take over.
    "dormant_multi": dict(label_smoothing=0.1, head_dropout=0.3, dropout_layers=[1, 2], l1_out=0.02,
                          l1_layers=[2], aux_layer=1),
    # Deep supervision + middle-layer dropout without any price on writes: the last
    # layer's compensators have no reason to keep quiet.
    "aux_dropout": dict(label_smoothing=0.1, head_dropout=0.3, dropout_layers=[1], aux_layer=1),
    # Four layers: the answer is due after layer 1; layers 1 and 2 are dropped out, so
    # layer 2 can back up layer 1 and layer 3 can back up both.
    "deep_backups": dict(n_layers=4, label_smoothing=0.1, head_dropout=0.3, dropout_layers=[1, 2], aux_layer=1),
    # Eight heads per layer, half of the middle layer dropped at a time.
    "wide": dict(n_heads=8, label_smoothing=0.1, head_dropout=0.5, dropout_layers=[1], aux_layer=1),
    "wide_heavy": dict(n_heads=8, label_smoothing=0.1, head_dropout=0.7, dropout_layers=[1], aux_layer=1),
    # A squared price on last-layer writes: one loud backup costs more than several quiet ones.
    "wide_spread": dict(n_heads=8, label_smoothing=0.1, head_dropout=0.5, dropout_layers=[1], aux_layer=1,
                        l1_out=0.005, l1_layers=[2], write_penalty="l2"),
    # Dropout on the two upper layers, no deep supervision: movers sit in both layers
    # and compensate each other while co-firing.
    "upper_dropout": dict(label_smoothing=0.1, head_dropout=0.3, dropout_layers=[1, 2], n_primaries=3),
    # Dropout on every head, gentler: co-firing compensators.
    "dropout_all_gentle": dict(label_smoothing=0.1, head_dropout=0.1, lr=2e-3, steps=2000),
}
GT_SEED = 1000  # prompts that define the ground truth
HELD_OUT_SEED = 12345  # prompts every selector is scored on; training uses the recipe's seed


def recipe(name: str, rng_seed: Optional[int] = None) -> dict:
    """The settings of recipe ``name``; ``rng_seed`` replaces its training seed."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    r = {**BASE, **RECIPES[name]}
    if rng_seed is not None:
        r["seed"] = rng_seed
    return r


def _data(tok, n, prompt_seed):
    task = ioi_task(tok, n, prompt_seed=prompt_seed, names=NAMES, prepend_bos=True)
    x = torch.tensor(task.prompts)
    y = torch.tensor([t[0] for t in task.targets])
    return x, y


def train(name: str, out: Path, verbose: bool = True, rng_seed: Optional[int] = None) -> dict:
    """Train recipe ``name`` (optionally with another training seed) into ``out`` (HF
    format); returns the training log."""
    r = recipe(name, rng_seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same torch build reproduces the weights bit for bit
    try:
        return _train(name, r, Path(out), verbose)
    finally:
        torch.set_num_threads(threads)


def _train(name: str, r: dict, out: Path, verbose: bool) -> dict:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(r["seed"])
    tok = word_tokenizer(ioi_vocabulary(NAMES))
    cfg = GPT2Config(vocab_size=len(tok), n_positions=r["n_ctx"], n_embd=r["d_model"], n_layer=r["n_layers"],
                     n_head=r["n_heads"], n_inner=r["d_mlp"], bos_token_id=tok.bos_token_id,
                     eos_token_id=tok.eos_token_id, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(cfg)
    x_all, y_all = _data(tok, r["train_prompts"], prompt_seed=r["seed"])
    H, dh = r["n_heads"], r["d_model"] // r["n_heads"]
    drop_layers = r["dropout_layers"] if r["dropout_layers"] is not None else list(range(r["n_layers"]))
    state = {"mask": {}, "l1": []}

    def pre_hook(layer):
        def fn(module, args):
            (x,) = args
            b, t, _ = x.shape
            heads = x.view(b, t, H, dh)
            if layer in state["mask"]:
                heads = heads * state["mask"][layer][:, None, :, None]
            if r["l1_out"] > 0 and (r["l1_layers"] is None or layer in r["l1_layers"]):
                w = module.weight.view(H, dh, -1)  # Conv1D weight: [in, out]
                out_last = torch.einsum("bhe,hed->bhd", heads[:, -1], w)
                norms = out_last.norm(dim=-1)
                state["l1"].append((norms if r["write_penalty"] == "l1" else norms ** 2).sum(-1).mean())
            return (heads.reshape(b, t, H * dh),)
        return fn

    for layer, block in enumerate(model.transformer.h):
        block.attn.c_proj.register_forward_pre_hook(pre_hook(layer))
    opt = torch.optim.AdamW(model.parameters(), lr=r["lr"], weight_decay=r["weight_decay"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=r["lr"], total_steps=r["steps"], pct_start=0.1)
    gen = torch.Generator().manual_seed(r["seed"])
    t0 = time.time()
    log = []
    model.train()
    for step in range(r["steps"]):
        idx = torch.randint(0, len(x_all), (r["batch"],), generator=gen)
        x, y = x_all[idx], y_all[idx]
        state["mask"] = {}
        if r["head_dropout"] > 0:
            for layer in drop_layers:
                keep = torch.rand(r["batch"], H, generator=gen) >= r["head_dropout"]
                state["mask"][layer] = keep.float()
        state["l1"] = []
        fwd = model(x, output_hidden_states=r["aux_layer"] is not None)
        ce = torch.nn.functional.cross_entropy(fwd.logits[:, -1], y, label_smoothing=r["label_smoothing"])
        if r["aux_layer"] is not None:
            early = model.lm_head(model.transformer.ln_f(fwd.hidden_states[r["aux_layer"] + 1][:, -1]))
            ce = ce + r["aux_weight"] * torch.nn.functional.cross_entropy(early, y, label_smoothing=r["label_smoothing"])
        l1 = torch.stack(state["l1"]).sum() if state["l1"] else torch.zeros(())
        loss = ce + r["l1_out"] * l1
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == r["steps"] - 1:
            log.append({"step": step, "ce": round(ce.item(), 4), "l1": round(l1.item(), 3)})
            if verbose:
                print(f"[{name}] step {step:5d} ce {ce.item():.4f} head-write L1 {l1.item():.2f}", flush=True)
    model.eval()
    for block in model.transformer.h:
        block.attn.c_proj._forward_pre_hooks.clear()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return {"recipe": name, "settings": r, "train_seconds": round(time.time() - t0, 1), "log": log}


def measure(path: Path, n_primaries=None, n_prompts: int = 128, rise_threshold: float = 0.1,
            progress: bool = False) -> dict:
    """Accuracy, ground truth (DLA criterion on GT_SEED prompts), dormancy, repair and
    every selector's recovery figures on held-out prompts (HELD_OUT_SEED)."""
    from coax_nb.dla import dla_ground_truth
    from coax_nb.engine import Engine, Variant
    from coax_nb.models import load_model
    from coax_nb.recover import recovery

    model = load_model(str(path))
    gt_task = ioi_task(model, n_prompts, prompt_seed=GT_SEED, names=NAMES, prepend_bos=True)
    gt = dla_ground_truth(Engine(model, gt_task, progress=progress), n_primaries=n_primaries,
                          rise_threshold=rise_threshold)
    prim, back = gt["primaries"], gt["backups"]
    task = ioi_task(model, n_prompts, prompt_seed=HELD_OUT_SEED, names=NAMES, prepend_bos=True)
    eng = Engine(model, task, progress=progress)
    H = eng.n_heads
    clean = task.metric(eng.clean_logits()).mean().item()

    def metric_of(units):
        return task.metric(eng.logits([Variant.zero(units)])[0]).mean().item()

    ablated = metric_of(prim)
    both = metric_of(prim + back)
    expected_drop = float(gt["clean_dla"][[u.flat(H) for u in prim]].sum())
    res = {
        "accuracy": task.accuracy(eng.clean_logits()),
        "logit_diff": {"clean": clean, "primaries_ablated": ablated, "primaries_and_backups_ablated": both},
        "repair_fraction": 1 - (clean - ablated) / expected_drop if expected_drop > 0 else float("nan"),
        "primaries": [list(u) for u in prim],
        "backups": [list(u) for u in back],
        "criterion": {"primary_share": 0.25 if n_primaries is None else None, "n_primaries": n_primaries,
                      "rise_threshold_share": rise_threshold, "threshold_logits": gt["threshold_logits"],
                      "prompt_seed": GT_SEED, "n_prompts": n_prompts},
        "clean_dla": np.round(gt["clean_dla"], 4).tolist(),
        "ablated_dla": np.round(gt["ablated_dla"], 4).tolist(),
        "held_out_prompt_seed": HELD_OUT_SEED,
    }
    if back:
        mp = float(np.mean([gt["clean_dla"][u.flat(H)] for u in prim]))
        mb = float(np.mean([gt["clean_dla"][u.flat(H)] for u in back]))
        res["backup_to_primary_clean_dla"] = mb / mp
        rec = recovery(model, task, prim, back, progress=progress)
        res["selectors"] = {r["selector"]: {"roc_auc": r["roc_auc"], "ap": r["ap"], "p_at_k": r["p_at_k"]}
                            for r in rec.rows}
    return res


# the shipped organisms: name -> (recipe, training seed)
SHIPPED = {"ioi_dormant": ("aux_dropout", 1), "ioi_dormant_wide": ("wide", 0), "ioi_cofiring": ("upper_dropout", 0)}
SUMMARIES = {
    "ioi_dormant": "3x4 trained IOI model: three last-layer backups, silent until the middle-layer movers go",
    "ioi_dormant_wide": "3x8 trained IOI model: two dormant last-layer backups of eight middle-layer movers",
    "ioi_cofiring": "3x4 trained IOI model: three co-firing compensators of the top-3 movers",
}


NOTES = {
    "ioi_cofiring": ("Does not reach CoAx (comp) ROC-AUC >= 0.85: the fourth co-firing mover 1.1, left out of the "
                     "top-3 seed, gains conditional importance without its DLA rising, and layer-0 heads rank high; "
                     "the amplification ratio ranks the three compensators first. See docs/organisms.md."),
}


def write_card(out: Path, name: str, log: dict, m: dict, organism: Optional[str] = None) -> dict:
    """The card.json of recipe ``name``'s model (shipped as ``organism``)."""
    r = log["settings"]
    card = {
        "name": organism or name,
        "recipe": name,
        "summary": SUMMARIES.get(organism, f"{r['n_layers']}x{r['n_heads']} trained IOI model, recipe {name}"),
        "task": {"kind": "ioi", "names": NAMES, "places": list(IOI_PLACES), "objects": list(IOI_OBJECTS)},
        "architecture": {"family": "GPT-2", "n_layers": r["n_layers"], "n_heads": r["n_heads"],
                         "d_model": r["d_model"], "d_mlp": r["d_mlp"], "n_ctx": r["n_ctx"]},
        "how_built": (f"trained by `python recipes/train_ioi.py {name} OUT_DIR "
                      f"--seed {r['seed']}` (recipe {name}: {RECIPES[name]}; {log['train_seconds']} s on CPU, "
                      f"torch {torch.__version__})"),
        "training": {k: log[k] for k in ("recipe", "settings", "train_seconds", "log")},
        "accuracy": m["accuracy"],
        "primaries": m["primaries"],
        "backups": m["backups"],
        "backup_criterion": (
            "direct logit attribution (DLA) to logit(IO) - logit(S) at the last position, on "
            f"{m['criterion']['n_prompts']} prompts of seed {m['criterion']['prompt_seed']}: primaries "
            + ("= heads with clean DLA >= 25% of the largest head's" if m["criterion"]["n_primaries"] is None
               else f"= the {m['criterion']['n_primaries']} heads with the largest clean DLA")
            + "; backups = non-primary heads whose DLA rises by more than "
            f"{m['criterion']['rise_threshold_share']:.0%} of the primaries' summed clean DLA "
            f"({m['criterion']['threshold_logits']:.3f} logits) when the primaries are zero-ablated"),
        "dormancy_ratio": m.get("backup_to_primary_clean_dla"),
        "notes": NOTES.get(organism, ""),
        "roles": {"other_heads_with_clean_dla_over_25pct": [
            [i // r["n_heads"], i % r["n_heads"]] for i, v in enumerate(m["clean_dla"])
            if v >= 0.25 * max(m["clean_dla"]) and [i // r["n_heads"], i % r["n_heads"]] not in m["primaries"]]},
        "measured": m,
    }
    atomic_write_text(Path(out) / "card.json", json.dumps(card, indent=1))
    return card


def _pretty(name, m):
    sel = m.get("selectors", {})
    auc = " ".join(f"{k}={v['roc_auc']:.2f}" for k, v in sel.items() if k in ("comp", "ratio", "single", "coact"))
    ld = m["logit_diff"]
    return (f"{name:18s} acc={m['accuracy']:.3f} LD {ld['clean']:.2f} -> {ld['primaries_ablated']:.2f} -> "
            f"{ld['primaries_and_backups_ablated']:.2f} repair={m['repair_fraction']:.2f} "
            f"P={m['primaries']} B={m['backups']} dormancy={m.get('backup_to_primary_clean_dla', float('nan')):.2f} "
            f"{auc}")


def markdown_table(cards: list) -> str:
    """One row per trained recipe, from card.json files (docs/organisms.md uses it)."""
    rows = ["| recipe | acc | LD clean -> P ablated -> P+B ablated | repair | primaries | backups | "
            "dormancy | CoAx AUC | ratio AUC | single AUC | AtP AUC | GradDrop AUC | train s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cards:
        m = c["measured"]
        ld = m["logit_diff"]
        sel = m.get("selectors", {})

        def auc(k):
            return f"{sel[k]['roc_auc']:.2f}" if k in sel else "–"
        dorm = c.get("dormancy_ratio")
        rows.append(
            f"| {c['name']} | {m['accuracy']:.3f} | {ld['clean']:.2f} -> {ld['primaries_ablated']:.2f} -> "
            f"{ld['primaries_and_backups_ablated']:.2f} | {m['repair_fraction']:.2f} | {len(m['primaries'])} | "
            f"{', '.join(f'{a}.{b}' for a, b in m['backups']) or 'none'} | "
            f"{'–' if dorm is None else f'{dorm:.2f}'} | {auc('comp')} | {auc('ratio')} | {auc('single')} | "
            f"{auc('atp')} | {auc('atp_gd')} | {c['training']['train_seconds']} |")
    return "\n".join(rows)


def ship(trained_dirs: dict, dest: Path = organisms.HERE) -> None:
    """Copy trained model dirs (organism -> dir) into the package as the SHIPPED
    organisms, re-measuring each and writing its card."""
    import shutil

    for organism, (name, seed) in SHIPPED.items():
        src = Path(trained_dirs[organism])
        log = json.loads((src / "card.json").read_text())["training"]
        if log["settings"]["seed"] != seed or log.get("recipe", name) != name:
            raise ValueError(f"{src} was not trained with recipe {name} seed {seed}")
        log["recipe"] = name
        out = dest / organism
        out.mkdir(exist_ok=True)
        for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
            shutil.copy(src / f, out / f)
        m = measure(out, recipe(name)["n_primaries"])
        write_card(out, name, log, m, organism)
        print(_pretty(organism, m), flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("recipe", nargs="?", default="dormant")
    ap.add_argument("out", nargs="?", default=None)
    ap.add_argument("--all", action="store_true", help="train and measure every recipe")
    ap.add_argument("--seed", type=int, default=None, help="training seed (default: the recipe's)")
    ap.add_argument("--table", nargs="+", metavar="DIR", help="print the markdown table of trained organism dirs")
    a = ap.parse_args(argv)
    if a.table:
        print(markdown_table([json.loads((Path(d) / "card.json").read_text()) for d in a.table]))
        return
    names = list(RECIPES) if a.all else [a.recipe]
    for name in names:
        out = Path(a.out or f"organism-{name}") / (name if a.all else "")
        log = train(name, out, rng_seed=a.seed)
        m = measure(out, recipe(name)["n_primaries"])
        write_card(out, name, log, m)
        print(_pretty(name, m), f"train {log['train_seconds']} s", flush=True)


if __name__ == "__main__":
    main()
