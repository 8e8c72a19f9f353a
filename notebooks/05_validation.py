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
# # 05 · Causal validation
#
# **You will learn**
#
# - watch backups wake up as the primaries go, one by one
# - freeze the selected heads and see the repair vanish
# - compare everything with size-matched random heads
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
# A high CoAx rank is necessary, not sufficient. Four causal checks, each against random heads of the
# same size: graded **wake-up**, the **DLA hand-off**, **freezing** (the fraction of self-repair that disappears
# when the selected heads are held at their intact outputs) and **counterfactual patching**.

# %%
from coax_nb import coax_scan, wakeup, dla_handoff, freezing
selected = [u for u, _ in coax_scan(engine, primaries=primaries, progress=False).top(len(truth))]
w = wakeup(engine, None, primaries, selected, n_random=6)
print({k: round(v["margin"], 3) for k, v in w.margins.items()})
display(w.plot())

# %%
from coax_nb.widgets import Curves
cv = Curves(w.curves["dla"])
display(cv)
print(dla_handoff(engine, None, primaries, selected).table)

# %%
f = freezing(engine, None, primaries, selected, n_random=6)
print(f"freezing the selected heads removes {f.removed:.0%} of the repair; random sets: "
      f"{np.mean(f.random_removed):.0%} on average")
display(f.plot())

# %% [markdown]
# ## Exercise
#
# Does freezing CoAx's heads remove more of the repair than every random set of the same size? Fill in
# `beats_random`. (In `ioi_dormant` the selected heads remove nearly all of it; in `ioi_cofiring` and
# `ioi_dormant_wide` part of the repair runs through heads outside the selection, so less, but still more
# than any random set.)

# %%
beats_random = f.removed > max(f.random_removed)  # replace with True or False
# the check: the freezing result, and that the selected heads do remove some of the repair
assert beats_random == (f.removed > max(f.random_removed)), (f.removed, f.random_removed)
assert beats_random and f.removed >= 0.25, (f.removed, f.random_removed)
print(f"yes: {f.removed:.0%} against at most {max(f.random_removed):.0%} for random sets")
