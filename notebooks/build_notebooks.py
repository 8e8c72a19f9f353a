"""Writes the tutorial notebooks (notebooks/NN_*.ipynb) and the report notebook
(coax_nb/report.ipynb) from the cell lists below, without outputs.

    python notebooks/build_notebooks.py          # rewrite them
    python notebooks/build_notebooks.py --check  # exit 1 if a committed notebook differs

Edit the cells here, not in Jupyter, so the committed notebooks stay clean and in sync.
"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

PARAMS = '''# Parameters (papermill overrides these; see notebooks/README.md)
model = "organism:ioi_dormant"  # an organism, a local HF directory, or "gpt2" when online
task = "default"                # the organism's own task, "ioi" or "induction"
n_prompts = 32
seed = None                     # primary heads as a list of names like 9.9; None takes the organism card primaries
device = "cpu"
output_dir = "outputs"'''

SETUP = '''import os, warnings
warnings.filterwarnings("ignore")
import numpy as np
import matplotlib
import matplotlib.pyplot as plt
from IPython.display import display
from coax_nb import load_model, Engine
from coax_nb.tutorial import setup

model_obj, the_task, engine, primaries, truth = setup(model, task, n_prompts, seed, device)
os.makedirs(output_dir, exist_ok=True)
print(engine.describe())
print("primaries (seed S):", [str(u) for u in primaries], "| ground-truth backups:", [str(u) for u in truth])'''


def md(text):
    return {"cell_type": "markdown", "metadata": {}, "source": text.strip("\n")}


def code(text, tags=()):
    meta = {"tags": list(tags)} if tags else {}
    return {"cell_type": "code", "execution_count": None, "metadata": meta, "outputs": [], "source": text.strip("\n")}


def header(title, goals, minutes):
    return [md(f"# {title}\n\n**You will learn**\n\n" + "\n".join(f"- {g}" for g in goals)
               + f"\n\nRuns in about {minutes} on a laptop CPU with the bundled organism."),
            code(PARAMS, ["parameters"]), code(SETUP)]


NOTEBOOKS = {
    "00_quickstart": header("00 · Quickstart: one CoAx scan", [
        "load a model and its task in two lines",
        "run a CoAx scan given a primary set S and read the ranking",
        "look at the scores as an interactive head map, and as a static picture"], "20 seconds") + [
        md("""A **CoAx scan** ablates every head twice: alone (its *single-ablation* energy) and together with the
primary set S (its *conditional* energy). Both are measured in the Fisher metric of the output distribution —
how far the model's predictions move — with forward passes only. **CoAx = conditional − single**: how much a
head's effect *grows* once S is gone. Backups that are silent on the intact model score near 0 alone and high
with S removed."""),
        code('''from coax_nb import coax_scan
scores = coax_scan(engine, seed=primaries, progress=False)
print(scores.table(6))'''),
        code('''print("top 3 by CoAx:", [str(u) for u, _ in scores.top(3)])''', ["nbval-check-output"]),
        md("""The **head map** below is interactive in Jupyter: hover a cell for every score, switch the score in the
dropdown, click a head to add or remove it from S — the kernel rescans and the map updates. The static picture
under it is what reports and GitHub show."""),
        code('''from coax_nb.widgets import HeadMap
hm = HeadMap.live(engine, seed=primaries, truth=truth)
display(hm)
display(hm.figure())'''),
        md("## Exercise\n\nWhich head has the largest CoAx score? Is it one of the ground-truth backups? Fill in `answer`."),
        code('''answer = scores.top(1)[0][0]  # replace with your choice, e.g. (2, 1)
from coax_nb.units import parse_unit
assert parse_unit(answer, engine.n_layers, engine.n_heads) in truth, "look at the table above"
print("correct:", answer)'''),
    ],
    "01_self_repair": header("01 · Self-repair and the blind spot of single ablation", [
        "see self-repair happen: remove the primaries and the behaviour survives",
        "see why single ablation misses the backups",
        "read the blind-spot scatter: first-order percentile against CoAx percentile"], "20 seconds") + [
        md("""The behaviour metric of IOI is the **logit difference** between the right name (the indirect object)
