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

# %% [markdown] tags=["report-hidden"]
# # CoAx report
#
# The notebook `coax-nb report` runs (papermill). `report.html` shows its outputs only, as a
# document: the title block and finding, the ranking, then each figure once with its caption;
# this code, the parameters and papermill's injected cell stay here. Figures are inline PNG,
# so the HTML reads offline.

# %% tags=["parameters"]
# Parameters
model = "organism:ioi_dormant"
task = "default"
primaries = None  # S as one string, e.g. "L9H9 L9H6"; None: the organism card's; "auto" or "auto:atp": discovered
n_prompts = 64
prompt_seed = None  # the prompts' seed (None: 0); or prompt_seeds below, not both
device = None
out_dir = "report"
top = 10
ablation = "zero"  # what removing a head means: zero, mean or resample
effect = "fisher"  # what an effect is measured in: fisher, kl or task
robustness_panel = True  # bootstrap intervals, data efficiency, feature modes, held-out templates (~9 more scans)
prompt_seeds = None  # several seeds, e.g. [1, 15, 22, 8]: each number the mean ± std over one prompt set per seed

# %%
import os, warnings
warnings.filterwarnings("ignore")
from IPython.display import display, Markdown
from coax_nb.report import TITLE_KEY, run_report
report = run_report(model, task, primaries, n_prompts, prompt_seed, device, out_dir, top, ablation=ablation,
                    effect=effect, robustness_panel=robustness_panel, prompt_seeds=prompt_seeds)
# the title in the output's metadata becomes the HTML page's <title>
display(Markdown(report.summary_markdown()), metadata={TITLE_KEY: report.title()})

# %%
display(Markdown(report.ranking_markdown()))

# %%
for number, section in enumerate(report.sections(), 1):
    display(section.bundle(number), raw=True)

# %%
display(report.interactive_bundle(), raw=True)

# %%
report.write_json(os.path.join(out_dir, "report.json"))
