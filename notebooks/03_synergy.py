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
# # 03 · Pairwise synergy
#
# **You will learn**
#
# - measure how two heads' ablations interact
# - read a synergy grid with group blocks
# - find the primary-backup pairs
#
# Runs in about 15 seconds (papermill, 2-core CPU) with the bundled organism.

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
import matplotlib
import matplotlib.pyplot as plt
from IPython.display import display
from coax_nb import load_model, Engine
from coax_nb.inputs import resolve

run = resolve(model, task, n_prompts, primaries, prompt_seed=0, device=device)
model_obj, the_task, engine, primaries, truth = run.model, run.task, run.engine, run.primaries, run.truth
os.makedirs(output_dir, exist_ok=True)
print(engine.describe())
print(f"primaries S ({run.primaries_source}):", [str(u) for u in primaries], "| ground-truth backups:", [str(u) for u in truth])

# %% [markdown]
# **Synergy** of heads a and b compares *output changes*, not energies. With `f(·)` the centred Fisher
# feature of an ablation (notebook 02: `f = sqrt(p) * (d - <p, d>)`, `d` the change of the logits, `p` the
# clean distribution), the interaction is the vector `I_ab = f(a,b) - f(a) - f(b)`: what removing both does
# beyond the sum of removing each alone. Then
#
# - `raw = mean |I_ab|²` (averaged over prompts) — the energy of the interaction, `>= 0`;
# - `normalized = raw / sqrt(E(a) E(b))`, with `E(a) = mean |f(a)|²` the single-ablation energy (the
#   product is floored at `1e-12`, so two heads that do nothing alone do not divide by zero).
#
# Both are `>= 0` and have **no upper bound**: a primary and its backup each change the output little on
# their own (small `E(a)`, `E(b)`) but a lot together, so `normalized` can be well above 1 (3.6 for the
# top pair of `ioi_dormant`; about 6e5 in the hand-wired organism, whose primaries change nothing alone).
# A value near 0 means the two heads act independently.

# %%
from coax_nb import synergy
heads = primaries + truth
pairs = synergy(engine, heads, progress=False)
print(pairs.top_pairs(3, by="normalized"))

# %% [markdown]
# The same number by hand for the top pair, from the logits of the three ablations:

# %%
import torch
from coax_nb import Variant
a, b, top = pairs.top_pairs(1, by="normalized")[0]
z0 = torch.stack(engine.clean_logits()).double()
p = torch.softmax(z0, -1)
def feature(z):
    d = torch.stack(z).double() - z0
    return p.sqrt() * (d - (p * d).sum(-1, keepdim=True))
f_a, f_b, f_ab = (feature(z) for z in engine.logits([Variant.zero([a]), Variant.zero([b]), Variant.zero([a, b])]))
raw = ((f_ab - f_a - f_b) ** 2).sum(-1).mean().item()
E_a, E_b = ((f ** 2).sum(-1).mean().item() for f in (f_a, f_b))
normalized = raw / max(E_a * E_b, 1e-12) ** 0.5  # synergy() floors the product at 1e-12 (eps)
print(f"{a}-{b}: raw {raw:.4e}, E(a) {E_a:.4e}, E(b) {E_b:.4e}, normalized by hand {normalized:.4f}, "
      f"synergy() {top:.4f}")
assert abs(normalized - top) <= 1e-4 * max(abs(top), 1e-12), (normalized, top)

# %%
from coax_nb.widgets import SynergyGrid
groups = {str(u): "primary" for u in primaries} | {str(u): "backup" for u in truth}
sg = SynergyGrid(pairs, name="normalized", groups=groups)
display(sg)  # its bundle carries the static picture too: shown where no kernel runs, never twice

# %% [markdown]
# ## Exercise
#
# Which pair is the most synergistic, and is it a primary together with a backup? Fill in `pair` and
# `primary_with_backup`. (In `ioi_dormant` it is; in `ioi_dormant_wide` two of the eight redundant primaries
# can top the grid.)

# %%
pair = pairs.top_pairs(1, by="normalized")[0][:2]  # replace with your choice, e.g. ("L1H1", "L2H1")
primary_with_backup = (pair[0] in primaries) != (pair[1] in primaries)  # replace with True or False
# the check: the largest entry of the matrix, and the card's primaries and backups
from coax_nb.units import parse_unit
mine = [parse_unit(u, engine.n_layers, engine.n_heads) for u in pair]
i, j = np.unravel_index(np.nanargmax(pairs["normalized"]), pairs["normalized"].shape)
assert set(mine) == {pairs.units[i], pairs.units[j]}, "look at the grid above"
kinds = ["primary" if u in primaries else "backup" for u in mine]
assert primary_with_backup == (sorted(kinds) == ["backup", "primary"]), kinds
print("correct:", " and ".join(str(u) for u in pair), "are", " and ".join(kinds))
