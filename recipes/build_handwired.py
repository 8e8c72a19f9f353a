"""Build the hand-wired IOI organism from explicit weights (exact ground truth).

    python recipes/build_handwired.py [OUT_DIR]

(``OUT_DIR`` defaults to the shipped ``coax_nb/organisms/handwired``.) A recipe, not
part of the package: nothing in ``coax_nb`` imports it.

A 3-layer x 4-head GPT-2-architecture model whose every weight is set here. The
residual stream has named dimensions; every head reads and writes named ones:

  layer 0  0.0 S-inhibition: at every position from 10 on, attends to position 10
               (the second subject, S2, in both IOI templates) and writes its name
               into INH.
           0.1 dead (all weights zero).
           0.2 loud but unread: writes a constant into a dimension nothing reads.
           0.3 distractor: raises the logit of the token "the" (matters alone, for
               another token).
  layer 1  1.0, 1.1 primary name movers: attend to the name tokens, minus those in
               INH (so to the indirect object), copy it into ANS, and each raises
               its own "done" flag (DONE_A, DONE_B).
           1.2 co-firing redundant head: the same attention, also copies the answer,
               raises no flag (active, redundant, not a backup).
           1.3 dead.
  layer 2  2.0, 2.1 backups: the name-mover circuit with a large negative query
               weight on DONE_A / DONE_B. While their primary works they attend
               away from the names and write nothing; once it is ablated they copy
               the answer exactly as it did (full repair).
           2.2 distractor: copies the place token into the place logits.
           2.3 dead.

LayerNorm is neutralised (organisms.md): every token embedding carries 30 on a
constant dimension, every written vector is made mean-free through a compensation
dimension, writes are small (x0.1) and the unembedding gain is large, so every
LayerNorm scale stays within ~1e-4 of fixed and only the wired heads are conditional.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

from coax_nb import organisms
from coax_nb.tasks import IOI_NAMES, IOI_OBJECTS, IOI_PLACES
from coax_nb.toy import ioi_vocabulary, word_tokenizer

NAME = "handwired"
NAMES = IOI_NAMES[:16]
PLACES = IOI_PLACES
OBJECTS = IOI_OBJECTS
D_MODEL, N_HEADS, N_LAYERS, N_CTX = 96, 4, 3, 32
D_HEAD = D_MODEL // N_HEADS
SIGMA = 0.1  # size of every residual write; readers divide it out
CONST = 30.0  # the large constant component that pins LayerNorm's scale
S2_POSITION = 10  # index of the second subject in both IOI templates (BOS at 0)
PRIMARIES = [(1, 0), (1, 1)]
BACKUPS = [(2, 0), (2, 1)]
ROLES = {
    "s_inhibition": [(0, 0)], "dead": [(0, 1), (1, 3), (2, 3)], "loud_unread": [(0, 2)],
    "distractor_the": [(0, 3)], "cofiring_redundant": [(1, 2)], "distractor_place": [(2, 2)],
}
WRITE = {"A": 0.35, "B": 0.35, "C": 0.30}  # share of the answer each name mover writes
GAIN = {"name": 5.0, "place": 2.0, "the": 2.0}  # unembedding gains (logits per unit of signal)
ATTEND, INHIBIT, DONE_GATE = 20.0, 40.0, 45.0  # attention-score sizes (after GPT-2's 1/sqrt(d_head))

# residual dimensions
CONST_D, COMP_D, BOS_F, NAME_F, POS_S2, DONE_A, DONE_B, PLACE_F, THE_D, LOUD_D = range(10)
NAME_ID = list(range(10, 10 + len(NAMES)))
INH = list(range(NAME_ID[-1] + 1, NAME_ID[-1] + 1 + len(NAMES)))
ANS = list(range(INH[-1] + 1, INH[-1] + 1 + len(NAMES)))
PLACE_ID = list(range(ANS[-1] + 1, ANS[-1] + 1 + len(PLACES)))
PLACE_ANS = list(range(PLACE_ID[-1] + 1, PLACE_ID[-1] + 1 + len(PLACES)))
assert PLACE_ANS[-1] < D_MODEL


def vocabulary() -> list[str]:
    drop = set(IOI_NAMES) - set(NAMES)
    return [w for w in ioi_vocabulary() if w not in drop]


def _mean_free(v: torch.Tensor) -> torch.Tensor:
    """Put minus the sum of the other dimensions on the compensation dimension, so a
    write never moves the residual's mean (LayerNorm then ignores it)."""
    v = v.clone()
    v[..., COMP_D] = 0.0
    v[..., COMP_D] = -v.sum(-1)
    return v


