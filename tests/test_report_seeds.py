"""Multi-seed reports (``--prompt-seeds 1 15 22 8``): every number is the mean ± std over
one prompt set per seed.

The means are held to numbers computed apart from the report: CoAx scores from a plain
Hugging Face model in float64 (forward pre-hooks on the attention output projection; no
coax_nb code runs the model) on each seed's prompts, and the report's other numbers to
scans, recoveries and freezings run separately, one seed at a time."""
import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from coax_nb import coax_scan, evaluate, organisms
from coax_nb.inputs import resolve
from coax_nb.report import execute_report, run_report
from coax_nb.results import Freezing, UnitScores, WakeUp
from coax_nb.tasks import check_prompt_seeds
from coax_nb.validate import freezing, wakeup

DORMANT = "organism:ioi_dormant"
S = ["L1H1", "L1H0", "L1H2"]
SEEDS = [1, 15, 22]
N = 12


# ------------------------------------------------------------ plain HF, float64
def hf_last_logits(hf, prompts, zero=()):
    dh = hf.config.n_embd // hf.config.n_head
    hooks = []
    for layer, block in enumerate(hf.transformer.h):
        def pre(module, args, layer=layer):
            x = args[0].clone()
            for lay, h in zero:
                if lay == layer:
                    x[..., h * dh:(h + 1) * dh] = 0
            return (x,)
        hooks.append(block.attn.c_proj.register_forward_pre_hook(pre))
    try:
        with torch.no_grad():
            return hf(torch.tensor(prompts)).logits[:, -1]
    finally:
        for handle in hooks:
            handle.remove()


def fisher_energy(z0, z, p):
    """Mean squared centred Fisher feature of z0 -> z in the metric p."""
    d = z - z0
    d = d - (p * d).sum(-1, keepdim=True)
    return ((p.sqrt() * d) ** 2).sum(-1).mean().item()


def hf_comp(hf, prompts, unit, primaries):
    z0 = hf_last_logits(hf, prompts)
    p0 = torch.softmax(z0, -1)
    zu = hf_last_logits(hf, prompts, [unit])
    zS = hf_last_logits(hf, prompts, primaries)
    zSu = hf_last_logits(hf, prompts, primaries + [unit])
    return fisher_energy(zS, zSu, p0) - fisher_energy(z0, zu, p0)


@pytest.fixture(scope="module")
def dormant_runs():
    return [resolve(DORMANT, "default", N, S, prompt_seed=s, device="cpu") for s in SEEDS]


def test_mean_scan_is_the_mean_of_plain_hf_scores_over_the_seeds(dormant_runs):
    hf = AutoModelForCausalLM.from_pretrained(str(organisms.path("ioi_dormant")), attn_implementation="eager")
    hf = hf.double().eval()
    scans = [coax_scan(r.engine, primaries=S, progress=False) for r in dormant_runs]
    mean = UnitScores.mean_over_seeds(scans, SEEDS)
    prim = [(1, 1), (1, 0), (1, 2)]
    for layer, head in [(2, 1), (2, 0), (0, 3)]:
        per_seed = []
        for r in dormant_runs:
            assert len({len(p) for p in r.task.prompts}) == 1  # the last position is the answer slot
            per_seed.append(hf_comp(hf, r.task.prompts, (layer, head), prim))
        assert np.std(per_seed) > 1e-3 * abs(np.mean(per_seed))  # the prompt sets really differ
        i = layer * 4 + head
        assert mean["comp"][i] == pytest.approx(np.mean(per_seed), rel=2e-4, abs=1e-6)
        assert mean.spread("comp")[i] == pytest.approx(np.std(per_seed), rel=2e-3, abs=1e-6)
    # the primaries stay NaN; the cost is the sum of the scans'; the table shows mean ± std
    assert np.isnan(mean["comp"][4]) and np.isnan(mean.spread("comp")[4])
    assert mean.meta["forward_passes"] == sum(s.meta["forward_passes"] for s in scans)
    assert mean.meta["over_prompt_seeds"]["seeds"] == SEEDS
    row = [line for line in mean.table(3).splitlines() if "L2H1" in line][0]
    assert f"{mean['comp'][9]:.4g} ± {mean.spread('comp')[9]:.2g}" in row
    assert "mean ± std over prompt seeds 1 15 22" in mean.table(3)
    # a saved mean keeps its spread; one seed's scan has none
    again = UnitScores.from_json(mean.to_json())
    np.testing.assert_allclose(again.spread("comp"), mean.spread("comp"), equal_nan=True)
    assert scans[0].spread("comp") is None and "±" not in scans[0].table(3)


