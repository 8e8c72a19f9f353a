# ---
# jupyter:
#   jupytext:
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
# # Lesson 2 · Picking the primaries
#
# **You will learn**
#
# - why a CoAx scan needs a primary set S, and where S comes from
# - rank heads by their direct effect on the answer (direct logit attribution, DLA)
# - why single-ablation energy is the wrong tool for picking S: self-repair hides the primaries
#
# About 20 s (papermill, a 2-core CPU, the kernel's start included), with the bundled organism `ioi_dormant`.

# %% tags=["parameters"]
model = "organism:ioi_dormant"
n_prompts = 64  # DLA of the small layer-0 heads is noisy on fewer prompts
device = "cpu"

# %%
import warnings
warnings.filterwarnings("ignore")
import pandas as pd
from IPython.display import display
from coax_nb import Unit, head_dla, single_scan
from coax_nb.course import check
from coax_nb.inputs import resolve

run = resolve(model, "default", n_prompts, None, prompt_seed=0, device=device, progress=False)
engine = run.engine
print(engine.describe())

# %% [markdown]
# The **primaries** are the heads that do the task on the intact model. On IOI the behaviour metric is the
# logit difference `logit(IO) - logit(S)` at the last position, and a head's *direct logit attribution*
# is how much of that difference its output writes directly (through the final norm and the unembedding).
# The organisms' cards use the criterion of Wang et al. for GPT-2: primaries are the heads whose clean DLA
# is at least 25% of the largest head's. Here are every head's DLA and single-ablation energy:

# %%
dla = head_dla(engine)  # [n_layers * n_heads], mean over prompts
single = single_scan(engine, progress=False)["single"]
H = engine.n_heads
table = pd.DataFrame({"head": [str(Unit(i // H, i % H)) for i in range(len(dla))], "DLA": dla,
                      "share of largest": dla / dla.max(), "single energy": single}).set_index("head")
display(table.sort_values("DLA", ascending=False).round(4))

# %% [markdown]
# ## Exercise 2
#
# Set `S` to the list of primary heads by the 25% criterion, as names like `"L1H0"`.
# (Compare the two columns: the heads with the largest single-ablation energy are not the same heads —
# why not?)

# %% tags=["exercise"]
S = []  # your answer, e.g. ["L0H1", "L2H3"]

# %% tags=["solution"]
S = list(table.index[table["share of largest"] >= 0.25])

# %% tags=["check"]
check("primaries", S, engine=engine)

# %% [markdown]
# ## Why not single ablation?
#
# Removing a primary is *repaired*: dormant backups take over, so the primary's single-ablation energy is
# smaller than its direct effect suggests — and the backups, silent on the intact model, have almost no
# direct effect at all. The card's primaries and the top heads by single energy:

# %%
from coax_nb.organisms import card, organism_name
name = organism_name(model)
if name:
    print("card's primaries:", [str(Unit(*u)) for u in card(name)["primaries"]])
print("top by single energy:", list(table.sort_values("single energy", ascending=False).index[:3]))
print("top by DLA:", list(table.sort_values("DLA", ascending=False).index[:3]))
