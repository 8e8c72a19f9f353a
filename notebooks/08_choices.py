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
# # 08 · The analyst's choices: ablation type, effect metric, MLP units
#
# **You will learn**
#
# - what "removing a head" can mean: zero (the paper's), mean, or resample from a paired corrupted prompt
# - what an effect can be measured in: the Fisher energy (label-free), KL, or the task's behaviour metric
# - how each choice changes which heads CoAx recovers as backups — side by side, with every selector's ROC-AUC
# - MLP layers as units, and the diagnostic that says when MLPs carry the behaviour
#
# Runs in about 25 seconds (papermill, 2-core CPU) with the bundled organism.

# %% tags=["parameters"]
# Parameters (papermill overrides these; see notebooks/README.md)
model = "organism:ioi_dormant"  # an organism, a local HF directory, or "gpt2" when online
task = "default"                # the organism's own task, "ioi" or "induction"
n_prompts = 32
primaries = None                # the primary heads S as one string, e.g. "L9H9 L9H6"; None takes the organism card's
device = "cpu"
output_dir = "outputs"

# %%
import os, warnings
warnings.filterwarnings("ignore")
import numpy as np
import pandas as pd
import matplotlib
import matplotlib.pyplot as plt
from IPython.display import display
from coax_nb import coax_scan, evaluate
from coax_nb.inputs import resolve

run = resolve(model, task, n_prompts, primaries, prompt_seed=0, device=device)
engine, primaries, truth = run.engine, run.primaries, run.truth
os.makedirs(output_dir, exist_ok=True)
print(engine.describe())
print("primaries S:", [str(u) for u in primaries], "| ground-truth backups:", [str(u) for u in truth])
print("paired corrupted prompt (resample's source):", run.task.info.get("corrupted"))

# %% [markdown]
# ## Zero, mean, resample × Fisher, KL, task
#
# One keyword each: `coax_scan(engine, primaries=S, ablation=..., effect=...)`. The table gives, for each
# pair of choices, how well CoAx (`comp`), the amplification ratio and plain single ablation recover the
# ground-truth backups (ROC-AUC; 0.5 is chance).

# %%
rows = []
for ablation in ("zero", "mean", "resample"):
    for effect in ("fisher", "kl", "task"):
        scores = coax_scan(engine, primaries=primaries, ablation=ablation, effect=effect, progress=False)
        row = {"ablation": ablation, "effect": effect}
        for by in ("comp", "ratio", "single"):
            row[by] = evaluate(scores, truth, by=by)["roc_auc"] if truth else float("nan")
        row["MLP share"] = scores.meta.get("mlp_share")
        rows.append(row)
table = pd.DataFrame(rows).set_index(["ablation", "effect"])
display(table.style.format("{:.2f}"))

# %%
fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), constrained_layout=True)
for ax, by in zip(axes, ("comp", "single")):
    grid = table[by].unstack("effect").loc[["zero", "mean", "resample"], ["fisher", "kl", "task"]]
    im = ax.imshow(grid.values, vmin=0, vmax=1, cmap="viridis")
    for (i, j), v in np.ndenumerate(grid.values):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v < 0.6 else "black", fontsize=9)
    ax.set_xticks(range(3), grid.columns)
    ax.set_yticks(range(3), grid.index)
    ax.set_title({"comp": "CoAx (comp)", "single": "single ablation"}[by] + ": backup ROC-AUC", fontsize=9)
fig.colorbar(im, ax=axes, shrink=0.8)
fig.savefig(os.path.join(output_dir, "choices.png"), dpi=120)
plt.show()

# %% [markdown]
# **Reading it.** The conditional scores (comp, ratio) recover the backups under every choice far better
# than single ablation, whose blindness to dormant heads does not depend on how a head is removed. The
# choices do move the numbers, and not always the same way on every organism: see `docs/method.md` for when
# each fits and `docs/choices.md` for the table on all four organisms.

# %% [markdown]
# ## MLP layers as units
#
# A layer's MLP is a unit too: `L1MLP` (or `M1`). It can be a primary, part of a variant, or a cell of the
# synergy grid; groups of units can be scored as one. Every full scan also reports how much of the
# first-order effect the MLPs carry.

# %%
scores = coax_scan(engine, primaries=primaries, progress=False)
print("MLP share of the first-order effect:", f"{scores.meta['mlp_share']:.1%}")
print({k: f"{v:.3g}" for k, v in scores.meta["mlp_single"].items()})

from coax_nb import synergy
modules = {"primaries": [str(u) for u in primaries], "backups": [str(u) for u in truth],
           f"L{engine.n_layers - 1}MLP": [f"M{engine.n_layers - 1}"]}
grid = synergy(engine, modules, progress=False)
print(grid.to_frame("normalized").round(3))

# %% [markdown]
# ## Exercise
#
# Compute by hand the *task* effect of mean-ablating the first primary: the drop of the mean logit
# difference when that head outputs its mean over the clean run. Compare with the scan's `single` score.

# %%
from coax_nb import Variant
head = primaries[0]
clean = run.task.metric(engine.clean_logits()).mean()
ablated = run.task.metric(engine.logits([Variant.mean([head])])[0]).mean()
by_hand = float(clean - ablated)
scan = coax_scan(engine, primaries=primaries, ablation="mean", effect="task", progress=False)
print(f"{head}: by hand {by_hand:.5f}, scan {scan.value('single', head):.5f}")
assert abs(by_hand - scan.value("single", head)) < 1e-5 * max(1.0, abs(by_hand))
