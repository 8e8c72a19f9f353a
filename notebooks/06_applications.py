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
# # 06 · Applications: attribution, knockout, completion, pruning
#
# **You will learn**
#
# - repair an attribution corrupted by self-repair
# - knock a capability out with the fewest heads, and measure collateral damage
# - prune heads in a repair-aware order and watch the loss live
#
# Runs in about 60 seconds on a laptop CPU with the bundled organism.

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

# %%
from coax_nb import attribution_repair, knockout, coax_scan
from coax_nb.tasks import induction_task
ar = attribution_repair(engine, None, primaries, truth)
print(f"primaries alone: {ar.primaries_only:.2f}; with backups: {ar.with_backups:.2f} ({ar.factor:.1f}x)")
s = coax_scan(engine, primaries=primaries, progress=False)
ko = knockout(engine, None, primaries, {"CoAx": [u for u, _ in s.top(6)],
                                        "first-order": [u for u, _ in s.top(6, by="single")]},
              truth, unrelated=induction_task(model_obj, 12, 6, prompt_seed=3), n_random=4)
display(ko.plot())

# %% [markdown]
# **Repair-aware pruning** re-measures every remaining head given what is already removed, so a backup
# that wakes up once its primary is gone is kept. The live chart below grows while the run goes.

# %%
from coax_nb import prune
from coax_nb.organisms import task_for
from coax_nb.widgets import Curves
live = Curves()
display(live)  # grows while the run goes
p = prune(model_obj, task_for(model, 24, prompt_seed=1), task_for(model, 32, prompt_seed=2),
          orders=["repair_aware", "single", "random"], checkpoint=os.path.join(output_dir, "prune.json"),
          progress=False, on_step=lambda order, x, loss: live.append(order, x, loss))
display(p.plot())

# %% [markdown]
# ## Exercise
#
# At k = |backups|, is the CoAx knockout at least as close to the oracle as the first-order top-up?

# %%
K = len(truth)
assert ko.row("CoAx", K)["distance_to_oracle"] <= ko.row("first-order", K)["distance_to_oracle"] + 1e-9
print("yes")
