"""Applications on the organisms: attribution repair, knockout, circuit completion,
repair-aware pruning (with checkpoint/resume) and the induction pipeline."""
import json

import numpy as np
import pytest

from coax_nb import Engine, coax_scan, load_model, organisms
from coax_nb.applications import (attribution_repair, circuit_completion, induction_transfer, knockout, prune,
                                  task_loss)
from coax_nb.organisms import task_for
from coax_nb.tasks import induction_task
from coax_nb.units import all_units


def _setup(name, n=48, prompt_seed=7):
    model = load_model(f"organism:{name}")
    engine = Engine(model, task_for(f"organism:{name}", n, prompt_seed=prompt_seed), progress=False)
    card = organisms.card(name)
    return model, engine, [tuple(x) for x in card["primaries"]], [tuple(x) for x in card["backups"]]


@pytest.fixture(scope="module")
def hw():
    return _setup("handwired")


@pytest.fixture(scope="module")
def dormant():
    return _setup("ioi_dormant")


def test_attribution_repair(hw, dormant):
    _, e, P, B = hw
    r = attribution_repair(e, None, P, B)
    assert abs(r.primaries_only) < 0.01 and r.with_backups == pytest.approx(-3.5, abs=0.01)  # by construction
    _, e, P, B = dormant
    r = attribution_repair(e, None, P, B)
    assert r.primaries_only < 0 and r.factor > 2.5
    assert len(r.plot().axes[0].patches) == 2


@pytest.mark.parametrize("which", ["hw", "dormant"])
def test_coax_knockout_is_closer_to_the_oracle_than_first_order(request, which):
    model, e, P, B = request.getfixturevalue(which)
    s = coax_scan(e, primaries=P, progress=False)
    ko = knockout(e, None, P, {"CoAx": [u for u, _ in s.top(6)], "first-order": [u for u, _ in s.top(6, by="single")]},
                  B, unrelated=induction_task(model, 12, 6, prompt_seed=3), n_random=4)
    K = len(B)
    coax, first = ko.row("CoAx", K), ko.row("first-order", K)
    assert coax["distance_to_oracle"] < 1e-6  # CoAx's top-K are exactly the backups here
    assert first["distance_to_oracle"] > 1.0
    assert coax["kl_unrelated"] == pytest.approx(ko.meta["oracle_kl_unrelated"])
    assert ko.row("CoAx", 0)["metric"] == ko.row("first-order", 0)["metric"]  # k = 0: primaries only
    assert set(ko.curves) == {"metric", "accuracy", "distance_to_oracle", "kl_unrelated"}
    rnd = ko.curves["metric"].series[-1]
    assert "lo" in rnd and len(rnd["x"]) == K + 1


def test_circuit_completion(hw, dormant):
    for model, e, P, B in (hw, dormant):
        base = [u for u in all_units(e.n_layers, e.n_heads) if u.layer < e.n_layers - 1]
        s = coax_scan(e, primaries=P, progress=False)
        cc = circuit_completion(e, None, P, base, {"CoAx": [u for u, _ in s.top(len(B))], "documented": B})
        assert cc.incompleteness["CoAx"] < 0.01 and cc.incompleteness["documented"] < 0.01
        assert cc.incompleteness["base"] > 0.5
        assert 0 < cc.incompleteness["matched random (n=8)"] < cc.incompleteness["base"]


@pytest.fixture(scope="module")
def pruned():
    model = load_model("organism:handwired")
    cal, ev = task_for("organism:handwired", 32, prompt_seed=1), task_for("organism:handwired", 48, prompt_seed=2)
    return model, cal, ev, prune(model, cal, ev, progress=False)


def test_repair_aware_pruning_is_never_worse_than_a_static_order_on_the_handwired_organism(pruned):
    model, _, ev, p = pruned
    ra = np.array(p.orders["repair_aware"]["loss"])
    intact = task_loss(ev, Engine(model, ev, progress=False).clean_logits()).mean().item()
    assert len(ra) == 13 and ra[0] == pytest.approx(intact, abs=1e-9)  # nothing pruned yet: the intact model
    for name, o in p.orders.items():
        assert len(o["loss"]) == len(ra) and o["loss"][0] == pytest.approx(ra[0]), name
        assert np.all(ra <= np.array(o["loss"]) + 1e-5), name  # float32 noise only
    # engine reuse: each step runs all candidates as batched variants; cost recorded per step
    first = p.steps[0]
    assert first["candidates"] == 12 and first["forward_passes"] > 0 and first["seconds"] > 0
    c = p.curves()
    assert c.log_y and len(c.series) == 7 and c.series[0]["x"][-1] == 1.0