def _weights(tok) -> dict[str, torch.Tensor]:
    V = len(tok)
    ids = tok.get_vocab()
    W: dict[str, torch.Tensor] = {}
    wte = torch.zeros(V, D_MODEL)
    wte[ids["<bos>"], BOS_F] = SIGMA
    for k, n in enumerate(NAMES):
        wte[ids[n], NAME_F] = SIGMA
        wte[ids[n], NAME_ID[k]] = SIGMA
    for k, p in enumerate(PLACES):
        wte[ids[p], PLACE_F] = SIGMA
        wte[ids[p], PLACE_ID[k]] = SIGMA
    wte = _mean_free(wte)
    wte[:, CONST_D] = CONST  # the constant itself (its mean shift is cancelled by LayerNorm's bias)
    W["transformer.wte.weight"] = wte
    wpe = torch.zeros(N_CTX, D_MODEL)
    wpe[S2_POSITION, POS_S2] = SIGMA
    W["transformer.wpe.weight"] = _mean_free(wpe)

    # LayerNorm: identity on signal dims (the constant's offset cancelled by the bias)
    std0 = math.sqrt(CONST**2 / D_MODEL - (CONST / D_MODEL) ** 2)
    ln_w = torch.full((D_MODEL,), std0)
    ln_w[CONST_D] = ln_w[COMP_D] = 0.0
    ln_b = torch.where(ln_w > 0, torch.full((D_MODEL,), CONST / D_MODEL), torch.zeros(D_MODEL))

    scale = math.sqrt(D_HEAD)  # undo GPT-2's 1/sqrt(d_head)
    inv = 1.0 / SIGMA
    for layer in range(N_LAYERS):
        pre = f"transformer.h.{layer}."
        for ln in ("ln_1", "ln_2"):
            W[pre + ln + ".weight"], W[pre + ln + ".bias"] = ln_w.clone(), ln_b.clone()
        Wq, Wk, Wv = (torch.zeros(D_MODEL, D_MODEL) for _ in range(3))
        bq, bk, bv = (torch.zeros(D_MODEL) for _ in range(3))
        Wo, bo = torch.zeros(D_MODEL, D_MODEL), torch.zeros(D_MODEL)
        for h in range(N_HEADS):
            c = h * D_HEAD  # first column of this head
            role = (layer, h)
            if role == (0, 0):  # S-inhibition: attend to position 10, copy the name into INH
                bq[c] = ATTEND * scale
                Wk[POS_S2, c] = inv
                for k in range(len(NAMES)):
                    Wv[NAME_ID[k], c + 1 + k] = inv
                    Wo[c + 1 + k, INH[k]] = SIGMA
            elif role == (0, 2):  # loud, unread
                bv[c] = 1.0
                Wo[c, LOUD_D] = SIGMA
            elif role == (0, 3):  # raises "the"
                bv[c] = 1.0
                Wo[c, THE_D] = SIGMA
            elif layer in (1, 2) and h in (0, 1, 2) and role != (2, 2):
                # name mover: score(j) = ATTEND * is_name(j) - INHIBIT * <INH, name_j> [- DONE_GATE * done]
                bq[c] = ATTEND * scale
                Wk[NAME_F, c] = inv
                for k in range(len(NAMES)):
                    Wq[INH[k], c + 1 + k] = -INHIBIT * scale * inv
                    Wk[NAME_ID[k], c + 1 + k] = inv
                    Wv[NAME_ID[k], c + 1 + k] = inv
                share = WRITE["ABC"[h]]
                for k in range(len(NAMES)):
                    Wo[c + 1 + k, ANS[k]] = share * SIGMA
                if layer == 1 and h in (0, 1):  # primaries raise their done flag
                    for k in range(len(NAMES)):
                        Wo[c + 1 + k, (DONE_A, DONE_B)[h]] = SIGMA
                if layer == 2:  # backups stand down while their primary's flag is up
                    Wq[(DONE_A, DONE_B)[h], c] = -DONE_GATE * scale * inv
            elif role == (2, 2):  # place copier
                bq[c] = ATTEND * scale
                Wk[PLACE_F, c] = inv
                for k in range(len(PLACES)):
                    Wv[PLACE_ID[k], c + 1 + k] = inv
                    Wo[c + 1 + k, PLACE_ANS[k]] = SIGMA
        W[pre + "attn.c_attn.weight"] = torch.cat([Wq, Wk, Wv], dim=1)
        W[pre + "attn.c_attn.bias"] = torch.cat([bq, bk, bv])
        W[pre + "attn.c_proj.weight"] = _mean_free(Wo)
        W[pre + "attn.c_proj.bias"] = _mean_free(bo)
        W[pre + "mlp.c_fc.weight"] = torch.zeros(D_MODEL, 4 * D_MODEL)
        W[pre + "mlp.c_fc.bias"] = torch.zeros(4 * D_MODEL)
        W[pre + "mlp.c_proj.weight"] = torch.zeros(4 * D_MODEL, D_MODEL)
        W[pre + "mlp.c_proj.bias"] = torch.zeros(D_MODEL)
    W["transformer.ln_f.weight"], W["transformer.ln_f.bias"] = ln_w.clone(), ln_b.clone()
    Wu = torch.zeros(V, D_MODEL)
    for k, n in enumerate(NAMES):
        Wu[ids[n], ANS[k]] = GAIN["name"] * inv
    for k, p in enumerate(PLACES):
        Wu[ids[p], PLACE_ANS[k]] = GAIN["place"] * inv
    Wu[ids["the"], THE_D] = GAIN["the"] * inv
    W["lm_head.weight"] = Wu
    return W