and the repeated one. Remove the primaries and most of it survives, because dormant backups take over; remove
the backups too and it collapses."""),
        code('''from coax_nb import Variant
ld = lambda heads: the_task.metric(engine.logits([Variant.zero(heads)])[0]).mean().item()
clean, prim, both = ld([]), ld(primaries), ld(primaries + truth)
print(f"logit difference: clean {clean:.2f}, primaries ablated {prim:.2f}, primaries + backups ablated {both:.2f}")
print(f"share of the joint effect that self-repair hides: {1 - (clean - prim) / (clean - both):.0%}")'''),
        code('''from coax_nb import coax_scan
scores = coax_scan(engine, seed=primaries, progress=False)
for u in truth:
    print(f"backup {u}: single-ablation energy {scores.value('single', u):.2e}, CoAx {scores.value('comp', u):.3f}")'''),
        md("""The **blind-spot scatter** puts every non-seed head at its single-ablation percentile (x) and its CoAx
percentile (y). Backups sit top-left: invisible to the first-order score, first for CoAx."""),
        code('''from coax_nb.widgets import BlindSpot
bs = BlindSpot(scores, x="single", y="comp", truth=truth)
display(bs)
display(bs.figure())'''),
        md("## Exercise\n\nCompute the repair fraction `1 - (clean - prim) / (clean - both)` yourself and check it is above one half."),
        code('''repair = 1 - (clean - prim) / (clean - both)
assert repair > 0.5, repair
print(f"repair fraction {repair:.2f}")'''),
    ],
    "02_fisher_metric": header("02 · The CoAx score and the Fisher metric", [
        "compute one head's ablation energy by hand from logits",
        "see that it equals what the scan reports",
        "know the options: fixed top-r support, conditional geometry"], "20 seconds") + [
        md("""For one prompt, let `p` be the clean output distribution and `z0`, `z` the clean and ablated logits.
The centred Fisher feature is `f = sqrt(p) * (d - <p, d>)` with `d = z - z0`, and the **energy** is `|f|²`
averaged over prompts — a second-order approximation of the KL divergence the ablation causes."""),
        code('''import torch
from coax_nb import Variant, coax_scan
u = truth[0]
z0 = torch.stack(engine.clean_logits()).double()
z = torch.stack(engine.logits([Variant.zero([u])])[0]).double()
p = torch.softmax(z0, -1)
d = z - z0
f = p.sqrt() * (d - (p * d).sum(-1, keepdim=True))
by_hand = (f ** 2).sum(-1).mean().item()
scores = coax_scan(engine, seed=primaries, progress=False)
print(f"single-ablation energy of {u}: by hand {by_hand:.6e}, scan {scores.value('single', u):.6e}")'''),
        md("""Options of `coax_scan`: `top_r=50` measures on the clean top-50 tokens only (big vocabularies);
`geometry="conditional"` measures conditional energies in the S-ablated model's own metric; `feature_mode`
switches to plain L2 distances."""),
        code('''fast = coax_scan(engine, seed=primaries, top_r=10, progress=False)
print("top 3 with top-10 support:", [str(x) for x, _ in fast.top(3)])'''),
        md("## Exercise\n\nCheck the hand computation against the scan to a relative 1e-4."),
        code('''assert abs(by_hand - scores.value("single", u)) <= 1e-4 * max(by_hand, 1e-12)
print("matches")'''),
    ],
    "03_synergy": header("03 · Pairwise synergy", [
        "measure how two heads' ablations interact",
        "read a synergy grid with group blocks",
        "find the primary-backup pairs"], "30 seconds") + [
        md("""**Synergy** of heads a and b: `E(a,b) - E(a) - E(b)` — positive when removing both hurts more than the
