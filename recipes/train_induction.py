"""Train the induction organisms (three model families) and label their ground truth.

``python recipes/train_induction.py FAMILY OUT_DIR --seed N`` trains one family
(``gpt2``, ``neox``, ``llama``) from its fixed seed (or training seed N) on one CPU
thread in a few minutes, measures it and writes a HF-format model directory with a
``card.json``. ``--all`` trains every family into ``OUT_DIR/FAMILY``; ``--ship DIR``
copies the trained ``DIR/FAMILY`` folders into the package as ``induction_FAMILY``.
``--check FAMILY`` retrains the shipped ``induction_FAMILY`` from its card's seed into a
temporary directory and compares the behaviour with the card (accuracy, primaries,
backups, log-probs within tolerances); it exits 1 and names what differed on a mismatch.
A recipe, not part of the package: nothing in ``coax_nb`` imports it.

Data: ``[BOS] + filler + r + r`` over a 96-token numeric vocabulary, ``r`` of a random
length (so no head can find the earlier copy by a fixed offset) and every token of a
sequence distinct; the loss is read on the second copy only. Pressures:

- ``head_dropout`` on ``dropout_layers``: each head of those layers is zeroed with this
  probability per example (no rescaling: the zero-ablation the analysis uses);
- ``aux_layer``: the same loss read after that layer through the final norm and the
  unembedding (deep supervision), so the induction heads must sit there and the later
  layer can watch whether they wrote the answer;
- ``label_smoothing`` and weight decay: an overshooting answer logit costs loss.

Dropout and deep supervision start at step ``pressure_from``: with them from the start
the induction heads did not form within the budget. ``schedule`` is ``onecycle`` (one-cycle
LR, the default) or ``warmup`` (linear warm-up over ``warmup_steps``, then constant).

Ground truth (never CoAx): primaries = heads whose induction attention score (read from
the HF model's own attention weights) is at least ``PRIMARY_SHARE`` of the largest;
backups = other heads whose direct logit attribution to the correct next token
(:func:`coax_nb.dla.head_dla`) rises by more than ``RISE_SHARE`` of the primaries'
summed clean DLA when the primaries are zero-ablated.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from coax_nb.io import atomic_write_text
from coax_nb.toy import word_tokenizer

VOCAB_WORDS = [f"t{i:02d}" for i in range(96)]
HALF_LENGTH = 10  # the organisms' task: induction_task(..., half_length=10)
BASE = dict(n_layers=3, n_heads=4, d_model=64, d_mlp=128, n_ctx=64, seq_len=33, min_half=4, max_half=12, max_filler=6,
            language_share=0.25, steps=3000, batch=32, pressure_from=1200, lr=3e-3, weight_decay=0.01, label_smoothing=0.1, head_dropout=0.5, dropout_layers=[1],
            aux_layer=1, aux_weight=1.0, seed=0)
FAMILIES = {
    # GPT-2: learned positions, LayerNorm, sequential attention then MLP, tied embeddings.
    # One-cycle LR (3e-3 or 1e-3) gave no induction head (docs/organisms.md); a lower LR
    # after a plain warm-up forms them by step ~750. The layer-2 backups form more slowly
    # than with rotary, so more steps and a higher head dropout.
    "gpt2": dict(lr=1e-3, schedule="warmup", warmup_steps=300, steps=4500, pressure_from=1500, head_dropout=0.75),
    # GPT-NeoX / Pythia: rotary on a quarter of each head, parallel attention and MLP.
    "neox": dict(rotary_pct=0.25),
    # Llama: RMSNorm, rotary, SwiGLU MLP, grouped-query attention (2 key/value heads).
    "llama": dict(n_kv_heads=2),
}
GT_SEED = 1000  # prompts that define the ground truth
HELD_OUT_SEED = 12345  # prompts every selector is scored on
N_PROMPTS = 64
PRIMARY_SHARE = 0.5
RISE_SHARE = 0.1
# --check: how far a retrained organism may be from its card and still count as the same
CHECK_ACC_TOL = 0.02
CHECK_LOGP_TOL = 0.1  # nats, each of the three log-probs


def recipe(family: str, rng_seed: Optional[int] = None) -> dict:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")
    r = {**BASE, **FAMILIES[family], "family": family}
    if rng_seed is not None:
        r["seed"] = rng_seed
    return r


def tokenizer():
    return word_tokenizer(VOCAB_WORDS)


def build_model(r: dict, tok):
    """An untrained HF model of the recipe's family."""
    from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, \
        LlamaForCausalLM

    common = dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    if r["family"] == "gpt2":
        cfg = GPT2Config(n_positions=r["n_ctx"], n_embd=r["d_model"], n_layer=r["n_layers"], n_head=r["n_heads"],
                         n_inner=r["d_mlp"], resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **common)
        return GPT2LMHeadModel(cfg)
    shape = dict(hidden_size=r["d_model"], num_hidden_layers=r["n_layers"], num_attention_heads=r["n_heads"],
                 intermediate_size=r["d_mlp"], max_position_embeddings=r["n_ctx"], **common)
    if r["family"] == "neox":
        cfg = GPTNeoXConfig(rotary_pct=r["rotary_pct"], use_parallel_residual=True, hidden_dropout=0.0,
                            attention_dropout=0.0, tie_word_embeddings=False, **shape)
        return GPTNeoXForCausalLM(cfg)
    cfg = LlamaConfig(num_key_value_heads=r["n_kv_heads"], tie_word_embeddings=False, **shape)
    return LlamaForCausalLM(cfg)


