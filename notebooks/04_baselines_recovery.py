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
# # 04 · Baselines and backup recovery
#
# **You will learn**
#
# - run every first-order scorer (AtP, AtP* GradDrop, EAP-IG, conditional AtP) and CoAx
# - compare them at recovering known backups in one table
# - see what each costs in forward and backward passes
#
# Runs in about 20 seconds (papermill, 2-core CPU) with the bundled organism.

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
# The paper's central comparison. Each selector ranks the heads outside S; ROC-AUC, average precision and
# precision@k say how well it puts the true backups first. Repeating over prompt sets gives mean ± std.

# %%
from coax_nb import recovery
from coax_nb.organisms import task_for
r = recovery(model_obj, lambda s: task_for(model, n_prompts, prompt_seed=s), primaries=primaries, truth=truth,
             prompt_seeds=[0, 1], ig_steps=4, progress=False)
print(r.table())
r.to_json(os.path.join(output_dir, "recovery.json"))
display(r.plot())

# %%
from coax_nb.widgets import RankingTable
rt = RankingTable(r.scores[0], sort_by="comp", truth=truth)
display(rt)

# %% [markdown]
# ## Exercise
#
# Does CoAx beat single ablation by at least 0.3 ROC-AUC here?

# %%
gap = r.auc("comp") - r.auc("single")
assert gap >= 0.3, gap
print(f"CoAx - single = {gap:.2f}")
