# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 10 · The induction panel: one behaviour, several model families
#
# **You will learn**
#
# - why induction is a label-free behaviour: repeated random tokens carry their own answers, so three disjoint
#   prompt splits can *detect* the primaries, *calibrate* the selectors and *evaluate* them
# - find the primaries by their induction attention score and hold them against each organism's card
# - print the memory and time estimate first, then run the cross-model completion panel (`induction_transfer`)
# - read the per-model figure and the family macro over two controls: size-matched random heads and "+own", the
#   next heads by induction score
# - why a bigger drop is not the same as finding the backups: heads upstream of the circuit drop the metric too
# - run the same panel on hub models, with a checkpoint
#
# Runs in 20–30 seconds on a laptop CPU with every bundled induction organism (three when this was written:
# 20 s under papermill with one thread, the kernel's start included, 30 s beside another busy process; each
# organism added costs a few seconds more).

# %% tags=["parameters"]
# Parameters (papermill overrides these; see notebooks/README.md)
model = "induction"     # "induction": every bundled induction organism; or model specs separated by spaces
task = "induction"      # the panel's task: repeated random tokens (the only one it runs)
n_prompts = 24          # prompts in each of the three splits
primaries = None        # None: heads scoring at least half the top induction score; a number N takes the top N
device = "cpu"
output_dir = "outputs"

# %%
import os, time, warnings
warnings.filterwarnings("ignore")
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
from matplotlib.patches import Rectangle
from IPython.display import display
from coax_nb import Engine, Variant, discover_primaries, induction_task, load_model, organisms
from coax_nb.organisms import organism_name
from coax_nb.units import all_units

if task != "induction":
    raise ValueError(f"this notebook runs the induction panel, whose task is 'induction'; got task={task!r}")
if model == "induction":  # picks up every bundled induction organism, new families included
    specs = [f"organism:{n}" for n in organisms.names(kind="induction")]
else:
    specs = model.replace(",", " ").split() if isinstance(model, str) else list(model)
if primaries is not None and not str(primaries).strip().isdigit():
    raise ValueError(f"the panel finds its primaries by induction score; primaries is None or a number of heads, "
                     f"got {primaries!r}")
n_primaries = None if primaries is None else int(primaries)
KS = [1, 2, 4]                                          # heads added to the primaries
HALF = 10                                               # prompts are [BOS] r r, r of HALF distinct random tokens
SPLITS = {"detect": 0, "calibrate": 1, "evaluate": 2}   # the prompt seed of each split
MARGIN = 0.1                                            # nats: a smaller difference is read as a tie
os.makedirs(output_dir, exist_ok=True)

models, cards = {}, {}
for spec in specs:
    label = organism_name(spec) or spec.rstrip("/")
    models[label] = load_model(spec, device=device)
    cards[label] = organisms.card(label) if organism_name(spec) else None  # only organisms have a card


def card_heads(label, key):
    c = cards[label]
    return [f"L{layer}H{head}" for layer, head in c[key]] if c else []


display(pd.DataFrame([{"model": label, "family": c["architecture"]["family"] if c else "?",
                       "layers x heads": f"{m.cfg.n_layers} x {m.cfg.n_heads}",
                       "card primaries": " ".join(card_heads(label, "primaries")) or "-",
                       "card backups": " ".join(card_heads(label, "backups")) or "-"}
                      for (label, m), c in zip(models.items(), cards.values())]).set_index("model"))

# %% [markdown]
# ## 1 · The induction circuit, and why it needs no labels
#
# An induction circuit continues a sequence it has seen before: at the second `A` of `… A B … A`, it predicts
# `B`. Two heads do it together. A **previous-token head** (layer 0 in the organisms) writes "the token before
# me was `A`" into the position of `B`; an **induction head** (layer 1) at the second `A` attends to the position whose
# previous token was `A` — that is `B` — and copies it. Its **induction score** is the mean attention from each
# repeated position to the token after that token's first occurrence.
#
# The prompts are `[BOS] r r`: ten distinct random tokens `r`, twice. Nothing in the second copy can be
# predicted except by induction, and the answer is in the prompt itself, so the metric (the mean log-prob of the
# second copy's tokens) needs no labels and no human task. That lets the panel draw three **disjoint** splits
# from three prompt seeds: **detect** the primaries P on one, let every selector rank the other heads on the
# second (**calibrate**), and measure the drop of the metric on the third (**evaluate**). A selector is never
# graded on the prompts it was fitted on.