def test_means_refuse_what_cannot_be_averaged(dormant_runs):
    scans = [coax_scan(r.engine, primaries=S, progress=False) for r in dormant_runs[:2]]
    other = coax_scan(dormant_runs[0].engine, primaries=["L1H1"], progress=False)
    with pytest.raises(ValueError, match="at least two"):
        UnitScores.mean_over_seeds(scans[:1], SEEDS[:1])
    with pytest.raises(ValueError, match="one UnitScores per prompt seed"):
        UnitScores.mean_over_seeds(scans, SEEDS)
    with pytest.raises(ValueError, match="same primaries"):
        UnitScores.mean_over_seeds([scans[0], other], SEEDS[:2])
    with pytest.raises(TypeError, match="can only average UnitScores"):
        UnitScores.mean_over_seeds([scans[0], {"comp": 1}], SEEDS[:2])


@pytest.mark.parametrize("seeds, error, words", [
    ("1 15", TypeError, "list of whole numbers"),
    ([], ValueError, "empty"),
    ([1, 15, 1], ValueError, "repeats seed(s) 1"),
    ([1, -2], ValueError, "each of prompt_seeds"),
    ([1, 2.5], TypeError, "each of prompt_seeds must be a whole number"),
])
def test_prompt_seeds_are_checked(seeds, error, words):
    with pytest.raises(error) as info:
        check_prompt_seeds(seeds)
    assert words in str(info.value)


def test_report_refuses_both_seed_arguments_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="not both"):
        run_report("organism:handwired", prompt_seed=1, prompt_seeds=[1, 2])
    with pytest.raises(ValueError, match="repeats seed"):
        execute_report("organism:handwired", "default", tmp_path / "r", prompt_seeds=[4, 4])
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------ the report's wiring
HW = "organism:handwired"
HW_SEEDS = [0, 1, 2]


@pytest.fixture(scope="module")
def report():
    return run_report(HW, n_prompts=N, prompt_seeds=HW_SEEDS, robustness_panel=False)


@pytest.fixture(scope="module")
def apart(report):
    """Each seed's numbers computed on their own, one engine per seed."""
    runs = [resolve(HW, "default", N, None, prompt_seed=s) for s in HW_SEEDS]
    prim = report.scores.primaries
    sel = report.meta["selected"]
    return {"scans": [coax_scan(r.engine, primaries=prim, progress=False) for r in runs],
            "freezing": [freezing(r.engine, None, prim, sel, n_random=8) for r in runs],
            "wakeup": [wakeup(r.engine, None, prim, sel, n_random=8) for r in runs]}


def test_every_number_of_a_multi_seed_report_is_the_mean_over_the_seeds(report, apart):
    scans = apart["scans"]
    for name in ("single", "conditional", "comp", "ratio"):
        stack = np.stack([s[name] for s in scans])
        np.testing.assert_allclose(report.scores[name], stack.mean(0), rtol=1e-6, equal_nan=True)
        np.testing.assert_allclose(report.scores.spread(name), stack.std(0), rtol=1e-5, atol=1e-9, equal_nan=True)
    truth = report.meta["truth"]
    for row in report.recovery.rows:
        per = [evaluate(s, truth, by=row["selector"])["roc_auc"] for s in scans] if row["selector"] in \
            ("comp", "ratio", "single") else None
        if per is not None:
            assert row["roc_auc"] == pytest.approx(np.mean(per)) and row["roc_auc_std"] == pytest.approx(np.std(per))
    assert len(report.recovery.scores) == 3 and report.recovery.meta["prompt_seeds"] == HW_SEEDS
    removed = [f.removed for f in apart["freezing"]]
    assert report.freezing.removed == pytest.approx(np.mean(removed))
    assert report.freezing.meta["over_prompt_seeds"]["removed_std"] == pytest.approx(np.std(removed), abs=1e-12)
    np.testing.assert_allclose(report.freezing.random_removed,
                               np.mean([f.random_removed for f in apart["freezing"]], 0), atol=1e-9)
    for signal, margins in report.wakeup.margins.items():
        for key, value in margins.items():
            assert value == pytest.approx(np.mean([w.margins[signal][key] for w in apart["wakeup"]]), abs=1e-9)
    # the wake-up lines are means with ± std bands over the seeds
    series = report.wakeup.curves["norm"].series[0]
    ys = np.array([w.curves["norm"].series[0]["y"] for w in apart["wakeup"]])
    np.testing.assert_allclose(series["y"], ys.mean(0), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(series["hi"]) - series["y"], ys.std(0), atol=1e-6)


