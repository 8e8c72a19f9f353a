"""Every result type follows one protocol: exact JSON round trip (heads as names, nested
results, NaN), a schema version, a frame, a figure and an HTML view."""
import math
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from coax_nb import Engine, inspect_head, load_model, results  # noqa: E402
from coax_nb.applications import (attribution_repair, circuit_completion, induction_transfer,  # noqa: E402
                                  knockout, prune)
from coax_nb.discover import discover_primaries  # noqa: E402
from coax_nb.organisms import task_for  # noqa: E402
from coax_nb.recover import recovery  # noqa: E402
from coax_nb.robustness import robustness  # noqa: E402
from coax_nb.scores import coax_scan, greedy_completion, synergy  # noqa: E402
from coax_nb.sensitivity import p_sensitivity  # noqa: E402
from coax_nb.tasks import ioi_counterfactual  # noqa: E402
from coax_nb.units import Unit, all_units  # noqa: E402
from coax_nb.validate import counterfactual_patching, dla_handoff, freezing, random_sets, wakeup  # noqa: E402

P = ["L1H0", "L1H1"]
B = ["L2H0", "L2H1"]


@pytest.fixture(scope="module")
def hw():
    model = load_model("organism:handwired")
    task = task_for("organism:handwired", 16)
    return model, task, Engine(model, task, progress=False)


@pytest.fixture(scope="module")
def built(hw, toy):
    """One real, cheaply computed instance of every result type."""
    model, task, e = hw
    scan = coax_scan(e, primaries=P, progress=False)
    wake = wakeup(e, None, P, B, n_random=2)
    cal, ev = task_for("organism:handwired", 8, prompt_seed=1), task_for("organism:handwired", 8, prompt_seed=2)
    out = {
        "UnitScores": scan,
        "PairScores": synergy(e, P + B, progress=False),
        "Completion": greedy_completion(e, P, 2, progress=False),
        "Curves": wake.curves["dla"],
        "RecoveryResult": recovery(e, None, P, B, selectors=["comp", "single", "atp"], ig_steps=2, progress=False),
        "WakeUp": wake,
        "HandOff": dla_handoff(e, None, P, B),
        "Freezing": freezing(e, None, P, B, n_random=2),
        "Patching": counterfactual_patching(model, task, ioi_counterfactual(model, task), P, B, n_random=2),
        "AttributionRepair": attribution_repair(e, None, P, B),
        # no unrelated text: the KL column is NaN, which JSON must carry as null and back
        "Knockout": knockout(e, None, P, {"CoAx": [u for u, _ in scan.top(2)]}, B, n_random=2),
        "CircuitCompletion": circuit_completion(e, None, P, [u for u in all_units(3, 4) if u.layer < 2],
                                                {"documented": B}, n_random=2),
        "Pruning": prune(model, cal, ev, orders=["repair_aware", "single"], max_fraction=0.25, progress=False),
        "InductionTransfer": induction_transfer(toy, n_primaries=2, ks=[1], selectors=["comp", "single"], n_prompts=4,
                                                half_length=4, n_random=2, estimate=False, progress=False),
        "Discovery": discover_primaries(e, method="role", k=2, progress=False),
        "Sensitivity": p_sensitivity(e, methods=["atp"], ks=[1, 2], sets={"card": P}, truth=B, progress=False),
        "Robustness": robustness(e, None, P, B, selectors=["comp", "single"], n_boot=10, sizes=[4, 8], draws=2,
                                 feature_modes=["l2_centered"], held_out={"seed 3": task_for("handwired", 8, 3)},
                                 progress=False),
        "HeadInspection": inspect_head(e, B[0], P, prompt=1, scores=scan),
    }
    assert set(out) == {n for n in results._TYPES}, "a result type is missing from this test"
    return out


TYPES = ["UnitScores", "PairScores", "Completion", "Curves", "RecoveryResult", "WakeUp", "HandOff", "Freezing",
         "Patching", "AttributionRepair", "Knockout", "CircuitCompletion", "Pruning", "InductionTransfer", "Discovery",
         "Sensitivity", "Robustness", "HeadInspection"]


@pytest.mark.parametrize("kind", TYPES)
def test_json_round_trip_is_exact(built, kind, tmp_path):
    r = built[kind]
    assert type(r).__name__ == kind
    back = type(r).from_json(r.to_json())
    assert type(back) is type(r) and back.to_dict() == r.to_dict()
    path = tmp_path / "r.json"
    r.to_json(path)
    loaded = results.load(path)
    assert type(loaded) is type(r) and loaded.to_dict() == r.to_dict()
    d = r.to_dict()
    assert d["type"] == kind and d["schema_version"] == results.SCHEMA_VERSION
    d["schema_version"] = results.SCHEMA_VERSION + 1
    with pytest.raises(ValueError, match="newer coax-nb"):
        results.Result.from_dict(d)


@pytest.mark.parametrize("kind", TYPES)
def test_frame_plot_and_html(built, kind):
    r = built[kind]
    frame = r.to_frame()
    assert isinstance(frame, pd.DataFrame) and len(frame) > 0
    fig = r.plot()
    assert isinstance(fig, Figure) and fig.axes
    plt.close(fig)
    html = r._repr_html_()
    assert isinstance(html, str) and kind in html


def test_heads_come_back_as_units_and_nan_as_nan(built):
    for kind in ("WakeUp", "HandOff", "Freezing", "Patching"):
        back = results.load(built[kind].to_json())
        assert back.primaries == [Unit(1, 0), Unit(1, 1)] and back.selected == [Unit(2, 0), Unit(2, 1)]
    rec = results.load(built["RecoveryResult"].to_json())
    assert rec.truth == [Unit(2, 0), Unit(2, 1)] and rec.auc("comp") == 1.0
    assert isinstance(rec.scores[0], results.UnitScores) and rec.scores[0].primaries == rec.primaries
    ko = results.load(built["Knockout"].to_json())
    assert math.isnan(ko.row("CoAx", 2)["kl_unrelated"]) and ko.oracle == [Unit(2, 0), Unit(2, 1)]
    assert ko.row("CoAx", 2)["distance_to_oracle"] == built["Knockout"].row("CoAx", 2)["distance_to_oracle"]
    assert isinstance(results.load(built["WakeUp"].to_json()).curves["dla"], results.Curves)


def test_a_result_is_refused_as_another_type(built):
    with pytest.raises(ValueError, match="holds a Freezing, not a Patching"):
        results.Patching.from_json(built["Freezing"].to_json())
    with pytest.raises(ValueError, match="not a coax-nb result"):
        results.load('{"type": "Nothing"}')


def test_old_keywords_still_work_with_a_warning(hw, built):
    model, task, e = hw
    with pytest.warns(DeprecationWarning, match="primaries"):
        r = recovery(e, None, seed=P, truth=B, selectors=["comp"], progress=False)
    assert r.auc("comp") == 1.0
    with pytest.warns(DeprecationWarning, match="renamed primaries"):
        assert r.seed == r.primaries
    with pytest.warns(DeprecationWarning, match="rng_seed"):
        assert random_sets(e, e.units(P), 2, 3, seed=5) == random_sets(e, e.units(P), 2, 3, rng_seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = prune(model, task, task, orders=["co_ablation"], seed=P, max_fraction=0.1, progress=False)
    assert p.primaries == [Unit(1, 0), Unit(1, 1)]