# %%
def split(label, seed):
    """The panel's prompts: an organism's start as its card says (BOS or not), other models' as their config."""
    bos = cards[label]["task"].get("prepend_bos") if cards[label] else None
    return induction_task(models[label], n_prompts, HALF, prompt_seed=seed, prepend_bos=bos)


splits = {label: {name: split(label, seed) for name, seed in SPLITS.items()} for label in models}
first = next(iter(models))
t = splits[first]["detect"]
print(f"{first}, one detection prompt:", " ".join(models[first].tokenizer.convert_ids_to_tokens(t.prompts[0])))
print(f"predictions scored per prompt: {sum(x >= 0 for x in t.targets[0])} (the second copy after its first token)")
for label, s in splits.items():
    seen = {name: set(map(tuple, task_.prompts)) for name, task_ in s.items()}
    shared = {f"{a} & {b}": len(seen[a] & seen[b]) for a, b in [("detect", "calibrate"), ("detect", "evaluate"),
                                                                ("calibrate", "evaluate")]}
    print(f"{label}: {n_prompts} prompts per split; prompts shared between splits: {shared}")
    assert not any(shared.values())

# %% [markdown]
# ## 2 · The primaries, by induction score, against the cards
#
# The panel takes as P every head whose induction score on the detection split is at least half the largest
# (`discover_primaries(..., method="role", role="induction")`: one forward pass, attention patterns only). The
# same forward pass gives each head's **previous-token score** (attention to the position just before), which
# finds the upstream half of the circuit. Below, both as head maps: the box is the detected P; `P` and `B` are
# the card's primaries and backups. The cards define their backups by their *direct* logit attribution rising
# when P is ablated — a label the panel itself never sees.

# %%
detections = {}
for label, m in models.items():
    eng = Engine(m, splits[label]["detect"], device=device, progress=False)
    detections[label] = discover_primaries(eng, method="role", role="induction", k=n_primaries, share=0.5,
                                           progress=False)


def score_map(ax, grid, title, label, detected):
    ax.imshow(grid, cmap="Blues", vmin=0, vmax=1)
    P, B = card_heads(label, "primaries"), card_heads(label, "backups")
    for (layer, head), v in np.ndenumerate(grid):
        name = f"L{layer}H{head}"
        role = "P" if name in P else "B" if name in B else ""
        ax.text(head, layer, f"{v:.2f}\n{role}", ha="center", va="center", fontsize=7,
                color="white" if v > 0.55 else "black")
        if name in detected:
            ax.add_patch(Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, ec="crimson", lw=2))
    ax.set_xticks(range(grid.shape[1]))
    ax.set_yticks(range(grid.shape[0]), [f"L{i}" for i in range(grid.shape[0])])
    ax.set_xlabel("head", fontsize=8)
    ax.set_title(title, fontsize=9)


fig, axes = plt.subplots(len(models), 2, figsize=(6.4, 2.3 * len(models) + 0.4), squeeze=False)
for row, (label, d) in zip(axes, detections.items()):
    detected = [str(u) for u in d.primaries]
    score_map(row[0], d.grid("induction"), f"{label}: induction score", label, detected)
    score_map(row[1], d.grid("previous_token"), f"{label}: previous-token score", label, detected)
fig.suptitle("box = detected P;  P / B = the card's primaries / backups", fontsize=9)
fig.tight_layout()
fig.savefig(os.path.join(output_dir, "induction_scores.png"), dpi=110)
plt.show()