def test_a_multi_seed_report_says_mean_and_std_everywhere(report):
    assert report.multi and report.seeds == HW_SEEDS
    assert "(12 prompts on each of prompt seeds 0, 1 and 2)" in report.headline()
    assert "ROC-AUC" in report.headline() and " ± " in report.headline()
    assert report.finding().startswith("Over 3 prompt seeds (0, 1 and 2; numbers are mean ± std), CoAx ranks")
    assert "12 on each of 3 prompt seeds (0, 1 and 2)" in report.title_block_markdown()
    table = report.ranking_markdown()
    assert "each cell is the mean ± std over the 3 prompt seeds" in table
    assert all(" ± " in line for line in table.splitlines() if line.startswith("| 1 |"))
    head_map = report.sections()[0]
    titles = [a.get_title().split("\n")[0] for a in head_map.figure.axes if a.get_title()]
    assert titles == ["mean comp (diverging around 0)", "std of comp"]
    assert "right: its std over them" in head_map.caption
    for section in report.sections()[1:]:
        assert "3 prompt seeds" in section.caption, section.title
    d = json.loads(json.dumps(report.to_dict()))  # report.json's content, as written
    seeds = d["prompt_seeds"]
    assert seeds["seeds"] == HW_SEEDS and [p["prompt_seed"] for p in seeds["per_seed"]] == HW_SEEDS
    assert seeds["std"]["recovery"]["comp"]["roc_auc"] == report.recovery.row("comp")["roc_auc_std"]
    assert d["meta"]["prompt_seed"] is None and d["meta"]["prompt_seeds"] == HW_SEEDS


def test_a_one_seed_report_has_no_spread():
    r = run_report(HW, n_prompts=N, prompt_seed=2, robustness_panel=False)
    assert not r.multi and r.seeds == [2] and "±" not in r.headline() + r.finding() + r.ranking_markdown()
    assert "prompt_seeds" not in r.to_dict() and r.meta["prompt_seed"] == 2


@pytest.mark.slow
def test_report_command_with_prompt_seeds_writes_means_and_spreads(tmp_path, capsys):
    import logging

    from coax_nb.cli import main

    logging.getLogger("papermill").setLevel(logging.CRITICAL)
    out = tmp_path / "r"
    assert main(["report", "--prompt-seeds", "1", "15", "--prompts", str(N), "--no-robustness",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "on each of prompt seeds 1 and 15" in printed and "mean ± std over prompt seeds 1 15" in printed
    d = json.loads((out / "report.json").read_text())
    assert d["prompt_seeds"]["seeds"] == [1, 15] and len(d["prompt_seeds"]["per_seed"]) == 2
    comp = [np.array(p["scores"]["scores"]["comp"], dtype=float) for p in d["prompt_seeds"]["per_seed"]]
    np.testing.assert_allclose(np.array(d["scores"]["scores"]["comp"], dtype=float), np.mean(comp, 0), rtol=1e-6)
    page = (out / "report.html").read_text()
    assert page.count(" ± ") >= 20 and "Over 2 prompt seeds (1 and 15; numbers are mean ± std)" in page
    assert "right: its std over them" in page
