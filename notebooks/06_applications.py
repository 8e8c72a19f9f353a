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
# that wakes up once its primary is gone is kept. The live chart below grows while the run goes (x: share
# of the heads pruned, in %; y: loss on held-out prompts, in nats). Every order starts from the intact
# model, so the repair-aware run, computed last, starts from the others' first point. The run saves a
# checkpoint after every step; running the notebook again resumes from it, computes nothing new, and the
# chart is drawn from the recorded steps.

# %%
from coax_nb import prune
from coax_nb.organisms import task_for
from coax_nb.widgets import Curves
live = Curves()
live.data = {**live.data, "title": "Repair-aware pruning (live)", "xlabel": "heads pruned (%)",
             "ylabel": "held-out loss (nats)"}
display(live)  # grows while the run goes; its saved picture is redrawn when the cell ends
intact = []    # every order's first point: the loss with nothing pruned

def on_step(order, x, loss):
    if x == 0:
        intact.append(loss)
    elif intact and order not in [s["name"] for s in live.data["series"]]:
        live.append(order, 0.0, intact[0])  # repair_aware reports from its first step on
    live.append(order, 100 * x, loss)

# one checkpoint per model: a checkpoint of another model is refused, not resumed
checkpoint = os.path.join(output_dir, "prune_" + "".join(c if c.isalnum() else "_" for c in model) + ".json")
p = prune(model_obj, task_for(model, 24, prompt_seed=1), task_for(model, 32, prompt_seed=2),
          orders=["single", "random", "repair_aware"], checkpoint=checkpoint, progress=False, on_step=on_step)
# draw every recorded point, x = 0 included; on a resumed run (checkpoint complete) on_step never fired
done = p.curves()
live.data = {**live.data, "series": [dict(s, x=[100 * x for x in s["x"]]) for s in done.series],
             "meta": done.meta}  # its caption now says the ablation and the prompts
assert all(s["x"][0] == 0 and len(s["x"]) == len(p.orders[s["name"]]["loss"]) for s in live.data["series"])

# %% [markdown]
# ## Exercise
#
# At k = |backups|, is the CoAx knockout at least as close to the oracle as the first-order top-up?

# %%
K = len(truth)
assert ko.row("CoAx", K)["distance_to_oracle"] <= ko.row("first-order", K)["distance_to_oracle"] + 1e-9
print("yes")