# %%
rows = []
for label, d in detections.items():
    P, card_P = [str(u) for u in d.primaries], card_heads(label, "primaries")
    ind, prev = d.grid("induction").ravel(), d.grid("previous_token").ravel()
    H = d.n_heads
    outside = [i for i in np.argsort(-ind, kind="stable") if f"L{i // H}H{i % H}" not in P]
    rise = ""
    if cards[label] and "measured" in cards[label]:  # the card's DLA rise of each backup when P is ablated
        mm = cards[label]["measured"]
        rise = " ".join(f"L{b}H{h} {mm['ablated_dla'][b * H + h] - mm['clean_dla'][b * H + h]:+.2f}"
                        for b, h in cards[label]["backups"])
    rows.append({"model": label, "detected P": " ".join(P),
                 "= card primaries": sorted(P) == sorted(card_P) if card_P else "no card",
                 "min score in P": round(min(ind[[u.flat(H) for u in d.primaries]]), 2),
                 "next by induction score (+own)": " ".join(f"L{i // H}H{i % H} {ind[i]:.2f}" for i in outside[:2]),
                 "previous-token heads (>= 0.5)": " ".join(f"L{i // H}H{i % H}" for i in np.flatnonzero(prev >= 0.5)),
                 "card backups (DLA rise)": rise or "-"})
display(pd.DataFrame(rows).set_index("model"))

# %% [markdown]
# ## 3 · Estimate first, then run the panel
#
# `estimate_induction_transfer` reads each model's configuration (no weights are loaded for a name) and prints
# its memory and a lower bound on its time at this machine's measured matmul rate. On a big model, read it
# before you commit the GPU. Then `induction_transfer` runs, for every model: detection, one CoAx scan plus the
# gradient selectors on the calibration split, and on the evaluation split the drop of P alone, of P plus each
# selector's top k, of P plus k random heads (8 draws) and of P plus "+own" (the next k heads by induction
# score), for every k. Loaded models can be passed as a dict label → model, as here.

# %%
from coax_nb import estimate_induction_transfer, induction_transfer

est = estimate_induction_transfer(models, ks=KS, n_prompts=n_prompts, half_length=HALF, device=device)
t0 = time.perf_counter()
panel = induction_transfer(models, ks=KS, n_primaries=n_primaries, n_prompts=n_prompts, half_length=HALF,
                           device=device, estimate=False, progress=False)
wall = time.perf_counter() - t0
panel.to_json(os.path.join(output_dir, "induction_panel.json"))
display(pd.DataFrame([{"model": e["model"], "estimated GiB": round(e["peak_bytes"] / 2**30, 3),
                       "estimated forward passes": e["forward_passes"],
                       "counted forward passes": panel.model(e["model"])["forward_passes"],
                       "estimated s (lower bound)": round(e["seconds"], 2),
                       "measured s": panel.model(e["model"])["seconds"]}
                      for e in est if e["known"]]).set_index("model"))
print(f"the whole panel: {wall:.1f} s")
# the panel detected the same P, with the same scores, as section 2 did by hand
for label, d in detections.items():
    assert panel.model(label)["primaries"] == [str(u) for u in d.primaries]
    np.testing.assert_allclose(np.asarray(panel.model(label)["induction_score"], float), d.evidence["induction"],
                               atol=1e-6)
assert panel.meta["splits"] == SPLITS
print(panel.table())

# %% [markdown]
# ## 4 · Reading the panel
#
# One panel per model: the drop of the induction log-prob (nats) when P plus k heads are ablated, for every
# selector; "+own" dashed, random as its mean and min..max band, P alone dotted. The last two panels are the
# **family macro** (each family's members averaged first, then the families; bars average over k, marks show
# each family): the drop over size-matched random heads, and over "+own".

# %%
fig = panel.plot()
fig.savefig(os.path.join(output_dir, "induction_panel.png"), dpi=110)
plt.show()
display(pd.concat({"over random": panel.macro("over_random"), "over +own": panel.macro("over_own")}, axis=1).round(2))

# %% [markdown]
# **Against the controls, model by model.** Random heads match the number of heads removed; "+own" matches
# their role too: a selector that merely takes the next heads by induction score gets "+own"'s drop for free.
# Below, for every model and k, the selectors that beat *both* controls by more than the margin, those
# that tie "+own", and those below it (the sentences are computed from the result).

# %%
frame = panel.to_frame()
selectors = list(panel.meta["selectors"])