def _modules(model, family):
    """(attention output projections per layer, final norm, unembedding)."""
    if family == "gpt2":
        t = model.transformer
        return [b.attn.c_proj for b in t.h], t.ln_f, model.lm_head
    if family == "neox":
        t = model.gpt_neox
        return [b.attention.dense for b in t.layers], t.final_layer_norm, model.get_output_embeddings()
    t = model.model
    return [b.self_attn.o_proj for b in t.layers], t.norm, model.lm_head


def batch(r: dict, n: int, gen: torch.Generator, n_vocab: int):
    """``[n, seq_len]`` token ids and the ``[n, seq_len]`` targets (-100 where the next
    token has not occurred before). Each row is ``[BOS] + filler + r + r + r ...`` (cut
    at ``seq_len``), ``r`` of a random length in ``min_half..max_half`` and every token of
    filler and ``r`` distinct. Ordinary tokens are ids 2.. (0 and 1 are BOS and UNK)."""
    T = r["seq_len"]
    x = torch.zeros(n, T, dtype=torch.long)
    y = torch.full((n, T), -100, dtype=torch.long)
    for i in range(n):
        h = int(torch.randint(r["min_half"], r["max_half"] + 1, (1,), generator=gen))
        m = int(torch.randint(0, r["max_filler"] + 1, (1,), generator=gen))
        toks = (torch.randperm(n_vocab - 2, generator=gen)[:m + h] + 2).tolist()
        fill, rep = toks[:m], toks[m:]
        row = ([0] + fill + rep * T)[:T]
        x[i] = torch.tensor(row)
        start = 1 + m + h  # first position of the second copy
        y[i, start - 1:T - 1] = x[i, start:T]  # position j predicts token j+1
    # the skip-bigram language on a share of the rows: the token after next is
    # skip[token], which a previous-token head in layer 0 learns to carry early
    skip = torch.randperm(n_vocab - 2, generator=torch.Generator().manual_seed(7)) + 2
    n_lang = int(round(r["language_share"] * n))
    for i in range(n_lang):
        row = [0] + (torch.randint(0, n_vocab - 2, (2,), generator=gen) + 2).tolist()
        while len(row) < T:
            row.append(int(skip[row[-2] - 2]))
        x[i] = torch.tensor(row)
        y[i] = -100
        y[i, 2:T - 1] = x[i, 3:T]
    return x, y