def test_pruning_resumes_after_an_interrupt_with_identical_results(pruned, tmp_path):
    model, cal, ev, full = pruned
    ck = tmp_path / "prune.json"
    seen = []
    part = prune(model, cal, ev, orders=["repair_aware", "single"], checkpoint=ck, stop_after=4, progress=False,
                 on_step=lambda o, x, y: seen.append((o, x, y)))
    assert [round(x * 12) for o, x, _ in seen] == [1, 2, 3, 4]  # live points of the repair-aware run
    assert part.meta["stopped"] and len(part.orders["repair_aware"]["loss"]) == 5
    saved = json.loads(ck.read_text())
    assert saved["orders"]["repair_aware"]["removed"] == full.orders["repair_aware"]["removed"][:4]
    done = prune(model, cal, ev, orders=["repair_aware", "single"], checkpoint=ck, progress=False)
    assert not done.meta["stopped"]
    assert done.orders["repair_aware"] == full.orders["repair_aware"]
    assert done.orders["single"] == full.orders["single"]
    assert [s["step"] for s in done.steps] == list(range(1, 13))
    with pytest.raises(ValueError, match="other settings"):
        prune(model, cal, ev, orders=["repair_aware"], group_size=2, checkpoint=ck, progress=False)


def test_pruning_bad_input(pruned):
    model, cal, ev, _ = pruned
    with pytest.raises(ValueError, match="unknown pruning order"):
        prune(model, cal, ev, orders=["obs"], progress=False)
    with pytest.raises(ValueError, match="group_size"):
        prune(model, cal, ev, group_size=0, progress=False)


def test_induction_transfer_splits_and_numbers(toy, quiet):
    r = induction_transfer(toy, n_primaries=2, ks=[2], selectors=["comp", "single"], n_prompts=8, half_length=6,
                           n_random=3, estimate=False, progress=False)
    rec = r.models[0]
    P = r.primaries(rec["label"])
    assert len(P) == 2 and rec["ks"] == [2] and len(rec["random_drops"]["2"]) == 3
    comp = r.to_frame().set_index("selector").loc["comp"]
    added = comp["heads"].split()
    assert len(added) == 2 and not {str(u) for u in P} & set(added)
    # the evaluation split's numbers, recomputed by hand
    from coax_nb import Variant

    ev = Engine(toy, induction_task(toy, 8, 6, prompt_seed=2), progress=False)
    clean, both = [ev.task.metric(lg).mean().item()
                   for lg in ev.logits([Variant(), Variant.zero(P + ev.units(added))])]
    assert comp["drop"] == pytest.approx(clean - both, abs=1e-9)
    # the old single-k form still works, with a warning
    with pytest.warns(DeprecationWarning, match="now ks="):
        old = induction_transfer(toy, n_primaries=2, k=2, selectors=["comp", "single"], n_prompts=8, half_length=6,
                                 n_random=3, estimate=False, progress=False)
    assert old.rows == r.rows


def test_task_loss_is_the_cross_entropy_of_the_targets(hw):
    import torch

    _, e, _, _ = hw
    logits = e.clean_logits()
    ref = torch.stack([-torch.log_softmax(lg.double(), -1)[0, t[0]] for lg, t in zip(logits, e.task.targets)])
    assert torch.allclose(task_loss(e.task, logits), ref, atol=1e-12)
    ragged = [lg if i % 2 else torch.cat([lg, lg]) for i, lg in enumerate(logits)]  # forces the per-prompt path
    tg = [t if i % 2 else t + t for i, t in enumerate(e.task.targets)]
    e.task.targets, saved = tg, e.task.targets
    try:
        assert torch.allclose(task_loss(e.task, ragged), ref, atol=1e-12)
    finally:
        e.task.targets = saved