two removals alone (redundancy, as between a primary and its backup). The normalized form divides by
`E(a,b)`."""),
        code('''from coax_nb import synergy
heads = primaries + truth
pairs = synergy(engine, heads, progress=False)
print(pairs.top_pairs(3, by="normalized"))'''),
        code('''from coax_nb.widgets import SynergyGrid
groups = {str(u): "primary" for u in primaries} | {str(u): "backup" for u in truth}
sg = SynergyGrid(pairs, name="normalized", groups=groups)
display(sg)
display(sg.figure())'''),
        md("## Exercise\n\nIs the most synergistic pair a primary together with a backup?"),
        code('''a, b, _ = pairs.top_pairs(1, by="normalized")[0]
assert {a in primaries, b in primaries} == {True, False}, (a, b)
print("yes:", a, b)'''),
    ],
    "04_baselines_recovery": header("04 · Baselines and backup recovery", [
        "run every first-order scorer (AtP, AtP* GradDrop, EAP-IG, conditional AtP) and CoAx",
        "compare them at recovering known backups in one table",
        "see what each costs in forward and backward passes"], "40 seconds") + [
        md("""The paper's central comparison. Each selector ranks the non-seed heads; ROC-AUC, average precision and
precision@k say how well it puts the true backups first. Repeating over prompt sets gives mean ± std."""),
        code('''from coax_nb import recovery
from coax_nb.organisms import task_for
r = recovery(model_obj, lambda s: task_for(model, n_prompts, seed=s), seed=primaries, truth=truth,
             prompt_seeds=[0, 1], ig_steps=4, progress=False)
print(r.table())
r.to_json(os.path.join(output_dir, "recovery.json"))
display(r.plot())'''),
        code('''from coax_nb.widgets import RankingTable
rt = RankingTable(r.scores[0], sort_by="comp", truth=truth)
display(rt)'''),
        md("## Exercise\n\nDoes CoAx beat single ablation by at least 0.3 ROC-AUC here?"),
        code('''gap = r.auc("comp") - r.auc("single")
assert gap >= 0.3, gap
print(f"CoAx - single = {gap:.2f}")'''),
    ],
    "05_validation": header("05 · Causal validation", [
        "watch backups wake up as the primaries go, one by one",
        "freeze the selected heads and see the repair vanish",
        "compare everything with size-matched random heads"], "30 seconds") + [
        md("""A high CoAx rank is necessary, not sufficient. Four causal checks, each against random heads of the
same size: graded **wake-up**, the **DLA hand-off**, **freezing** (the fraction of self-repair that disappears
when the selected heads are held at their intact outputs) and **counterfactual patching**."""),
        code('''from coax_nb import coax_scan, wakeup, dla_handoff, freezing
selected = [u for u, _ in coax_scan(engine, seed=primaries, progress=False).top(len(truth))]
w = wakeup(engine, None, primaries, selected, n_random=6)
print({k: round(v["margin"], 3) for k, v in w.margins.items()})
display(w.plot())'''),
        code('''from coax_nb.widgets import Curves
cv = Curves(w.curves["dla"])
display(cv)
print(dla_handoff(engine, None, primaries, selected).table)'''),
        code('''f = freezing(engine, None, primaries, selected, n_random=6)
print(f"freezing the selected heads removes {f.removed:.0%} of the repair; random sets: "
      f"{np.mean(f.random_removed):.0%} on average")
display(f.plot())'''),
        md("## Exercise\n\nDoes freezing CoAx's heads remove at least 90% of the repair, and random heads at most 10%?"),
        code('''assert f.removed >= 0.9 and max(f.random_removed) <= 0.1, (f.removed, f.random_removed)
print("yes")'''),
    ],
    "06_applications": header("06 · Applications: attribution, knockout, completion, pruning", [
        "repair an attribution corrupted by self-repair",
        "knock a capability out with the fewest heads, and measure collateral damage",
        "prune heads in a repair-aware order and watch the loss live"], "60 seconds") + [
        code('''from coax_nb import attribution_repair, knockout, coax_scan
from coax_nb.tasks import induction_task
ar = attribution_repair(engine, None, primaries, truth)
print(f"primaries alone: {ar.primaries_only:.2f}; with backups: {ar.with_backups:.2f} ({ar.factor:.1f}x)")
s = coax_scan(engine, seed=primaries, progress=False)
ko = knockout(engine, None, primaries, {"CoAx": [u for u, _ in s.top(6)],
                                        "first-order": [u for u, _ in s.top(6, by="single")]},
              truth, unrelated=induction_task(model_obj, 12, 6, seed=3), n_random=4)
display(ko.plot())'''),
        md("""**Repair-aware pruning** re-measures every remaining head given what is already removed, so a backup
