"""``ablation=`` reaches every scorer beyond the scan: the gradient baselines estimate the
chosen removal (against autograd on plain Hugging Face in float64), recovery,
validation, the applications and pruning run with it and record it, and an unknown name
is refused before any model runs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from coax_nb import (Engine, Variant, attribution_repair, attribution_scores, circuit_completion, coax_scan,
                     counterfactual_patching, dla_handoff, evaluate, freezing, induction_transfer, knockout,
                     load_model, prune, recovery, single_scan, wakeup)
from coax_nb.applications.common import task_loss
from coax_nb.organisms import task_for
from coax_nb.tasks import ioi_counterfactual
from coax_nb.units import all_units
from test_ablation_effects import PRIMARY, engine_with_corrupted, hf_removals
from test_families import H, L, PlainHF

P, B = ["L1H0", "L1H1"], ["L2H0", "L2H1"]  # the hand-wired organism's primaries and backups


def hf_replacements(hf, ablation, corrupted):
    """Per layer, what ``ablation`` puts in place of the attention output projection's input:
    the clean mean over every prompt and position, or the corrupted prompts' own input."""
    _, clean_in = hf.run(capture=True)
    if ablation == "mean":
        return [clean_in[layer].reshape(-1, clean_in[layer].shape[-1]).mean(0) for layer in range(L)]
    _, corrupt_in = hf.run(tokens=torch.tensor(corrupted), capture=True)
    return [corrupt_in[layer] for layer in range(L)]


def logit_diff(task, logits):
    rows = torch.arange(len(logits))
    tgt = torch.tensor([t[0] for t in task.targets])
    dis = torch.tensor([d[0] for d in task.distractors])
    return logits[rows, tgt] - logits[rows, dis]


def per_head(x, n):
    """[n, T, H*dh] -> summed over positions and d_head per head: [n, H]."""
    return x.reshape(n, x.shape[1], H, -1).sum((1, 3))


def hf_atp(hf, task, reps, edits=()):
    """AtP by autograd: per prompt sum over positions and d_head of (z - r) * dm/dz, mean |.|."""
    logits, z = hf.run(list(edits), grad=True)
    grads = torch.autograd.grad(logit_diff(task, logits).sum(), [z[layer] for layer in range(L)])
    n = len(logits)
    a = torch.stack([per_head((z[layer] - reps[layer]) * g, n) for layer, g in enumerate(grads)], 1)
    return a.abs().mean(0).flatten().detach()


@pytest.mark.parametrize("name, ablation", [("gpt2", "mean"), ("gpt2", "resample"), ("llama", "mean"),
                                            ("llama", "resample")])
def test_atp_estimates_the_chosen_ablation_like_autograd_on_plain_hf(name, ablation):
    e = engine_with_corrupted(name)
    hf = PlainHF(name)
    reps = hf_replacements(hf, ablation, e.task.corrupted)
    s = attribution_scores(e, primaries=[f"L{PRIMARY[0]}H{PRIMARY[1]}"], methods=["atp"], ablation=ablation,
                           progress=False)
    assert s.meta["ablation"] == ablation
    want = hf_atp(hf, e.task, reps)
    assert want.max() > 1e-6
    assert torch.tensor(s["atp"]) == pytest.approx(want, rel=1e-6, abs=1e-12)
    # the conditional graph: the primary removed the same way, the estimate still of this ablation
    cond = hf_atp(hf, e.task, reps, [hf_removals(hf, ablation, e.task.corrupted)(*PRIMARY)])
    keep = ~s.is_primary()
    assert torch.tensor(s["cond_atp"][keep]) == pytest.approx(cond[keep], rel=1e-6, abs=1e-12)
    assert not np.allclose(s["cond_atp"][keep], s["atp"][keep])
    # and it is not the zero-ablation estimate
    zero = attribution_scores(e, methods=["atp"], progress=False)["atp"]
    assert not np.allclose(zero, s["atp"], rtol=1e-3)