def build(out_dir: Path) -> Path:
    """Write the organism's HF-format directory (weights exactly as specified)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = word_tokenizer(vocabulary())
    cfg = GPT2Config(vocab_size=len(tok), n_positions=N_CTX, n_embd=D_MODEL, n_layer=N_LAYERS, n_head=N_HEADS,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=False,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu_new")
    model = GPT2LMHeadModel(cfg)
    state = model.state_dict()
    weights = _weights(tok)
    for k in state:
        if k.endswith(".attn.bias") or k.endswith(".attn.masked_bias"):
            continue
        if k not in weights:
            raise KeyError(f"no hand-set value for {k}")
    with torch.no_grad():
        model.load_state_dict({**state, **weights}, strict=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    for extra in ("generation_config.json",):
        (out_dir / extra).unlink(missing_ok=True)
    return out_dir


def measure(out_dir: Path, n_prompts: int = 64, prompt_seed: int = 0) -> dict:
    """The figures the card records, measured on the built files through the engine."""
    from coax_nb.engine import Engine, Variant
    from coax_nb.evaluate import evaluate
    from coax_nb.models import load_model
    from coax_nb.scores import ablation_energy, coax_scan
    from coax_nb.tasks import ioi_task

    model = load_model(out_dir, device="cpu")
    task = ioi_task(model, n_prompts, prompt_seed=prompt_seed, names=NAMES)
    e = Engine(model, task, progress=False)
    u = e.units
    ld = lambda v: float(task.metric(e.logits([v])[0] if v.actions else e.clean_logits()).mean())  # noqa: E731
    clean = ld(Variant())
    prim = ld(Variant.zero(u(PRIMARIES)))
    both = ld(Variant.zero(u(PRIMARIES + BACKUPS)))
    one = ld(Variant.zero(u([PRIMARIES[0]])))
    one_and_backup = ld(Variant.zero(u([PRIMARIES[0], BACKUPS[0]])))
    s = coax_scan(e, primaries=PRIMARIES, progress=False)
    fl = lambda name, unit: float(s.value(name, unit))  # noqa: E731
    return {
        "accuracy": task.accuracy(e.clean_logits()),
        "logit_diff": {"clean": clean, "primaries_ablated": prim, "primaries_and_backups_ablated": both,
                       "one_primary_ablated": one, "one_primary_and_its_backup_ablated": one_and_backup},
        # share of the loss that the backups make good: 1 = full repair, 0 = none
        "repair_fraction_of_primaries": 1 - (clean - prim) / (clean - both),
        "repair_fraction_of_one_primary": 1 - (clean - one) / (clean - one_and_backup),
        "scores": {str(x): {k: fl(k, x) for k in ("single", "conditional", "comp", "ratio")}
                   for x in BACKUPS + [(1, 2), (0, 0), (2, 2), (0, 3)]},
        "primary_single_energy": fl("single", PRIMARIES[0]),
        "backup_single_over_joint": float(s.value("single", BACKUPS[0])
                                          / ablation_energy(e, Variant.zero(u([PRIMARIES[0], BACKUPS[0]])))),
        "roc_auc": {by: evaluate(s, BACKUPS, by=by)["roc_auc"] for by in ("comp", "ratio", "single", "coact")},
        "task": {"generator": "ioi_task", "n_prompts": n_prompts, "seed": prompt_seed},  # card's key
    }


def write_card(out_dir: Path) -> dict:
    m = measure(out_dir)
    card = {
        "name": NAME,
        "summary": "3x4 hand-wired IOI model: 2 name movers with 2 dormant backups, exact ground truth",
        "task": {"kind": "ioi", "names": list(NAMES), "places": list(PLACES), "objects": list(OBJECTS)},
        "architecture": {"family": "GPT-2", "n_layers": N_LAYERS, "n_heads": N_HEADS, "d_model": D_MODEL,
                         "n_ctx": N_CTX, "mlp": "all-zero weights"},
        "how_built": "hand-wired from explicit weights by recipes/build_handwired.py (see its docstring)",
        "primaries": [list(x) for x in PRIMARIES],
        "backups": [list(x) for x in BACKUPS],
        "backup_criterion": "by construction: 2.0 / 2.1 read DONE_A / DONE_B, the flags 1.0 / 1.1 write",
        "roles": {k: [list(x) for x in v] for k, v in ROLES.items()},
        "measured": m,
    }
    (out_dir / "card.json").write_text(json.dumps(card, indent=1) + "\n")
    return card


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else organisms.HERE / NAME
    build(out)
    card = write_card(out)
    print(json.dumps(card["measured"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
