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
# # 01 · Self-repair and the blind spot of single ablation
#
# **You will learn**
#
# - see self-repair happen: remove the primaries and the behaviour survives
# - see why single ablation misses the backups
# - read the blind-spot scatter: first-order percentile against CoAx percentile
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
# The behaviour metric of IOI is the **logit difference** between the right name (the indirect object)
# and the repeated one. Remove the primaries and most of it survives, because dormant backups take over; remove
# the backups too and it collapses.

# %%
from coax_nb import Variant
ld = lambda heads: the_task.metric(engine.logits([Variant.zero(heads)])[0]).mean().item()
clean, prim, both = ld([]), ld(primaries), ld(primaries + truth)
print(f"logit difference: clean {clean:.2f}, primaries ablated {prim:.2f}, primaries + backups ablated {both:.2f}")
print(f"share of the joint effect that self-repair hides: {1 - (clean - prim) / (clean - both):.0%}")

# %%
from coax_nb import coax_scan
scores = coax_scan(engine, primaries=primaries, progress=False)
for u in truth:
    print(f"backup {u}: single-ablation energy {scores.value('single', u):.2e}, CoAx {scores.value('comp', u):.3f}")

# %% [markdown]
# The **blind-spot scatter** puts every head outside S at its single-ablation percentile (x) and its CoAx
# percentile (y). Backups sit top-left: invisible to the first-order score, first for CoAx.

# %%
from coax_nb.widgets import BlindSpot
bs = BlindSpot(scores, x="single", y="comp", truth=truth)
display(bs)  # its bundle carries the static picture too: shown where no kernel runs, never twice

# %% [markdown]
# ## Exercise
#
# Compute the repair fraction `1 - (clean - prim) / (clean - both)` yourself and check it is above one half.

# %%
repair = 1 - (clean - prim) / (clean - both)
assert repair > 0.5, repair
print(f"repair fraction {repair:.2f}")
