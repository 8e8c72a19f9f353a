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
# # Lesson 5 · Causal freezing: is the repair really the backups'?
#
# **You will learn**
#
# - self-repair as a number: how much of the primaries' effect the other heads win back
# - compute the freezing fraction — the share of that repair that disappears when the chosen heads are
#   frozen at their intact outputs, so they cannot respond
# - compare it with size-matched random heads
#
# About 30 s (papermill, a 2-core CPU, the kernel's start included), with the bundled organism `ioi_dormant`.

# %% tags=["parameters"]
model = "organism:ioi_dormant"
n_prompts = 32
device = "cpu"

# %%
import warnings
warnings.filterwarnings("ignore")
from coax_nb import Variant, coax_scan, freezing
from coax_nb.course import check
from coax_nb.inputs import resolve
from coax_nb.units import all_units

run = resolve(model, "default", n_prompts, None, prompt_seed=0, device=device, progress=False)
engine, S = run.engine, run.primaries
X = [u for u, _ in coax_scan(engine, primaries=S, progress=False).top(3)]  # CoAx's top heads outside S
others = [u for u in all_units(engine.n_layers, engine.n_heads) if u not in S]
print(engine.describe())
print("primaries S:", [str(u) for u in S], "| X, the top 3 by CoAx:", [str(u) for u in X])

def m(variant):
    """The behaviour metric (mean logit difference) of a run."""
    return engine.task.metric(engine.logits([variant])[0]).mean().item()

# %% [markdown]
# `Variant.freeze(heads)` keeps those heads at their clean (intact-model) outputs whatever happens
# upstream; `a | b` combines two variants. Four runs tell the story:
#
# | run | variant | metric |
# |---|---|---|
# | primaries ablated | `Variant.zero(S)` | `m_S` |
# | ... and every other head frozen (nobody can respond) | `Variant.zero(S) \| Variant.freeze(others)` | `m_none` |
# | ... and only X frozen | `Variant.zero(S) \| Variant.freeze(X)` | `m_X` |
#
# The **self-repair** is `R = m_S - m_none` (what the responding heads win back) and the share of it that
# freezing X takes away is `removed = (m_S - m_X) / R`: 1 when X does all the repairing, 0 when X plays no part.
#
# ## Exercise 5
#
# Compute `removed` with the function `m` above.

# %% tags=["exercise"]
removed = ...  # your code here

# %% tags=["solution"]
m_S = m(Variant.zero(S))
m_none = m(Variant.zero(S) | Variant.freeze(others))
m_X = m(Variant.zero(S) | Variant.freeze(X))
removed = (m_S - m_X) / (m_S - m_none)

# %% tags=["check"]
check("freezing_fraction", removed, engine=engine, primaries=S, selected=X)

# %% [markdown]
# ## Against random heads
#
# `freezing` does the same and adds size-matched random sets (outside S and X): if CoAx picked the
# repairing heads, random ones remove far less.

# %%
result = freezing(engine, None, S, X, n_random=10)
print(f"CoAx's top 3 remove {result.removed:.0%} of the repair; random sets of 3: "
      f"{sum(result.random_removed) / len(result.random_removed):.0%} on average "
      f"(largest {max(result.random_removed):.0%})")