def at(label, k, selector, col="drop"):
    return frame[(frame["model"] == label) & (frame["k"] == k) & (frame["selector"] == selector)][col].iloc[0]


for label in panel.labels:
    for k in panel.model(label)["ks"]:
        beat = [s for s in selectors
                if at(label, k, s, "over_own") > MARGIN and at(label, k, s, "over_random") > MARGIN]
        tie = [s for s in selectors if abs(at(label, k, s, "over_own")) <= MARGIN]
        below = [s for s in selectors if at(label, k, s, "over_own") < -MARGIN]
        print(f"{label}, k={k}: +own drops {at(label, k, '+own'):.2f}, random {at(label, k, 'random'):.2f} nats. "
              f"Beat both by > {MARGIN}: {', '.join(beat) or 'none'}; tie +own: {', '.join(tie) or 'none'}; "
              f"below +own: {', '.join(below) or 'none'}.")
    print()

# %% [markdown]
# **What did they pick?** The drop does not know *why* the metric fell. A head upstream of the circuit (in a
# layer below every primary; on the organisms, the layer-0 heads that feed both the primaries and the backups)
# can break the backups' input, and then ablating it drops the metric as much as ablating a backup, or more. Each
# head a selector picked is tagged `B` (a card backup), `↑` (upstream of P) or `·` (neither); a selector's picks
# at a smaller k are the first heads of its top 4.

# %%
def layer_head(name):
    return tuple(map(int, name[1:].split("H")))  # "L0H3" -> (0, 3)


def tag(label, head):
    lowest = min(layer_head(p)[0] for p in panel.model(label)["primaries"])
    return "B" if head in card_heads(label, "backups") else "↑" if layer_head(head)[0] < lowest else "·"


def prev_score(label, head):
    return detections[label].grid("previous_token")[layer_head(head)]


for label in panel.labels:
    rec = panel.model(label)
    picks = {**rec["rankings"], "+own": rec["own_order"][:max(rec["ks"])]}
    table = pd.DataFrame({s: {"top picks": " ".join(h + tag(label, h) for h in picks[s]),
                              **{f"drop k={k}": round(at(label, k, s), 2) for k in rec["ks"]},
                              **{f"backups in top {k}": sum(tag(label, h) == "B" for h in picks[s][:k])
                                 for k in rec["ks"]}}
                          for s in selectors + ["+own"]}).T
    print(f"{label}: P = {' '.join(rec['primaries'])}, drop of P alone {rec['primary_drop']:.2f} nats")
    display(table)

# %% [markdown]
# The same on single heads: the drop of P plus **one** head, for every head outside P, on the evaluation split
# (one batch of forward passes per model). A selector's k = 1 row is one of these bars.

# %%
single = {}
fig, axes = plt.subplots(1, len(panel.labels), figsize=(3.6 * len(panel.labels), 3.0), squeeze=False)
for ax, label in zip(axes[0], panel.labels):
    rec = panel.model(label)
    eng = Engine(models[label], splits[label]["evaluate"], device=device, progress=False)
    P = eng.units(rec["primaries"])
    rest = [u for u in all_units(eng.n_layers, eng.n_heads) if u not in P]
    clean = float(eng.task.metric(eng.clean_logits()).mean())
    ablated = eng.logits([Variant.ablate(P + [u]) for u in rest])
    single[label] = {str(u): clean - float(eng.task.metric(lg).mean()) for u, lg in zip(rest, ablated)}
    names = list(single[label])
    colors = {"B": "tab:green", "↑": "tab:orange", "·": "0.6"}
    ax.bar(range(len(names)), list(single[label].values()), color=[colors[tag(label, h)] for h in names])
    ax.axhline(rec["primary_drop"], color="0.3", ls=":", lw=1)
    ax.set_xticks(range(len(names)), [h + tag(label, h) for h in names], rotation=60, fontsize=7)
    ax.set_title(f"{label}: drop of P + one head\n(B backup, ↑ upstream; dotted: P alone)", fontsize=9)
    ax.set_ylabel("nats", fontsize=8)
fig.tight_layout()
fig.savefig(os.path.join(output_dir, "single_head_drops.png"), dpi=110)
plt.show()

