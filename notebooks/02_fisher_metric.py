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
# # 02 · The CoAx score and the Fisher metric
#
# **You will learn**
#
# - compute one head's ablation energy by hand from logits
# - see that it equals what the scan reports
# - know the options: fixed top-r support, conditional geometry
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
# For one prompt, let `p` be the clean output distribution and `z0`, `z` the clean and ablated logits.
# The centred Fisher feature is `f = sqrt(p) * (d - <p, d>)` with `d = z - z0`, and the **energy** is `|f|²`
# averaged over prompts — a second-order approximation of the KL divergence the ablation causes.

# %%
import torch
from coax_nb import Variant, coax_scan
u = truth[0]
z0 = torch.stack(engine.clean_logits()).double()
z = torch.stack(engine.logits([Variant.zero([u])])[0]).double()
p = torch.softmax(z0, -1)
d = z - z0
f = p.sqrt() * (d - (p * d).sum(-1, keepdim=True))
by_hand = (f ** 2).sum(-1).mean().item()
scores = coax_scan(engine, primaries=primaries, progress=False)
print(f"single-ablation energy of {u}: by hand {by_hand:.6e}, scan {scores.value('single', u):.6e}")

# %% [markdown]
# Options of `coax_scan`: `top_r=50` measures on the clean top-50 tokens only (big vocabularies);
# `geometry="conditional"` measures conditional energies in the S-ablated model's own metric; `feature_mode`
# switches to plain L2 distances.

# %%
fast = coax_scan(engine, primaries=primaries, top_r=10, progress=False)
print("top 3 with top-10 support:", [str(x) for x, _ in fast.top(3)])

# %% [markdown]
# ## Exercise
#
# Check the hand computation against the scan to a relative 1e-4.

# %%
assert abs(by_hand - scores.value("single", u)) <= 1e-4 * max(by_hand, 1e-12)
print("matches")
