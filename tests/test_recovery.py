"""The backup-recovery table on the hand-wired organism (exact ground truth)."""
import json

import numpy as np
import pytest

from coax_nb import evaluate, load_model, recovery
from coax_nb.organisms import task_for


@pytest.fixture(scope="module")
def handwired():
    return load_model("organism:handwired")


@pytest.fixture(scope="module")
def result(handwired):
    return recovery(handwired, lambda s: task_for("organism:handwired", 24, prompt_seed=s),
                    primaries=["L1H0", "L1H1"], truth=["L2H0", "L2H1"], prompt_seeds=[0, 1], ig_steps=4,
                    progress=False)


def test_recovery_orders_selectors_as_the_construction_says(result):
    # the dormant backups are invisible to every first-order score of the intact model ...
    for s in ("single", "atp", "atp_gd", "eap_ig"):
        assert result.auc(s) <= 0.6, s
    # ... and CoAx, conditional AtP and the two-state difference find them
    for s in ("comp", "ratio", "cond_atp", "delta_atp"):
        assert result.auc(s) == 1.0, s
        assert result.row(s)["p_at_k"] == 1.0
    assert result.auc("comp") - result.auc("single") >= 0.4


def test_recovery_rows_are_means_over_repeats_with_costs(result):
    assert len(result.scores) == 2 and result.meta["repeats"] == 2
    per = [evaluate(sc, ["L2H0", "L2H1"], by="single")["roc_auc"] for sc in result.scores]
    assert result.row("single")["roc_auc"] == pytest.approx(np.mean(per))
    assert result.row("single")["roc_auc_std"] == pytest.approx(np.std(per))
    atp, gd, ig = result.row("atp"), result.row("atp_gd"), result.row("eap_ig")
    assert atp["backward_passes"] == 2  # intact + primaries ablated
    assert gd["backward_passes"] == 2 * 3 and ig["backward_passes"] == 2 * 3 * 4
    assert result.row("comp")["backward_passes"] == 0 and result.row("comp")["forward_passes"] > 0
    assert all(r["seconds"] > 0 for r in result.rows)
    text = result.table()
    assert "AtP* GradDrop" in text and "±" in text


def test_recovery_json_and_plot(result, tmp_path):
    result.to_json(tmp_path / "r.json")
    d = json.loads((tmp_path / "r.json").read_text())
    assert [r["selector"] for r in d["rows"]] == [r["selector"] for r in result.rows]
    assert len(d["scores"]) == 2 and "cond_atp" in d["scores"][0]["scores"]
    fig = result.plot()
    assert len(fig.axes[0].patches) == len(result.rows)
    assert result.to_frame().shape[0] == len(result.rows)


def test_roc_curves_per_selector(result):
    """Each selector's ROC curve runs (0,0) -> (1,1), is monotone, and its area is the
    row's ROC-AUC (mean over repeats); ties move diagonally, so the area still matches."""
    from coax_nb.evaluate import roc_auc, roc_curve

    for r in result.rows:
        areas = []
        for i in range(len(result.scores)):
            fpr, tpr = result.roc(r["selector"], i)
            assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
            assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
            areas.append(np.trapezoid(tpr, fpr))
        assert np.mean(areas) == pytest.approx(r["roc_auc"], abs=1e-12), r["selector"]
    rng = np.random.default_rng(0)
    for _ in range(20):  # ties included: scores drawn from a handful of values
        s, lab = rng.integers(0, 4, 15).astype(float), rng.random(15) < 0.3
        lab[:2] = [True, False]
        assert np.trapezoid(*roc_curve(s, lab)[::-1]) == pytest.approx(roc_auc(s, lab))
    fig = result.plot_roc()
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert f"CoAx (conditional - single) (AUC {result.auc('comp'):.2f})" in labels and "chance" in labels
    with pytest.raises(KeyError, match="no selector 'magic'"):
        result.roc("magic")
    with pytest.raises(ValueError, match="repeat 5 is outside this result's 2 prompt set"):
        result.roc("comp", 5)


def test_recovery_bad_input(handwired):
    task = task_for("organism:handwired", 8)
    with pytest.raises(ValueError, match="primary set is empty"):
        recovery(handwired, task, [], ["L2H0"], progress=False)
    with pytest.raises(ValueError, match="also in the primary set"):
        recovery(handwired, task, ["L1H0", "L2H0"], ["L2H0"], progress=False)
    with pytest.raises(ValueError, match="ground-truth set is empty"):
        recovery(handwired, task, ["L1H0"], [], progress=False)
    with pytest.raises(ValueError, match="unknown selector"):
        recovery(handwired, task, ["L1H0"], ["L2H0"], selectors=["comp", "magic"], progress=False)
    with pytest.raises(ValueError, match="task builder"):
        recovery(handwired, task, ["L1H0"], ["L2H0"], prompt_seeds=[0, 1], progress=False)
    with pytest.raises(ValueError, match="outside the model"):
        recovery(handwired, task, ["L7H0"], ["L2H0"], progress=False)


def test_recovery_reuses_an_engine(handwired):
    from coax_nb import Engine

    task = task_for("organism:handwired", 16, prompt_seed=4)
    engine = Engine(handwired, task, progress=False)
    a = recovery(engine, None, ["L1H0", "L1H1"], ["L2H0", "L2H1"], selectors=["comp", "atp"], progress=False)
    b = recovery(handwired, task, ["L1H0", "L1H1"], ["L2H0", "L2H1"], selectors=["comp", "atp"], progress=False)
    assert [r["roc_auc"] for r in a.rows] == [r["roc_auc"] for r in b.rows]
    assert np.allclose(a.scores[0]["comp"], b.scores[0]["comp"], equal_nan=True)
    with pytest.raises(ValueError, match="task=None"):
        recovery(engine, task, ["L1H0"], ["L2H0"], progress=False)
