# ---
# jupyter:
#   jupytext:
#     formats: ipynb,.nb.py:percent
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
# # CoAx report
#
# Executed by `coax-nb report`; every figure is a static image so the HTML reads offline.

# %% tags=["parameters"]
# Parameters
model = "organism:ioi_dormant"
task = "default"
primaries = None  # S as one string, e.g. "L9H9 L9H6"; None: the organism card's; "auto" or "auto:atp": discovered
n_prompts = 64
prompt_seed = 0
device = None
out_dir = "report"
top = 10
ablation = "zero"  # what removing a head means: zero, mean or resample
effect = "fisher"  # what an effect is measured in: fisher, kl or task
robustness_panel = True  # bootstrap intervals, data efficiency, feature modes, held-out templates (~9 more scans)

# %%
import os, warnings
warnings.filterwarnings("ignore")
from IPython.display import display, Markdown
from coax_nb.report import run_report
report = run_report(model, task, primaries, n_prompts, prompt_seed, device, out_dir, top, ablation=ablation,
                    effect=effect, robustness_panel=robustness_panel)
display(Markdown(report.summary_markdown()))

# %%
print(report.scores.table(top))

# %%
for fig in report.figures():
    display(fig)

# %%
report.write_json(os.path.join(out_dir, "report.json"))
print("artifact written:", os.path.join(out_dir, "report.json"))