def train(family: str, out: Path, verbose: bool = True, rng_seed: Optional[int] = None) -> dict:
    """Train ``family`` into ``out`` (HF format); returns the training log."""
    r = recipe(family, rng_seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(r, Path(out), verbose)
    finally:
        torch.set_num_threads(threads)


def _train(r: dict, out: Path, verbose: bool) -> dict:
    torch.manual_seed(r["seed"])
    tok = tokenizer()
    model = build_model(r, tok)
    projs, final_norm, unembed = _modules(model, r["family"])
    H, dh = r["n_heads"], r["d_model"] // r["n_heads"]
    state = {"mask": {}}

    def pre_hook(layer):
        def fn(module, args):
            if layer not in state["mask"]:
                return None
            x = args[0]
            b, t, _ = x.shape
            heads = x.view(b, t, H, dh) * state["mask"][layer][:, None, :, None]
            return (heads.reshape(b, t, H * dh),) + tuple(args[1:])
        return fn

    hooks = [p.register_forward_pre_hook(pre_hook(i)) for i, p in enumerate(projs)]
    opt = torch.optim.AdamW(model.parameters(), lr=r["lr"], weight_decay=r["weight_decay"])
    if r.get("schedule", "onecycle") == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=r["lr"], total_steps=r["steps"], pct_start=0.1)
    else:  # "warmup": linear warm-up, then constant
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / r["warmup_steps"]))
    gen = torch.Generator().manual_seed(r["seed"])
    ce_fn = torch.nn.CrossEntropyLoss(label_smoothing=r["label_smoothing"], ignore_index=-100)
    t0 = time.time()
    log = []
    model.train()
    for step in range(r["steps"]):
        x, y = batch(r, r["batch"], gen, len(tok))
        state["mask"] = {}
        pressed = step >= r["pressure_from"]  # plain training first: the induction heads form
        if r["head_dropout"] > 0 and pressed:
            for layer in r["dropout_layers"]:
                state["mask"][layer] = (torch.rand(r["batch"], H, generator=gen) >= r["head_dropout"]).float()
        aux = r["aux_layer"] is not None and pressed
        fwd = model(x, output_hidden_states=aux)
        V = fwd.logits.shape[-1]
        ce = ce_fn(fwd.logits.reshape(-1, V), y.reshape(-1))
        if aux:
            early = unembed(final_norm(fwd.hidden_states[r["aux_layer"] + 1]))
            ce = ce + r["aux_weight"] * ce_fn(early.reshape(-1, V), y.reshape(-1))
        opt.zero_grad()
        ce.backward()
        opt.step()
        sched.step()
        if step % 200 == 0 or step == r["steps"] - 1:
            log.append({"step": step, "loss": round(ce.item(), 4)})
            if verbose:
                print(f"[{r['family']}] step {step:5d} loss {ce.item():.4f} ({time.time() - t0:.0f} s)", flush=True)
    seconds = round(time.time() - t0, 1)
    for h in hooks:
        h.remove()
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return {"family": r["family"], "settings": r, "train_seconds": seconds, "log": log}


def induction_scores(path: Path, prompts) -> np.ndarray:
    """Flat ``[L*H]`` mean attention from each second-copy position to the token after
    that token's first occurrence, read from the HF model's own (eager) attention
    weights -- no coax_nb code involved."""
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(path), attn_implementation="eager", dtype=torch.float64).eval()
    x = torch.tensor(prompts)
    with torch.no_grad():
        att = torch.stack(hf(x, output_attentions=True).attentions, 1)  # [n, L, H, T, T]
    T = x.shape[1]
    h = (T - 1) // 2
    q = torch.arange(1 + h, T)  # second copy (BOS + r + r)
    k = q - h + 1  # the token after the first occurrence
    return att[:, :, :, q, k].mean((0, 3)).flatten().numpy()