def test_eap_ig_integrates_from_the_replacement_like_autograd_on_plain_hf():
    """EAP-IG under resample: layer l's heads moved to r + alpha (z - r), gradients averaged
    over alpha = k / steps, attribution (r - z) * mean grad, signed mean over prompts, |.|."""
    e = engine_with_corrupted("gpt2")
    hf = PlainHF("gpt2")
    reps = hf_replacements(hf, "resample", e.task.corrupted)
    steps = 3
    _, clean_in = hf.run(capture=True)
    want = []
    for layer in range(L):
        grad_sum = 0
        for k in range(1, steps + 1):
            a = k / steps
            edits = [(layer, h, lambda x, h=h, a=a: reps[layer][..., h * hf.dh:(h + 1) * hf.dh]
                      + a * (x - reps[layer][..., h * hf.dh:(h + 1) * hf.dh])) for h in range(H)]
            logits, z = hf.run(edits, grad=True)
            grad_sum = grad_sum + torch.autograd.grad(logit_diff(e.task, logits).sum(), z[layer])[0]
        n = len(grad_sum)
        want.append(per_head((reps[layer] - clean_in[layer]) * grad_sum / steps, n).mean(0))
    want = torch.stack(want).abs().flatten().detach()
    got = attribution_scores(e, methods=["eap_ig"], ig_steps=steps, ablation="resample", progress=False)["eap_ig"]
    assert want.max() > 1e-6
    assert torch.tensor(got) == pytest.approx(want, rel=1e-6, abs=1e-12)


# ---------------------------------------------------------------- the hand-wired organism
@pytest.fixture(scope="module")
def hw():
    model = load_model("organism:handwired")
    task = task_for("organism:handwired", 16, prompt_seed=3)
    return model, task, Engine(model, task, progress=False)


def _metric(engine, variant):
    return float(engine.task.metric(engine.logits([variant])[0]).mean())


def test_recovery_under_resample_says_so_and_ranks_as_the_scan_does(hw):
    _, _, engine = hw
    r = recovery(engine, None, P, B, selectors=["comp", "single", "atp", "cond_atp"], ablation="resample",
                 progress=False)
    assert r.meta["ablation"] == "resample" and "resample" in r.meta["title"]
    assert [row["ablation"] for row in r.rows] == ["resample"] * 4
    assert "resample ablation" in r.table() and "resample ablation" in r._repr_html_()
    assert r.scores[0].meta["ablation"] == "resample"
    scan = coax_scan(engine, primaries=P, ablation="resample", progress=False)
    assert r.auc("comp") == pytest.approx(evaluate(scan, B, by="comp")["roc_auc"], abs=1e-12)
    assert np.allclose(r.scores[0]["comp"], scan["comp"], equal_nan=True)
    grads = attribution_scores(engine, None, P, methods=["atp"], ablation="resample", progress=False)
    assert np.allclose(r.scores[0]["cond_atp"], grads["cond_atp"], equal_nan=True)
    # resample is not zero here: the scan's numbers differ
    assert not np.allclose(scan["single"], coax_scan(engine, primaries=P, progress=False)["single"])


def test_validation_under_mean_ablation_records_it_and_uses_it(hw):
    _, _, engine = hw
    Pu, Xu = engine.units(P), engine.units(B)
    m_mean = _metric(engine, Variant.mean(Pu))
    assert abs(m_mean - _metric(engine, Variant.zero(Pu))) > 1e-3  # mean and zero differ on this model

    f = freezing(engine, None, P, B, n_random=3, ablation="mean")
    assert f.meta["ablation"] == "mean" and "mean ablation" in f._repr_html_()
    assert f.metric["primaries_ablated"] == pytest.approx(m_mean, rel=1e-9)
    others = [u for u in all_units(engine.n_layers, engine.n_heads) if u not in Pu]
    assert f.metric["all_frozen"] == pytest.approx(_metric(engine, Variant.mean(Pu) | Variant.freeze(others)),
                                                   rel=1e-9)

    w = wakeup(engine, None, P, B, n_random=2, ablation="mean")
    assert w.meta["ablation"] == "mean"
    effect = w.curves["effect"].series[0]["y"][-1]
    assert effect == pytest.approx(m_mean - _metric(engine, Variant.mean(Pu + Xu)), rel=1e-9)

    h = dla_handoff(engine, None, P, B, ablation="mean")
    assert h.meta["ablation"] == "mean"
    assert h.table["primaries"]["primaries ablated"] != 0.0  # a mean-ablated head still writes its mean

    k = knockout(engine, None, P, {"CoAx": B}, B, n_random=2, ablation="mean")
    assert k.meta["ablation"] == "mean"
    assert k.meta["oracle_metric"] == pytest.approx(_metric(engine, Variant.mean(Pu + Xu)), rel=1e-9)

    a = attribution_repair(engine, None, P, B, ablation="mean")
    assert a.meta["ablation"] == "mean"
    assert a.primaries_only == pytest.approx(m_mean - _metric(engine, Variant()), rel=1e-9)

    c = circuit_completion(engine, None, P, [], {"backups": B}, n_random=2, ablation="mean")
    assert c.meta["ablation"] == "mean"
    assert c.full_response == pytest.approx(_metric(engine, Variant()) - m_mean, rel=1e-9)