that wakes up once its primary is gone is kept. The live chart below grows while the run goes."""),
        code('''from coax_nb import prune
from coax_nb.organisms import task_for
from coax_nb.widgets import Curves
live = Curves()
display(live)  # grows while the run goes
p = prune(model_obj, task_for(model, 24, seed=1), task_for(model, 32, seed=2),
          orders=["repair_aware", "single", "random"], checkpoint=os.path.join(output_dir, "prune.json"),
          progress=False, on_step=lambda order, x, loss: live.append(order, x, loss))
display(p.plot())'''),
        md("## Exercise\n\nAt k = |backups|, is the CoAx knockout at least as close to the oracle as the first-order top-up?"),
        code('''K = len(truth)
assert ko.row("CoAx", K)["distance_to_oracle"] <= ko.row("first-order", K)["distance_to_oracle"] + 1e-9
print("yes")'''),
    ],
    "07_your_own_model": header("07 · Your own model and task", [
        "load a local Hugging Face checkpoint (and `gpt2` when you are online)",
        "define a task from your own prompts",
        "run the same scan on it"], "20 seconds") + [
        md("""Any GPT-2-style Hugging Face directory loads through the same code as the organisms. Here we build a
small random model in a temporary folder; with internet, `load_model("gpt2")` works the same way (and
`ioi_task(model, 96)` builds IOI prompts for its tokenizer)."""),
        code('''import tempfile
from coax_nb.toy import build_toy_model
path = build_toy_model(tempfile.mkdtemp() + "/mymodel", n_layers=2, n_heads=4, d_model=32)
mine = load_model(path, device=device)
ONLINE = False  # set True to try the real GPT-2
if ONLINE:
    gpt2 = load_model("gpt2")'''),
        md("A task is prompts plus what the metric reads. `custom_task` takes texts, answers and distractors (single tokens):"),
        code('''from coax_nb import custom_task, coax_scan
my_task = custom_task(mine, ["When Mary and John went to the store , John gave a drink to",
                             "When Tom and Anne went to the garden , Anne gave a ring to"],
                      answers=["Mary", "Tom"], distractors=["John", "Anne"])
my_scores = coax_scan(mine, my_task, seed=["1.0"], progress=False)
print(my_scores.table(3))'''),
        md("## Exercise\n\nHow many heads does your model have? Check the scan scored every one."),
        code('''assert len(my_scores["comp"]) == 2 * 4
print("all", len(my_scores["comp"]), "heads scored")'''),
    ],
}

REPORT = [
    md("# CoAx report\n\nExecuted by `coax-nb report`; every figure is a static image so the HTML reads offline."),
    code('''# Parameters
model = "organism:ioi_dormant"
task = "default"
seed = None
n_prompts = 64
prompt_seed = 0
device = None
out_dir = "report"
top = 10''', ["parameters"]),
    code('''import json, os, time, warnings
warnings.filterwarnings("ignore")
from IPython.display import display, Markdown
from coax_nb.report import run_report
report = run_report(model, task, seed, n_prompts, prompt_seed, device, out_dir, top)
display(Markdown(report.summary_markdown()))'''),
    code('''print(report.scores.table(top))'''),
    code('''for fig in report.figures():
    display(fig)'''),
    code('''report.write_json(os.path.join(out_dir, "report.json"))
print("artifact written:", os.path.join(out_dir, "report.json"))'''),
]


def notebook(cells):
    return {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                                         "name": "python3"},
                                          "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def outputs() -> dict:
    files = {HERE / f"{name}.ipynb": notebook(cells) for name, cells in NOTEBOOKS.items()}
    files[ROOT / "coax_nb" / "report.ipynb"] = notebook(REPORT)
    for nb in files.values():  # stable cell ids so rebuilding changes nothing
        for i, c in enumerate(nb["cells"]):
            c["id"] = f"cell-{i}"
    return {p: json.dumps(nb, indent=1) + "\n" for p, nb in files.items()}


def main(argv):
    stale = []
    for path, text in outputs().items():
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        print("out of date (run python notebooks/build_notebooks.py):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
