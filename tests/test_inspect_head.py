"""The head inspector: its attention pattern is the HF model's own, its per-position DLA
averages to head_dla, its wake-up trace rises for a dormant backup, and HeadMap opens it
for a selected head."""
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from coax_nb import Engine, HeadInspection, Variant, head_dla, inspect_head, load, load_model, organisms
from coax_nb.dla import head_dla_at
from coax_nb.organisms import task_for
from coax_nb.widgets import HeadMap

P, B = ["L1H0", "L1H1"], ["L2H0", "L2H1"]


@pytest.fixture(scope="module")
def engine():
    return Engine(load_model("organism:handwired"), task_for("handwired", 8), progress=False)


def test_attention_is_the_hf_models_own(engine):
    insp = inspect_head(engine, "L2H0", P, prompt=3)
    hf = AutoModelForCausalLM.from_pretrained(str(organisms.path("handwired")), attn_implementation="eager").eval()
    with torch.no_grad():
        att = hf(torch.tensor([engine.task.prompts[3]]), output_attentions=True).attentions[2][0, 0]
    np.testing.assert_allclose(np.asarray(insp.attention), att.numpy(), atol=1e-5)
    assert len(insp.tokens) == len(engine.task.prompts[3]) and insp.prompt == 3


def test_dla_per_position_averages_to_head_dla(engine):
    per, weights = [], []
    for p in range(engine.n_prompts):
        v, w = head_dla_at(engine, p, Variant.zero(engine.units(P)))
        per.append((v * w[:, None]).sum(0))
        weights.append(w.sum())
    np.testing.assert_allclose(np.sum(per, 0) / np.sum(weights), head_dla(engine, Variant.zero(engine.units(P))),
                               atol=1e-9)


def test_wakeup_trace_of_a_dormant_backup(engine):
    insp = inspect_head(engine, "L2H0", P)
    assert insp.trace["n_ablated"] == [0, 1, 2]
    i = engine.units(["L2H0"])[0].flat(engine.n_heads)
    assert insp.trace["dla"][0] == pytest.approx(head_dla(engine)[i], abs=1e-9)
    assert insp.trace["dla"][-1] == pytest.approx(head_dla(engine, Variant.zero(engine.units(P)))[i], abs=1e-9)
    assert insp.trace["dla"][-1] > insp.trace["dla"][0] + 1.0  # silent, then writes the answer
    assert insp.trace["norm"][-1] > insp.trace["norm"][0]
    counted = np.asarray(insp.dla["counted"]) > 0
    assert np.asarray(insp.dla["primaries ablated"])[counted].mean() > np.asarray(insp.dla["clean"])[counted].mean()
    back = load(insp.to_json())
    assert isinstance(back, HeadInspection) and back.trace == insp.trace and str(back.head) == "L2H0"
    fig = insp.plot()
    titles = " ".join(a.get_title() for a in fig.axes)
    assert "attention on prompt 0" in titles and "DLA per position" in titles and "wake-up" in titles


def test_headmap_opens_the_inspector_for_a_selected_head(engine):
    hm = HeadMap.live(engine, primaries=P, truth=B)
    hm.selected = ["L2H1"]
    insp = hm.inspect()
    assert str(insp.head) == "L2H1" and insp.primaries == P
    assert insp.scores["comp"] == pytest.approx(hm.result["comp"][engine.units(["L2H1"])[0].flat(engine.n_heads)])
    assert hm.inspector() is not None
    with pytest.raises(ValueError, match="no engine to inspect heads with"):
        HeadMap(hm.result).inspect("L2H0")


@pytest.mark.parametrize("call, exc, msg", [
    (lambda e: inspect_head(e, "L1H0", P), ValueError, "L1H0 is one of the primaries"),
    (lambda e: inspect_head(e, ["L2H0", "L2H1"], P), ValueError, "inspect one head at a time, got 2"),
    (lambda e: inspect_head(e, "L2H0", P, prompt=99), ValueError, r"prompt must be an index 0\.\.7"),
    (lambda e: inspect_head(e, "L9H9", P), ValueError, "L9H9"),
    (lambda e: inspect_head(e.model, "L2H0", P), TypeError, "inspect_head takes an Engine"),
])
def test_bad_input(engine, call, exc, msg):
    with pytest.raises(exc, match=msg):
        call(engine)
