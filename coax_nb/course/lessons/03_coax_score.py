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
# # Lesson 3 · The CoAx score of one head
#
# **You will learn**
#
# - the conditional effect of a head once the primaries S are removed
# - compute the CoAx score `comp(u | S) = conditional(u | S) - single(u)` from three ablation runs
# - read the whole scan on a head map, and see the backups stand out
#
# About 20 s (papermill, a 2-core CPU, the kernel's start included), with the bundled organism `ioi_dormant`.

# %% tags=["parameters"]
model = "organism:ioi_dormant"
n_prompts = 32
device = "cpu"

# %%
import warnings
warnings.filterwarnings("ignore")
from IPython.display import display
from coax_nb import Variant, ablation_energy, coax_scan
from coax_nb.course import check
from coax_nb.inputs import resolve

run = resolve(model, "default", n_prompts, None, prompt_seed=0, device=device, progress=False)
engine, S, truth = run.engine, run.primaries, run.truth
u = truth[0] if truth else next(x for x in engine.units(range(engine.n_layers * engine.n_heads)) if x not in S)
print(engine.describe())
print("primaries S:", [str(x) for x in S], "| the head u:", u)

# %% [markdown]
# `ablation_energy(engine, variant, reference=...)` is the Fisher energy of lesson 1 between two runs:
# `E(z_reference -> z_variant)`; the reference is the clean run unless you say otherwise.
#
# - **single(u)** = `E(z0 -> z_u)`: u's effect on the intact model;
# - **conditional(u | S)** = `E(z_S -> z_{S+u})`: u's effect once S is gone (both runs have S ablated),
#   measured like every energy in the clean metric `p0` (the change `d = z_{S+u} - z_S` weighted by the intact
#   model's distribution; `ablation_energy` does that for you);
# - **comp(u | S)** = conditional - single: positive for a head that matters *more* once S is removed — a backup.
#
# ## Exercise 3
#
# Compute `comp` for the head `u` with the primaries `S`. `Variant.zero(heads)` is the run with
# those heads zero-ablated, and `Variant.zero(S + [u])` ablates S and u together.

# %% tags=["exercise"]
comp = ...  # your code here

# %% tags=["solution"]
single = ablation_energy(engine, Variant.zero([u]))
conditional = ablation_energy(engine, Variant.zero(S + [u]), reference=Variant.zero(S))
comp = conditional - single

# %% tags=["check"]
check("coax_score", comp, engine=engine, unit=u, primaries=S)

# %% [markdown]
# ## Every head at once
#
# `coax_scan` computes the same three energies for every head in one batched pass (2 + 2·U forward-pass
# equivalents). In Jupyter the head map is live: hover for every score, click a head to add it to S or
# drop it, and the kernel rescans. On this page it runs without a kernel: hover and selection work.

# %%
from coax_nb.widgets import HeadMap
scores = coax_scan(engine, primaries=S, progress=False)
print(scores.table(5))
display(HeadMap.live(engine, primaries=S, truth=truth))