def test_counterfactual_patching_resamples_the_primaries_on_both_prompt_sets(hw):
    """Under resample both prompt sets take the primaries' outputs from the task's paired
    corrupted prompts; checked against patching them in from those prompts registered
    as a plain source."""
    model, task, engine = hw
    cf = ioi_counterfactual(model, task, rng_seed=1)
    p = counterfactual_patching(model, task, cf, P, B, n_random=2, ablation="resample")
    assert p.meta["ablation"] == "resample" and np.isfinite(p.moved)

    def d(logits):
        return float((cf.metric(logits) - task.metric(logits)).mean())

    Pu = engine.units(P)
    assert p.meta["d_primaries_ablated"] == pytest.approx(d(engine.logits([Variant.ablate(Pu, "resample")])[0]),
                                                          rel=1e-9)
    cf_engine = Engine(model, cf, progress=False)
    cf_engine.add_source("abc", task.corrupted)
    assert p.meta["d_counterfactual"] == pytest.approx(d(cf_engine.logits([Variant.patch(Pu, "abc")])[0]), rel=1e-9)
    assert p.meta["d_counterfactual"] != pytest.approx(d(cf_engine.logits([Variant.zero(Pu)])[0]), rel=1e-3)


def test_pruning_under_mean_ablation_and_its_checkpoint(hw, tmp_path):
    model, _, _ = hw
    cal, ev = task_for("organism:handwired", 8, prompt_seed=1), task_for("organism:handwired", 8, prompt_seed=2)
    path = tmp_path / "prune.json"
    out = prune(model, cal, ev, orders=["single"], max_fraction=0.25, ablation="mean", progress=False)
    assert out.meta["ablation"] == "mean"
    cal_engine, ev_engine = Engine(model, cal, progress=False), Engine(model, ev, progress=False)
    single = single_scan(cal_engine, ablation="mean", progress=False)["single"]
    every = all_units(cal_engine.n_layers, cal_engine.n_heads)
    first = every[int(np.argsort(single, kind="stable")[0])]
    assert out.orders["single"]["removed"][0] == str(first)
    want = float(task_loss(ev, ev_engine.logits([Variant.mean([first])])[0]).mean())
    assert out.orders["single"]["loss"][1] == pytest.approx(want, rel=1e-9)

    prune(model, cal, ev, orders=["single"], max_fraction=0.25, checkpoint=path, progress=False)
    with pytest.raises(ValueError, match=r"other settings \(ablation: 'zero' in the checkpoint, 'mean' now\)"):
        prune(model, cal, ev, orders=["single"], max_fraction=0.25, checkpoint=path, ablation="mean",
              progress=False)


# ---------------------------------------------------------------- refusals
ENTRY_POINTS = {
    "attribution_scores": lambda m, t, e: attribution_scores(e, primaries=P, ablation="zeros"),
    "recovery": lambda m, t, e: recovery(m, t, P, B, ablation="zeros"),
    "wakeup": lambda m, t, e: wakeup(e, None, P, B, ablation="zeros"),
    "dla_handoff": lambda m, t, e: dla_handoff(e, None, P, B, ablation="zeros"),
    "freezing": lambda m, t, e: freezing(e, None, P, B, ablation="zeros"),
    "counterfactual_patching": lambda m, t, e: counterfactual_patching(m, t, t, P, B, ablation="zeros"),
    "attribution_repair": lambda m, t, e: attribution_repair(e, None, P, B, ablation="zeros"),
    "knockout": lambda m, t, e: knockout(e, None, P, {"CoAx": B}, B, ablation="zeros"),
    "circuit_completion": lambda m, t, e: circuit_completion(e, None, P, [], {"CoAx": B}, ablation="zeros"),
    "induction_transfer": lambda m, t, e: induction_transfer(m, ablation="zeros"),
    "prune": lambda m, t, e: prune(m, t, t, ablation="zeros", progress=False),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_an_unknown_ablation_is_refused_before_any_model_runs(hw, entry):
    model, task, engine = hw
    calls = []
    handle = model.register_forward_pre_hook(lambda mod, args: calls.append(1))
    try:
        with pytest.raises(ValueError, match=r"unknown ablation 'zeros'; choose one of zero, mean, resample"):
            ENTRY_POINTS[entry](model, task, engine)
    finally:
        handle.remove()
    assert calls == []


def test_knockout_resample_on_unrelated_prompts_without_corrupted_ones_is_refused(hw):
    _, _, engine = hw
    with pytest.raises(ValueError, match=r"unrelated as a Task with corrupted="):
        knockout(engine, None, P, {"CoAx": B}, B, ablation="resample", unrelated=[[0, 5, 6, 7]], n_random=1)
