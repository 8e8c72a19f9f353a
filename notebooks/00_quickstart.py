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
# # 00 · Quickstart: one CoAx scan
#
# **You will learn**
#
# - load a model and its task in two lines
# - run a CoAx scan given a primary set S and read the ranking
# - look at the scores as an interactive head map, and as a static picture
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
# A **CoAx scan** ablates every head twice: alone (its *single-ablation* energy) and together with the
# primary set S (its *conditional* energy). Both are measured in the Fisher metric of the output distribution —
# how far the model's predictions move — with forward passes only. **CoAx = conditional − single**: how much a
# head's effect *grows* once S is gone. Backups that are silent on the intact model score near 0 alone and high
# with S removed.

# %%
from coax_nb import coax_scan
scores = coax_scan(engine, primaries=primaries, progress=False)
print(scores.table(6))

# %% tags=["nbval-check-output"]
print("top 3 by CoAx:", [str(u) for u, _ in scores.top(3)])

# %% [markdown]
# The **head map** below is interactive in Jupyter: hover a cell for every score, switch the score in the
# dropdown, click a head to add or remove it from S — the kernel rescans and the map updates. Where no
# kernel runs (GitHub, nbconvert HTML, a report) the same output shows the map's static picture instead.

# %%
from coax_nb.widgets import HeadMap
hm = HeadMap.live(engine, primaries=primaries, truth=truth)
display(hm)  # its bundle carries the static picture too: shown where no kernel runs, never twice

# %% [markdown]
# ## Exercise
#
# Which head has the largest CoAx score? Is it one of the ground-truth backups? Fill in `answer` and
# `is_backup`. (In `ioi_dormant` it is; in `ioi_cofiring` a layer-0 head comes first:
# its card notes that layer-0 heads rank high there.)

# %%
answer = scores.top(1)[0][0]  # replace with your choice, e.g. "L2H1"
is_backup = answer in truth   # replace with True or False
# the check: the largest CoAx score outside S, and the backups on the organism's card
from coax_nb.units import parse_unit
u = parse_unit(answer, engine.n_layers, engine.n_heads)
comp = np.where(scores.is_primary(), np.nan, scores["comp"])
assert scores.units[int(np.nanargmax(comp))] == u, "look at the table above"
assert is_backup == (u in truth), f"{u} is {'' if u in truth else 'not '}on the card's list of backups"
print("correct:", u, "is" if is_backup else "is not", "a backup")