def ground_truth(path: Path, prompt_seed: int = GT_SEED, n_prompts: int = N_PROMPTS,
                 primary_share: float = PRIMARY_SHARE, rise_share: float = RISE_SHARE) -> dict:
    """Primaries by induction score, backups by the rise of DLA when they go."""
    from coax_nb.dla import head_dla
    from coax_nb.engine import Engine, Variant
    from coax_nb.models import load_model
    from coax_nb.tasks import induction_task
    from coax_nb.units import Unit

    model = load_model(str(path))
    task = induction_task(model, n_prompts, HALF_LENGTH, prompt_seed=prompt_seed, prepend_bos=True)
    eng = Engine(model, task, progress=False)
    H = eng.n_heads
    ind = induction_scores(path, task.prompts)
    prim = [int(i) for i in np.argsort(-ind) if ind[i] >= primary_share * ind.max()]
    primaries = [Unit(i // H, i % H) for i in prim]
    clean = head_dla(eng)
    ablated = head_dla(eng, Variant.zero(primaries))
    rise = ablated - clean
    threshold = rise_share * float(clean[prim].sum())
    backups = [Unit(int(i) // H, int(i) % H) for i in np.argsort(-rise) if i not in prim and rise[i] > threshold]

    def metric(units):
        lg = eng.logits([Variant.zero(units)])[0] if units else eng.clean_logits()
        return float(task.metric(lg).mean()), task.accuracy(lg)
    return {"engine": eng, "primaries": primaries, "backups": backups, "induction_score": ind, "clean_dla": clean,
            "ablated_dla": ablated, "rise": rise, "threshold_logits": threshold,
            "metric": {"clean": metric([]), "primaries_ablated": metric(primaries),
                       "primaries_and_backups_ablated": metric(primaries + backups)}}


def measure(path: Path, progress: bool = False) -> dict:
    from coax_nb.recover import recovery
    from coax_nb.tasks import induction_task

    gt = ground_truth(path)
    prim, back = gt["primaries"], gt["backups"]
    m = gt["metric"]
    res = {
        "accuracy": m["clean"][1],
        "log_prob": {k: round(v[0], 4) for k, v in m.items()},
        "accuracy_by_variant": {k: round(v[1], 4) for k, v in m.items()},
        "primaries": [list(u) for u in prim],
        "backups": [list(u) for u in back],
        "criterion": {"primary_share": PRIMARY_SHARE, "rise_threshold_share": RISE_SHARE,
                      "threshold_logits": round(gt["threshold_logits"], 4), "prompt_seed": GT_SEED,
                      "n_prompts": N_PROMPTS, "half_length": HALF_LENGTH},
        "induction_score": np.round(gt["induction_score"], 4).tolist(),
        "clean_dla": np.round(gt["clean_dla"], 4).tolist(),
        "ablated_dla": np.round(gt["ablated_dla"], 4).tolist(),
        "held_out_prompt_seed": HELD_OUT_SEED,
    }
    if back:
        model = gt["engine"].model
        task = induction_task(model, N_PROMPTS, HALF_LENGTH, prompt_seed=HELD_OUT_SEED, prepend_bos=True)
        rec = recovery(model, task, prim, back, selectors=("comp", "ratio", "single", "atp"), progress=progress)
        res["selectors"] = {row["selector"]: {"roc_auc": row["roc_auc"]} for row in rec.rows}
    return res


def write_card(out: Path, log: dict, m: dict, organism: Optional[str] = None) -> dict:
    r = log["settings"]
    fam = r["family"]
    names = {"gpt2": "GPT-2", "neox": "GPT-NeoX", "llama": "Llama"}
    L, H = r["n_layers"], r["n_heads"]
    card = {
        "name": organism or f"induction_{fam}",
        "recipe": fam,
        "summary": (f"{L}x{H} {names[fam]}-family induction model: {len(m['primaries'])} induction heads, "
                    f"{len(m['backups']) or 'no'} backup{'s' if len(m['backups']) != 1 else ''}"),
        "task": {"kind": "induction", "half_length": HALF_LENGTH, "prepend_bos": True, "token_range": None},
        "architecture": {"family": names[fam], "n_layers": L, "n_heads": H, "d_model": r["d_model"],
                         "d_mlp": r["d_mlp"], "n_ctx": r["n_ctx"], "vocab": len(VOCAB_WORDS) + 2,
                         **({"rotary_pct": r["rotary_pct"], "parallel_attention": True} if fam == "neox" else {}),
                         **({"n_kv_heads": r["n_kv_heads"], "norm": "RMSNorm"} if fam == "llama" else {}),
                         **({"positions": "learned", "norm": "LayerNorm", "tied_embeddings": True}
                            if fam == "gpt2" else {})},
        "how_built": (f"trained by `python recipes/train_induction.py {fam} OUT_DIR --seed {r['seed']}` "
                      f"({log['train_seconds']} s on one CPU thread, torch {torch.__version__})"),
        "training": {k: log[k] for k in ("family", "settings", "train_seconds", "log")},
        "accuracy": m["accuracy"],
        "primaries": m["primaries"],
        "backups": m["backups"],
        "backup_criterion": (
            f"on {N_PROMPTS} repeated-random-token prompts (induction_task, half_length {HALF_LENGTH}, seed "
            f"{GT_SEED}): primaries = heads whose induction attention score (mean attention from each second-copy "
            "position to the token after its first occurrence, from the HF model's attention weights) is at least "
            f"{PRIMARY_SHARE:.0%} of the largest; backups = non-primary heads whose direct logit attribution to "
            f"the correct next token rises by more than {RISE_SHARE:.0%} of the primaries' summed clean DLA "
            f"({m['criterion']['threshold_logits']:.3f} logits) when the primaries are zero-ablated"),
        "notes": "" if m["backups"] else ("No head's DLA rises above the threshold when the primaries go: this "
                                          "recipe produced no backups for this family."),
        "measured": m,
    }
    atomic_write_text(Path(out) / "card.json", json.dumps(card, indent=1))
    return card


def pretty(name, m) -> str:
    sel = " ".join(f"{k}={v['roc_auc']:.2f}" for k, v in m.get("selectors", {}).items())
    lp = m["log_prob"]

    def fmt(units):
        return ", ".join(f"{a}.{b}" for a, b in units) or "none"
    return (f"{name:8s} acc={m['accuracy']:.3f} logp {lp['clean']:.2f} -> {lp['primaries_ablated']:.2f} -> "
            f"{lp['primaries_and_backups_ablated']:.2f} P={fmt(m['primaries'])} B={fmt(m['backups'])} "
            f"ind={[round(s, 2) for s in m['induction_score']]} {sel}")


def ship(trained: Path, families=tuple(FAMILIES)) -> None:
    """Copy ``trained/FAMILY`` into the package as ``induction_FAMILY`` and re-measure."""
    from coax_nb import organisms

    for fam in families:
        src = Path(trained) / fam
        log = json.loads((src / "card.json").read_text())["training"]
        dest = organisms.HERE / f"induction_{fam}"
        dest.mkdir(exist_ok=True)
        for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
            shutil.copy(src / f, dest / f)
        m = measure(dest)
        write_card(dest, log, m, dest.name)
        print(pretty(dest.name, m), flush=True)


def compare(card: dict, m: dict) -> list[str]:
    """What differs between a card and a fresh ``measure`` of a retrained model (empty:
    the same behaviour). Primaries and backups compare as sets: near-equal scores may
    swap order."""
    diffs = []
    if abs(m["accuracy"] - card["accuracy"]) > CHECK_ACC_TOL:
        diffs.append(f"accuracy {m['accuracy']:.4f} vs card {card['accuracy']:.4f} (tolerance {CHECK_ACC_TOL})")
    for key in ("primaries", "backups"):
        now, was = sorted(map(tuple, m[key])), sorted(map(tuple, card[key]))
        if now != was:
            diffs.append(f"{key} {now} vs card {was}")
    for k, was in card["measured"]["log_prob"].items():
        now = m["log_prob"][k]
        if abs(now - was) > CHECK_LOGP_TOL:
            diffs.append(f"log_prob[{k}] {now:.4f} vs card {was:.4f} (tolerance {CHECK_LOGP_TOL})")
    return diffs


def check(family: str) -> int:
    """Retrain the shipped ``induction_FAMILY`` from its card's seed and compare; 0 when
    the behaviour matches the card, 1 (and what differed, printed) otherwise."""
    import tempfile

    from coax_nb import organisms

    name = f"induction_{family}"
    card = organisms.card(name)
    settings = card["training"]["settings"]
    diffs = []
    now = recipe(family, settings["seed"])
    if now != settings:  # the recipe changed since the card was written: say what
        diffs += [f"setting {k}: recipe {now.get(k)!r} vs card {settings.get(k)!r}"
                  for k in sorted(set(now) | set(settings)) if now.get(k) != settings.get(k)]
    with tempfile.TemporaryDirectory() as tmp:
        log = train(family, Path(tmp), verbose=False, rng_seed=settings["seed"])
        m = measure(Path(tmp))
    print(pretty("card", card["measured"]), f"train {card['training']['train_seconds']} s")
    print(pretty("retrain", m), f"train {log['train_seconds']} s")
    diffs += compare(card, m)
    for d in diffs:
        print("MISMATCH", d)
    print(f"{name}: {'behaviour differs from the card' if diffs else 'retrained behaviour matches the card'}")
    return 1 if diffs else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("family", nargs="?", default="gpt2")
    ap.add_argument("out", nargs="?", default=None)
    ap.add_argument("--all", action="store_true", help="train and measure every family into OUT/FAMILY")
    ap.add_argument("--seed", type=int, default=None, help="training seed (default: the recipe's)")
    ap.add_argument("--ship", metavar="DIR", help="copy each trained DIR/FAMILY into the package as induction_FAMILY")
    ap.add_argument("--check", metavar="FAMILY", choices=list(FAMILIES),
                    help="retrain the shipped induction_FAMILY from its card's seed and compare with the card")
    a = ap.parse_args(argv)
    if a.check:
        return check(a.check)
    if a.ship:
        ship(Path(a.ship), [f for f in FAMILIES if (Path(a.ship) / f / "card.json").is_file()])
        return
    if a.all and a.out is None and a.family not in FAMILIES:  # `--all OUT_DIR`
        a.out, a.family = a.family, None
    fams = list(FAMILIES) if a.all else [a.family]
    for fam in fams:
        out = Path(a.out or f"organism-induction-{fam}") / (fam if a.all else "")
        log = train(fam, out, rng_seed=a.seed)
        m = measure(out)
        write_card(out, log, m)
        print(pretty(fam, m), f"train {log['train_seconds']} s", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