for label in panel.labels:
    s = single[label]
    top = max(s, key=s.get)
    backups = [h for h in s if tag(label, h) == "B"]
    up = [h for h in s if tag(label, h) == "↑"]
    best_b = max(backups, key=s.get) if backups else None
    beaten = [h for h in up if best_b and s[h] > s[best_b]]
    print(f"{label}: the largest drop of one head on top of P is {top} ({tag(label, top)}, previous-token score "
          f"{prev_score(label, top):.2f}) with {s[top]:.2f} nats"
          + (f"; the best card backup {best_b} gives {s[best_b]:.2f}; upstream heads above it: "
             f"{', '.join(f'{h} {s[h]:.2f}' for h in beaten) or 'none'}" if best_b else "; no card backups"))
# consistency: every selector's k=1 drop in the panel is that head's bar
for label in panel.labels:
    if 1 in panel.model(label)["ks"]:
        for s_ in selectors:
            head = panel.model(label)["rankings"][s_][0]
            assert abs(at(label, 1, s_) - single[label][head]) < 1e-4, (label, s_, head)

# %% [markdown]
# **So which selector finds the backups?** Two measures side by side, both as family macros averaged over k:
# the panel's label-free one (drop over "+own") and a labelled one it cannot see (the share of a selector's
# picks that are card backups). Rows whose picks include an upstream head are then compared with rows whose
# picks hold none.

# %%
rows = []
for r in panel.rows:
    if r["selector"] == "random":
        continue
    heads = r["heads"].split()
    rows.append({"model": r["model"], "family": r["family"], "selector": r["selector"], "k": r["k"],
                 "over_own": r["over_own"], "over_random": r["over_random"],
                 "backup share": np.mean([tag(r["model"], h) == "B" for h in heads]),
                 "has upstream": any(tag(r["model"], h) == "↑" for h in heads)})
picks = pd.DataFrame(rows)
labelled = picks[picks["model"].map(lambda m: cards[m] is not None)]
both = pd.DataFrame({
    "macro over +own": picks.groupby(["family", "selector"])["over_own"].mean().groupby("selector").mean(),
    "macro backup share": labelled.groupby(["family", "selector"])["backup share"].mean().groupby("selector").mean(),
}).loc[selectors + ["+own"]]
display(both.round(2))
by_drop = both["macro over +own"].drop("+own").sort_values(ascending=False)
by_share = both["macro backup share"].drop("+own").sort_values(ascending=False)
print("ranked by macro drop over +own:   ", ", ".join(f"{s} {v:+.2f}" for s, v in by_drop.items()))
print("ranked by share of backups picked:", ", ".join(f"{s} {v:.2f}" for s, v in by_share.items()))
sel_rows = picks[picks["selector"].isin(selectors)]
for flag, grp in sel_rows.groupby("has upstream"):
    print(f"selector rows {'with' if flag else 'without'} an upstream head: {len(grp)}, mean drop over random "
          f"{grp['over_random'].mean():+.2f}, over +own {grp['over_own'].mean():+.2f}, backup share "
          f"{grp['backup share'].mean():.2f}")

# %% [markdown]
# The drop is label-free, and it is all a user without a card has; but it rewards any head whose removal
# breaks the behaviour, upstream or backup. Two things can then mislead, and the cell below checks both on each
# model: a selector can beat both controls with picks that hold no backup, and "+own" can itself be the backups
# (when they have the next-highest induction scores), so a selector that finds them only ties it.

