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
# # Lesson 1 · The Fisher energy of one ablation
#
# **You will learn**
#
# - what "the effect of removing a head" means in CoAx: a change of the output distribution
# - compute the centered Fisher energy of one ablation from logits, by hand
# - why the centering matters (a constant shift of every logit changes nothing)
#
# About 20 s (papermill, a 2-core CPU, the kernel's start included), with the bundled organism `ioi_dormant`
# (a 3-layer model trained on an IOI-like task, with known primary heads and dormant backups).

# %% tags=["parameters"]
model = "organism:ioi_dormant"  # an IOI organism (or a local HF directory / "gpt2" online)
n_prompts = 32
device = "cpu"

# %%
import warnings
warnings.filterwarnings("ignore")
import torch
from coax_nb import Variant, ablation_energy
from coax_nb.course import check, CheckFailed
from coax_nb.inputs import resolve

run = resolve(model, "default", n_prompts, None, prompt_seed=0, device=device, progress=False)
engine, primaries = run.engine, run.primaries
print(engine.describe())
u = primaries[0]
# logits at the output position of every prompt, as [N, V] float64 tensors
z0 = torch.cat(engine.clean_logits()).double()               # the intact model
zu = torch.cat(engine.logits([Variant.zero([u])])[0]).double()  # with head u zero-ablated
print(f"head u = {u}; logits of shape {tuple(z0.shape)}")

# %% [markdown]
# ## The definition
#
# Let `p0 = softmax(z0)` be the clean output distribution and `d = zu - z0` the change of the logits.
# The **centered Fisher feature** of the change is
#
#     f = sqrt(p0) * (d - <p0, d>)        with  <p0, d> = sum_k p0_k d_k
#
# and the **energy** is `||f||²` averaged over the prompts (rows). It is the second-order term of the KL
# divergence: `||f||² = dᵀ F d` with the softmax's Fisher information `F = diag(p0) - p0 p0ᵀ`.
#
# ## Exercise 1
#
# Compute `energy`, the centered Fisher energy of ablating `u`, from `z0` and `zu` (a Python float).

# %% tags=["exercise"]
energy = ...  # your code here

# %% tags=["solution"]
p0 = torch.softmax(z0, -1)
d = zu - z0
f = p0.sqrt() * (d - (p0 * d).sum(-1, keepdim=True))
energy = (f ** 2).sum(-1).mean().item()

# %% tags=["check"]
check("fisher_energy", energy, engine=engine, unit=u)

# %% [markdown]
# ## What the check catches
#
# The check computes the engine's own value (`ablation_energy`) and, when an answer is off, the values of
# the usual slips. Two of them, made on purpose (a shift of every logit by 1 changes no probability, so
# its centered energy is 0 — the uncentered one is not):

# %%
shift = torch.ones_like(z0)
p = torch.softmax(z0, -1)
centered = (p.sqrt() * (shift - (p * shift).sum(-1, keepdim=True))).pow(2).sum(-1).mean().item()
print(f"a constant shift: centered energy {centered:.2e}, uncentered {(p.sqrt() * shift).pow(2).sum(-1).mean():.2f}")
for wrong, what in [((p.sqrt() * (zu - z0)).pow(2).sum(-1).mean().item(), "no centering"),
                    (ablation_energy(engine, Variant.zero([u])) * n_prompts, "a sum over prompts")]:
    try:
        check("fisher_energy", wrong, engine=engine, unit=u)
    except CheckFailed as err:
        print(f"{what:>20}: {err.hint}")

# %% [markdown]
# Every head's energy is what `single_scan(engine)` reports as `single`: lesson 3 builds the CoAx score
# from these energies.
