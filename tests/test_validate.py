"""Causal validation on the hand-wired organism must match its construction exactly."""
import numpy as np
import pytest

from coax_nb import Engine, Variant, load_model
from coax_nb.organisms import task_for
from coax_nb.tasks import ioi_counterfactual
from coax_nb.units import all_units
from coax_nb.validate import counterfactual_patching, dla_handoff, freezing, random_sets, wakeup

P = ["L1H0", "L1H1"]
B = ["L2H0", "L2H1"]


@pytest.fixture(scope="module")
def hw():
    model = load_model("organism:handwired")
    task = task_for("organism:handwired", 24, prompt_seed=3)
    return model, task, Engine(model, task, progress=False)


def test_each_backup_wakes_only_when_its_own_primary_goes(hw):
    _, _, engine = hw
    for backup, expect in (("L2H0", [0.0, 1.0, 1.0]), ("L2H1", [0.0, 0.0, 1.0])):
        w = wakeup(engine, None, P, [backup], order=["L1H0", "L1H1"], n_random=4)
        dla = np.array(w.curves["dla"].series[0]["y"])
        assert np.allclose(dla / dla.max(), expect, atol=1e-3), backup
        effect = np.array(w.curves["effect"].series[0]["y"])
        assert np.allclose(effect / effect.max(), expect, atol=1e-3)
        assert w.curves["norm"].series[0]["y"][0] < 0.02 * max(w.curves["norm"].series[0]["y"])
    # random heads do not respond to the primaries at all
    w = wakeup(engine, None, P, B, n_random=6, n_orders=2)
    for signal in ("norm", "effect", "dla"):
        m = w.margins[signal]
        assert abs(m["random_rise_max"]) < 1e-3 * abs(m["selected_rise"]) + 1e-6, signal
        assert m["margin"] > 0
    assert len(w.meta["orders"]) == 2
    assert len(w.plot().axes) == 3


def test_dla_hands_off_from_primaries_to_backups(hw):
    _, _, engine = hw
    h = dla_handoff(engine, None, P, B).table
    assert h["selected"]["intact"] == pytest.approx(0, abs=1e-3)
    assert h["primaries"]["primaries ablated"] == 0.0
    assert h["selected"]["primaries ablated"] == pytest.approx(h["primaries"]["intact"], rel=1e-3)
    assert h["rest"]["intact"] == pytest.approx(h["rest"]["primaries ablated"], rel=1e-3)


def test_freezing_backups_removes_all_repair_random_none(hw):
    _, _, engine = hw
    f = freezing(engine, None, P, B, n_random=10)
    assert f.removed == pytest.approx(1.0, abs=1e-3)
    assert max(abs(r) for r in f.random_removed) < 1e-3
    assert f.metric["self_repair"] > 3  # the backups restore about 3.5 logits
    # freezing a head at its own clean output in the intact model changes nothing
    clean = engine.task.metric(engine.clean_logits())
    frozen = engine.task.metric(engine.logits([Variant.freeze(engine.units(B + ["L0H2", "L1H2"]))])[0])
    assert np.allclose(clean.numpy(), frozen.numpy(), atol=1e-5)


def test_counterfactual_patching_moves_the_backups_share_of_the_answer(hw):
    model, task, engine = hw
    cf = ioi_counterfactual(model, task, rng_seed=1)
    assert all(len(a) == len(b) for a, b in zip(cf.prompts, task.prompts))
    assert all(t != c for t, c in zip(task.targets, cf.targets))
    p = counterfactual_patching(model, task, cf, P, B, n_random=8)
    # primaries ablated, the backups carry 3.5 of the 5.0 logits, the co-firing head 1.2 the rest
    share = dla_handoff(engine, None, P, B).table
    expect = share["selected"]["primaries ablated"] / (share["selected"]["primaries ablated"]
                                                       + share["rest"]["primaries ablated"])
    assert p.moved == pytest.approx(expect, abs=0.01)
    sets = random_sets(engine, engine.units(P + B), 2, 8, 0)  # the draws counterfactual_patching made
    for r, moved in zip(sets, p.random_moved):
        if engine.units(["L1H2"])[0] not in r:
            assert abs(moved) < 1e-3


def test_validation_bad_input(hw):
    model, task, engine = hw
    with pytest.raises(ValueError, match="primary set is empty"):
        freezing(engine, None, [], B)
    with pytest.raises(ValueError, match="selected set is empty"):
        wakeup(engine, None, P, [])
    with pytest.raises(ValueError, match="both primaries and selected"):
        dla_handoff(engine, None, P, ["L1H0"])
    with pytest.raises(ValueError, match="order must list exactly"):
        wakeup(engine, None, P, B, order=["L1H0"])
    with pytest.raises(ValueError, match="cannot draw random sets"):
        freezing(engine, None, P, [u for u in all_units(3, 4) if str(u) not in P][:9])
    with pytest.raises(ValueError, match="no self-repair"):
        freezing(engine, None, ["L0H1"], ["L2H0"])


def test_trained_organism_selected_heads_beat_random_sets():
    """ioi_dormant: CoAx's top heads (given the DLA primaries) against 10 size-matched
    random sets, on prompts not used for the ground truth."""
    from coax_nb import coax_scan, organisms

    model = load_model("organism:ioi_dormant")
    task = task_for("organism:ioi_dormant", 48, prompt_seed=7)
    engine = Engine(model, task, progress=False)
    P = [tuple(x) for x in organisms.card("ioi_dormant")["primaries"]]
    X = [u for u, _ in coax_scan(engine, primaries=P, progress=False).top(3)]
    w = wakeup(engine, None, P, X, n_random=10, n_orders=2)
    for signal in ("norm", "effect", "dla"):
        m = w.margins[signal]
        assert m["selected_rise"] > m["random_rise_max"] and m["margin"] > 1.0, (signal, m)
    f = freezing(engine, None, P, X, n_random=10)
    assert f.removed > 0.9 and max(f.random_removed) < 0.1, (f.removed, f.random_removed)
    # interchange patching with a new indirect object does NOT move these backups' answer:
    # they suppress the repeated name rather than copy the answer (docs/validation.md)
    p = counterfactual_patching(model, task, ioi_counterfactual(model, task, rng_seed=1), P, X, n_random=10)
    assert abs(p.moved) < 0.05 and np.mean(p.random_moved) > 0.2
