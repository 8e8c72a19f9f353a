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
# Runs in about 30 seconds on a laptop CPU with the bundled organism.

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
# **Synergy** of heads a and b: `E(a,b) - E(a) - E(b)` — positive when removing both hurts more than the
# two removals alone (redundancy, as between a primary and its backup). The normalized form divides by
# `E(a,b)`.

# %%
from coax_nb import synergy
heads = primaries + truth
pairs = synergy(engine, heads, progress=False)
print(pairs.top_pairs(3, by="normalized"))

# %%
from coax_nb.widgets import SynergyGrid
groups = {str(u): "primary" for u in primaries} | {str(u): "backup" for u in truth}
sg = SynergyGrid(pairs, name="normalized", groups=groups)
display(sg)
display(sg.figure())

# %% [markdown]
# ## Exercise
#
# Is the most synergistic pair a primary together with a backup?

# %%
a, b, _ = pairs.top_pairs(1, by="normalized")[0]
assert {a in primaries, b in primaries} == {True, False}, (a, b)
print("yes:", a, b)