# %%
for label in panel.labels:
    rec = panel.model(label)
    if cards[label] is None:
        print(f"{label}: no card, so no backups to check; upstream heads among the picks are tagged above")
        continue
    own_b = [h for h in rec["own_order"][:max(rec["ks"])] if tag(label, h) == "B"]
    wins = sorted({(s, k) for s in selectors for k in rec["ks"]
                   if at(label, k, s, "over_own") > MARGIN and at(label, k, s, "over_random") > MARGIN},
                  key=lambda w: (w[1], selectors.index(w[0])))
    hollow = [f"{s} at k={k}" for s, k in wins if not any(tag(label, h) == "B" for h in rec["rankings"][s][:k])]
    found = {s: sum(tag(label, h) == "B" for h in rec["rankings"][s][:max(rec["ks"])]) for s in selectors}
    most = max(found.values())
    mean_over_own = frame[frame["model"] == label].groupby("selector")["over_own"].mean()
    print(f"{label}: {len(own_b)} of +own's top {max(rec['ks'])} are card backups ({' '.join(own_b) or 'none'}); "
          f"{len(hollow)} of the {len(wins)} wins over both controls pick no backup"
          + (f" ({', '.join(hollow)})" if hollow else "")
          + f"; most backups in a top {max(rec['ks'])}: {most} of {len(card_heads(label, 'backups'))}, by "
          + ", ".join(f"{s} (mean over +own {mean_over_own[s]:+.2f})" for s in selectors if found[s] == most))

# %% [markdown]
# ## 5 · On hub models (GPU, internet)
#
# The same panel runs on any Hugging Face causal LM the engine loads; nothing here downloads anything. With
# internet (or a Hugging Face cache) and a GPU, estimate first, then run with a checkpoint, so that an
# interrupted run resumes with the models already done (a rerun with other settings refuses the old file):
#
# ```python
# from coax_nb import estimate_induction_transfer, induction_transfer
#
# hub = ["EleutherAI/pythia-70m", "EleutherAI/pythia-160m", "EleutherAI/gpt-neo-125m", "gpt2",
#        "Qwen/Qwen2.5-0.5B", "meta-llama/Llama-3.2-1B"]
# estimate_induction_transfer(hub, ks=[1, 2, 4, 8], n_prompts=64, device="cuda")  # reads only the configs
# panel = induction_transfer(hub, ks=[1, 2, 4, 8], n_prompts=64, device="cuda",
#                            checkpoint="outputs/hub_panel.json")
# print(panel.table())
# panel.plot().savefig("outputs/hub_panel.png", dpi=120)
# panel.macro("over_own")           # families: GPT-NeoX, GPT-Neo, GPT-2, Qwen, Llama
# ```
#
# or from a shell: `coax-nb induction EleutherAI/pythia-70m gpt2 --ks 1 2 4 8 --prompts 64 --device cuda --out
# hub-panel` (`--estimate` prints the estimate and stops). Real models have many induction heads of graded
# strength: `n_primaries=N` (or a higher `share`) keeps P to the strongest; hub models have no card, so the
# backup columns above stay empty and the drop is read with the caveat of section 4. The model families come
# from the architecture class (`GPTNeoXForCausalLM` is GPT-NeoX); `families={label: name}` overrides them.
#
# ## Exercise
#
# 1. Which selector has the largest family macro over "+own" at k = 2? Compute it by hand from
#    `panel.to_frame()` (each family's members averaged first, then the families) and check it against
#    `panel.macro("over_own")`.
# 2. Is CoAx's (`comp`) pick at k = 1 a card backup on each organism, an upstream head, or neither — and is its
#    k = 1 drop the bar of that head in the single-head figure?

# %%
k_ex = 2 if all(2 in panel.model(label)["ks"] for label in panel.labels) else min(frame["k"])
sub = frame[(frame["k"] == k_ex) & frame["selector"].isin(selectors)]
by_hand = sub.groupby(["family", "selector"])["over_own"].mean().groupby("selector").mean()
best = by_hand.idxmax()
macro = panel.macro("over_own").loc[selectors, k_ex]
print(f"largest macro over +own at k={k_ex}: {best} ({by_hand[best]:+.3f} nats; panel.macro says "
      f"{macro.idxmax()} {macro.max():+.3f})")
assert best == macro.idxmax() and abs(by_hand[best] - macro.max()) < 1e-9
for label in panel.labels:
    pick = panel.model(label)["rankings"]["comp"][0]
    what = {"B": "a card backup", "↑": "an upstream head", "·": "neither a backup nor upstream"}[tag(label, pick)]
    print(f"{label}: comp's k=1 pick {pick} is {what}; drop {at(label, 1, 'comp'):.3f} = its bar "
          f"{single[label][pick]:.3f} nats")
    assert abs(at(label, 1, "comp") - single[label][pick]) < 1e-4
