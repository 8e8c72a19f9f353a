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
# # 07 · Your own model and task
#
# **You will learn**
#
# - load a local Hugging Face checkpoint (and `gpt2` when you are online)
# - define a task from your own prompts
# - run the same scan on it
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
# Any GPT-2-style Hugging Face directory loads through the same code as the organisms. Here we build a
# small random model in a temporary folder; with internet, `load_model("gpt2")` works the same way (and
# `ioi_task(model, 96)` builds IOI prompts for its tokenizer).

# %%
import tempfile
from coax_nb.toy import build_toy_model
path = build_toy_model(tempfile.mkdtemp() + "/mymodel", n_layers=2, n_heads=4, d_model=32)
mine = load_model(path, device=device)
ONLINE = False  # set True to try the real GPT-2
if ONLINE:
    gpt2 = load_model("gpt2")

# %% [markdown]
# A task is prompts plus what the metric reads. `custom_task` takes texts, answers and distractors (single tokens):

# %%
from coax_nb import custom_task, coax_scan
my_task = custom_task(mine, ["When Mary and John went to the store , John gave a drink to",
                             "When Tom and Anne went to the garden , Anne gave a ring to"],
                      answers=["Mary", "Tom"], distractors=["John", "Anne"])
my_scores = coax_scan(mine, my_task, primaries=["L1H0"], progress=False)
print(my_scores.table(3))

# %% [markdown]
# ## Exercise
#
# How many heads does your model have? Check the scan scored every one.

# %%
assert len(my_scores["comp"]) == 2 * 4
print("all", len(my_scores["comp"]), "heads scored")
