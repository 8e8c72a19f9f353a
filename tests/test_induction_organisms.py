"""The induction organisms (one per model family): they load through the verified paths,
their task builds from the card, and the card's ground truth -- induction attention
score for the primaries, the rise of direct logit attribution for the backups -- holds
when re-measured, on the card's prompts and on fresh ones. Retraining is not done here
(the suite retrains one organism at most, in test_organisms.py):
``python recipes/train_induction.py --check FAMILY`` does it outside the suite."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from coax_nb import Engine, load_model, organisms
from coax_nb.discover import discover_primaries

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _recipe():
    spec = importlib.util.spec_from_file_location("recipes_train_induction", RECIPES / "train_induction.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_induction = _recipe()
INDUCTION = organisms.names(kind="induction")


def flat(units, H):
    return [a * H + b for a, b in units]


def test_there_are_induction_organisms_of_three_families():
    families = {organisms.card(n)["architecture"]["family"] for n in INDUCTION}
    assert {"GPT-2", "GPT-NeoX", "Llama"} <= families, families
    assert any(organisms.card(n)["backups"] for n in INDUCTION)  # at least one self-repairs


@pytest.mark.parametrize("name", INDUCTION)
def test_card_settings_are_the_recipes(name):
    """``--check`` retrains from the recipe: it must be the recipe that made the card."""
    c = organisms.card(name)
    settings = c["training"]["settings"]
    assert train_induction.recipe(c["recipe"], settings["seed"]) == settings
    assert name == f"induction_{c['recipe']}"


def test_check_mode_names_what_differs():
    c = organisms.card("induction_gpt2")
    same = {**c["measured"], "primaries": c["primaries"][::-1]}  # order does not matter
    assert train_induction.compare(c, same) == []
    lp = dict(c["measured"]["log_prob"], primaries_ablated=c["measured"]["log_prob"]["primaries_ablated"] - 0.5)
    off = {**c["measured"], "accuracy": c["accuracy"] - 0.1, "backups": c["backups"][1:], "log_prob": lp}
    diffs = train_induction.compare(c, off)
    assert len(diffs) == 3, diffs
    assert diffs[0].startswith("accuracy") and diffs[1].startswith("backups")
    assert diffs[2].startswith("log_prob[primaries_ablated]")


@pytest.fixture(scope="module", params=INDUCTION)
def measured(request):
    name = request.param
    c = organisms.card(name)
    return name, c, train_induction.ground_truth(organisms.path(name))


def test_loads_through_load_model_and_engine(measured):
    name, c, _ = measured
    model = load_model(f"organism:{name}", device="cpu")
    task = organisms.task_for(name, 32, prompt_seed=7)  # prompts the card did not see
    assert task.name == "induction" and len(task.prompts[0]) == 1 + 2 * c["task"]["half_length"]
    assert task.info["primaries"] == [tuple(u) for u in c["primaries"]]
    eng = Engine(model, task, progress=False)
    assert eng.self_check["bridge_vs_hf"] is not None and eng.self_check["bridge_vs_hf"] < 1e-4, eng.self_check
    assert eng.n_layers == c["architecture"]["n_layers"] and eng.n_heads == c["architecture"]["n_heads"]
    assert task.accuracy(eng.clean_logits()) >= c["accuracy"] - 0.05


def test_card_ground_truth_is_re_measured(measured):
    name, c, gt = measured
    m = c["measured"]
    H = c["architecture"]["n_heads"]
    assert [list(u) for u in gt["primaries"]] == c["primaries"]
    assert [list(u) for u in gt["backups"]] == c["backups"]
    assert len(c["primaries"]) >= 2
    np.testing.assert_allclose(gt["induction_score"], m["induction_score"], atol=2e-3)
    np.testing.assert_allclose(gt["clean_dla"], m["clean_dla"], rtol=1e-3, atol=2e-3)
    ind = gt["induction_score"]
    prim = flat(c["primaries"], H)
    others = [i for i in range(len(ind)) if i not in prim]
    assert ind[prim].min() > ind[others].max()  # the primaries are the top induction heads
    assert ind[prim].min() > 0.3  # and real ones (uniform attention over 20 keys is ~0.05)
    assert (gt["clean_dla"][prim] > 0).all()  # each writes the correct next token directly
    thr = m["criterion"]["threshold_logits"]
    for i in flat(c["backups"], H):
        assert gt["rise"][i] > thr


def test_independent_induction_score_agrees_with_the_role_score(measured):
    """The card's score comes from the HF model's attention weights; coax_nb's role
    score reads the engine's patterns. They must agree."""
    name, c, gt = measured
    eng = gt["engine"]
    d = discover_primaries(eng, method="role", role="induction", k=len(c["primaries"]), progress=False)
    np.testing.assert_allclose(d.evidence["induction"], gt["induction_score"], atol=1e-4)
    assert sorted(map(tuple, d.primaries)) == sorted(map(tuple, c["primaries"]))


def test_ground_truth_holds_on_fresh_prompts(measured):
    name, c, _ = measured
    H = c["architecture"]["n_heads"]
    fresh = train_induction.ground_truth(organisms.path(name), prompt_seed=4242)
    ind = fresh["induction_score"]
    prim = flat(c["primaries"], H)
    assert ind[prim].min() > np.delete(ind, prim).max()
    for i in flat(c["backups"], H):
        assert fresh["rise"][i] > 0.5 * fresh["threshold_logits"]
    lp = fresh["metric"]
    if c["backups"]:  # the backups carry what is left of the behaviour once the primaries go
        assert lp["primaries_and_backups_ablated"][0] < lp["primaries_ablated"][0] - 0.2
