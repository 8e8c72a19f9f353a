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
# # Lesson 4 · One cell of the synergy matrix
#
# **You will learn**
#
# - the interaction of two ablations: what removing u and v together does beyond each alone
# - compute one normalised synergy cell `S_uv` from Fisher features
# - read the synergy grid: the bright primary x backup block
#
# About 20 s (papermill, a 2-core CPU, the kernel's start included), with the bundled organism `ioi_dormant`.

# %% tags=["parameters"]
model = "organism:ioi_dormant"
n_prompts = 32
device = "cpu"

# %%
import warnings
warnings.filterwarnings("ignore")
import torch
from IPython.display import display
from coax_nb import Variant, synergy
from coax_nb.course import check
from coax_nb.inputs import resolve

run = resolve(model, "default", n_prompts, None, prompt_seed=0, device=device, progress=False)
engine, S, truth = run.engine, run.primaries, run.truth
u = S[0]
v = truth[0] if truth else S[1]
print(engine.describe())
print("u =", u, "(a primary) | v =", v, "(a backup)" if truth else "")

z0 = torch.cat(engine.clean_logits()).double()
p0 = torch.softmax(z0, -1)

def feature(variant):
    """The centered Fisher feature f(z0 -> z_variant) of lesson 1, one row per prompt: [N, V]."""
    d = torch.cat(engine.logits([variant])[0]).double() - z0
    return p0.sqrt() * (d - (p0 * d).sum(-1, keepdim=True))

f_u, f_v, f_uv = feature(Variant.zero([u])), feature(Variant.zero([v])), feature(Variant.zero([u, v]))

# %% [markdown]
# If the two ablations did not interact, the joint change would be the sum of the two: `f_uv = f_u + f_v`.
# The **interaction** is what is left, `I_uv = f_uv - f_u - f_v`, and the **synergy** is its energy
# `mean ||I_uv||²`, normalised by the geometric mean of the single energies `sqrt(single(u) single(v))`
# so that cells of strong and weak heads compare.
#
# ## Exercise 4
#
# Compute `s_uv`, the normalised synergy of `u` and `v` (a float), from `f_u`, `f_v` and `f_uv`.

# %% tags=["exercise"]
s_uv = ...  # your code here

# %% tags=["solution"]
I = f_uv - f_u - f_v
energy = lambda f: (f ** 2).sum(-1).mean().item()
s_uv = energy(I) / (energy(f_u) * energy(f_v)) ** 0.5

# %% tags=["check"]
check("synergy_cell", s_uv, engine=engine, u=u, v=v)

# %% [markdown]
# ## The grid
#
# `synergy(engine, heads)` computes every cell of the matrix (O(M²) forwards). Primaries and backups
# interact strongly — a backup only acts once its primary is gone — which shows as bright cells in the
# primaries x backups block. Hover a cell for its value; the grid groups the heads by role.

# %%
from coax_nb.widgets import SynergyGrid
heads = list(S) + [x for x in truth if x not in S]
pairs = synergy(engine, heads, progress=False)
roles = {**{str(x): "primaries" for x in S}, **{str(x): "backups" for x in truth}}
grid = SynergyGrid(pairs, name="normalized", groups=roles)
display(grid)
