"""The cross-model induction completion panel: its primaries are the organisms' documented
induction heads, its drops equal a plain Hugging Face hook computation, its controls are
what they claim (size-matched random, the next heads by induction score), the family
macro averages families after their members, and long panels checkpoint and resume."""
import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from coax_nb import (InductionTransfer, estimate_induction_transfer, induction_task, induction_transfer, load, load_model,
                     organisms)
from coax_nb.applications import induction as panel_module
from coax_nb.cli import main

INDUCTION = organisms.names(kind="induction")
SETTINGS = dict(ks=[1, 2, 4], n_prompts=12, n_random=3, estimate=False, progress=False)


@pytest.fixture(scope="module")
def panel():
    return induction_transfer([f"organism:{n}" for n in INDUCTION], **SETTINGS)


def hf_model(name):
    m = AutoModelForCausalLM.from_pretrained(str(organisms.path(name)), attn_implementation="eager").eval()
    return m.double()


def head_outputs_module(model, layer):
    """The projection that reads the concatenated heads of ``layer`` (GPT-NeoX, Llama, GPT-2)."""
    arch = type(model).__name__
    if arch.startswith("GPTNeoX"):
        return model.gpt_neox.layers[layer].attention.dense
    if arch.startswith("GPT2"):
        return model.transformer.h[layer].attn.c_proj
    return model.model.layers[layer].self_attn.o_proj


def hf_log_prob(model, prompts, half_length, zero=()):
    """Mean log-prob of the second copy's predictable tokens with ``zero`` heads' outputs
    zeroed before the output projection: plain forward pre-hooks, nothing from coax_nb."""
    H = model.config.num_attention_heads
    d_head = model.config.hidden_size // H
    hooks = []
    for layer in sorted({u[0] for u in zero}):
        heads = [h for lay, h in zero if lay == layer]

        def pre(module, args, heads=heads):
            x = args[0].clone()
            for h in heads:
                x[..., h * d_head:(h + 1) * d_head] = 0
            return (x,) + args[1:]
        hooks.append(head_outputs_module(model, layer).register_forward_pre_hook(pre))
    try:
        with torch.no_grad():
            ids = torch.tensor(prompts)
            lp = torch.log_softmax(model(ids).logits.double(), -1)
    finally:
        for h in hooks:
            h.remove()
    T = ids.shape[1]
    start = T - half_length  # first position of the second copy; its first token is not predictable
    pos = torch.arange(start, T - 1)
    return lp[:, pos].gather(2, ids[:, pos + 1][..., None]).squeeze(2).mean(1).mean().item()


def hf_induction_scores(model, prompts, half_length):
    """Mean attention from each second-copy position to the token after its first occurrence."""
    with torch.no_grad():
        att = model(torch.tensor(prompts), output_attentions=True).attentions  # L x [n, H, T, T]
    T = len(prompts[0])
    q = torch.arange(T - half_length, T)
    k = q - half_length + 1
    return torch.stack([a[:, :, q, k].mean((0, 2)) for a in att]).flatten().numpy()


def heads(text):
    return [tuple(int(x) for x in h[1:].split("H")) for h in text.split()] if text else []


def test_primaries_are_the_documented_induction_heads(panel):
    for name in INDUCTION:
        rec = panel.model(name)
        assert sorted(heads(" ".join(rec["primaries"]))) == sorted(map(tuple, organisms.card(name)["primaries"]))
        assert rec["family"] == organisms.card(name)["architecture"]["family"]
    assert len({m["family"] for m in panel.models}) == len(INDUCTION)


def test_drops_equal_a_plain_hf_hook_computation(panel):
    """Every head set the panel ablated on the evaluation split, re-run through the HF
    model with forward pre-hooks in float64: the same drop to 1e-4 nats."""
    for name in INDUCTION:
        rec = panel.model(name)
        model = hf_model(name)
        ev = induction_task(load_ready_tokenizer(name), SETTINGS["n_prompts"], 10, prompt_seed=2)
        clean = hf_log_prob(model, ev.prompts, 10)
        assert rec["clean_metric"] == pytest.approx(clean, abs=1e-4), name
        P = heads(" ".join(rec["primaries"]))
        assert rec["primary_drop"] == pytest.approx(clean - hf_log_prob(model, ev.prompts, 10, P), abs=1e-4)
        rows = [r for r in panel.rows if r["model"] == name and r["selector"] in ("comp", "atp", "+own")]
        for r in rows:
            want = clean - hf_log_prob(model, ev.prompts, 10, P + heads(r["heads"]))
            assert r["drop"] == pytest.approx(want, abs=1e-4), (name, r["selector"], r["k"])
        for k in rec["ks"]:
            for draw, d in zip(rec["random_sets"][str(k)], rec["random_drops"][str(k)]):
                assert d == pytest.approx(clean - hf_log_prob(model, ev.prompts, 10, P + heads(" ".join(draw))),
                                          abs=1e-4)


def load_ready_tokenizer(name):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(organisms.path(name)))


def test_controls_are_what_they_claim(panel):
    for rec in panel.models:
        name, H = rec["label"], rec["n_heads"]
        P = set(rec["primaries"])
        model = hf_model(name)
        det = induction_task(load_ready_tokenizer(name), SETTINGS["n_prompts"], 10, prompt_seed=0)
        score = hf_induction_scores(model, det.prompts, 10)
        np.testing.assert_allclose(rec["induction_score"], score, atol=1e-4)
        # +own: the heads outside P, by induction score
        own = [f"L{i // H}H{i % H}" for i in np.argsort(-score, kind="stable") if f"L{i // H}H{i % H}" not in P]
        assert rec["own_order"] == own
        assert rec["ks"] == [k for k in SETTINGS["ks"] if k <= (rec["n_layers"] * H - len(P)) // 2]
        for r in (r for r in panel.rows if r["model"] == name):
            added = r["heads"].split()
            assert not P & set(added) and len(set(added)) == len(added)
            if r["selector"] == "random":
                draws = rec["random_sets"][str(r["k"])]
                assert len(draws) == SETTINGS["n_random"] and all(len(d) == r["k"] and not P & set(d) for d in draws)
                assert r["drop"] == pytest.approx(np.mean(rec["random_drops"][str(r["k"])]))
            else:
                assert len(added) == r["k"]
                if r["selector"] == "+own":
                    assert added == own[:r["k"]]
                else:
                    assert added == rec["rankings"][r["selector"]][:r["k"]]
            backups = {f"L{a}H{b}" for a, b in organisms.card(name)["backups"]}
            assert r["truth_hits"] == (None if r["selector"] == "random" else len(backups & set(added)))
            assert r["over_random"] == pytest.approx(r["drop"] - r["random_drop"])
            assert r["over_own"] == pytest.approx(r["drop"] - r["own_drop"])
            assert r["over_primary_only"] == pytest.approx(r["drop"] - rec["primary_drop"])


def test_splits_are_disjoint_and_seeded(panel):
    tok = load_ready_tokenizer(INDUCTION[0])
    s = [set(map(tuple, induction_task(tok, SETTINGS["n_prompts"], 10, prompt_seed=i).prompts)) for i in range(3)]
    assert not (s[0] & s[2]) and not (s[1] & s[2])
    assert panel.meta["splits"] == {"detect": 0, "calibrate": 1, "evaluate": 2}


def test_family_macro_averages_members_first():
    """Two GPT-NeoX members and one Llama: the macro is mean(mean(neox), llama), not the
    mean over the three models."""
    def rows(model, family, value):
        return [{"model": model, "family": family, "k": k, "selector": s, "heads": "", "drop": value,
                 "random_drop": 0.0, "random_sd": 0.0, "own_drop": 0.0, "primary_drop": 0.0,
                 "over_random": value * k, "over_own": value, "over_primary_only": value}
                for k in (1, 2) for s in ("comp", "single")]
    r = InductionTransfer([{"label": m, "family": f, "ks": [1, 2], "primaries": []}
                           for m, f in (("a", "GPT-NeoX"), ("b", "GPT-NeoX"), ("c", "Llama"))],
                          rows("a", "GPT-NeoX", 1.0) + rows("b", "GPT-NeoX", 3.0) + rows("c", "Llama", 10.0),
                          {"selectors": ["comp", "single"]})
    mac = r.macro("over_random")
    assert mac.loc["comp", 1] == pytest.approx((2.0 + 10.0) / 2)  # not (1 + 3 + 10) / 3
    assert mac.loc["comp", 2] == pytest.approx((4.0 + 20.0) / 2)
    assert mac.loc["comp", "mean"] == pytest.approx((3.0 + 15.0) / 2)
    assert r.by_family("over_own").loc["single", "GPT-NeoX"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="unknown measure 'auc'"):
        r.macro("auc")


def test_json_round_trip_table_and_figure(panel, tmp_path):
    back = load(panel.to_json(tmp_path / "p.json"))
    assert back.rows == json.loads(panel.to_json())["rows"] and back.labels == panel.labels
    assert np.allclose(back.macro().to_numpy(float), panel.macro().to_numpy(float), equal_nan=True)
    text = panel.table()
    assert all(name in text for name in INDUCTION) and "family macro" in text
    fig = panel.plot()
    assert len([a for a in fig.axes if a.has_data()]) == len(INDUCTION) + 3  # + macro over random, over +own, backups
    # a file written before the panel (one model, one k) still loads
    old = {"type": "InductionTransfer", "schema_version": 1, "primaries": ["L1H0", "L1H1"], "completion": ["L2H0"],
           "effect": 2.0, "primaries_effect": 0.5, "random_effects": [1.0, 1.5], "meta": {"ablation": "zero"}}
    legacy = load(json.dumps(old))
    row = legacy.to_frame().set_index("selector").loc["comp"]
    assert row["drop"] == 2.0 and row["over_random"] == pytest.approx(0.75) and row["over_primary_only"] == 1.5


def test_checkpoint_resumes_without_recomputing(tmp_path, monkeypatch):
    path = tmp_path / "ck.json"
    small = dict(SETTINGS, ks=[1], selectors=["comp", "single"], n_prompts=6, n_random=2)
    models = [f"organism:{n}" for n in INDUCTION[:2]]
    calls = []
    real = panel_module._one_model

    def counting(model, label, *a, **kw):
        calls.append(label)
        if len(calls) == 2:
            raise KeyboardInterrupt  # interrupted while the second model runs
        return real(model, label, *a, **kw)
    monkeypatch.setattr(panel_module, "_one_model", counting)
    with pytest.raises(KeyboardInterrupt):
        induction_transfer(models, checkpoint=path, **small)
    assert list(json.loads(path.read_text())["models"]) == [INDUCTION[0]]  # the first model's work is kept
    monkeypatch.setattr(panel_module, "_one_model", real)
    calls.clear()
    monkeypatch.setattr(panel_module, "_one_model", lambda model, label, *a, **kw: calls.append(label) or
                        real(model, label, *a, **kw))
    resumed = induction_transfer(models, checkpoint=path, **small)
    assert calls == [INDUCTION[1]] and resumed.labels == INDUCTION[:2]
    fresh = induction_transfer(models, **small)
    assert [r["drop"] for r in resumed.rows] == pytest.approx([r["drop"] for r in fresh.rows], abs=1e-9)
    with pytest.raises(ValueError, match=r"other settings \(n_random: 2 in the checkpoint, 3 now\)"):
        induction_transfer(models, checkpoint=path, **dict(small, n_random=3))
    # the same label naming another model is refused, not resumed with the old model's numbers
    swapped = {INDUCTION[0]: f"organism:{INDUCTION[1]}", INDUCTION[1]: f"organism:{INDUCTION[1]}"}
    with pytest.raises(ValueError, match=rf"'{INDUCTION[0]}' is not the model the checkpoint measured "
                                         rf"\(files_sha256: .* spec: 'organism:{INDUCTION[0]}' in the checkpoint, "
                                         rf"'organism:{INDUCTION[1]}' now\)"):
        induction_transfer(swapped, checkpoint=path, **small)


def test_checkpoint_refuses_a_loaded_model_edited_in_place(tmp_path):
    path = tmp_path / "ck.json"
    small = dict(SETTINGS, ks=[1], selectors=["comp"], n_prompts=6, n_random=2)
    model = load_model(f"organism:{INDUCTION[0]}")
    induction_transfer({"mine": model}, checkpoint=path, **small)
    assert induction_transfer({"mine": model}, checkpoint=path, **small).labels == ["mine"]  # same weights: resumes
    weight = next(p for p in model.parameters() if p.dim() == 2)  # any weight: the fingerprint must notice
    with torch.no_grad():
        weight.mul_(0.5)
    with pytest.raises(ValueError, match=r"'mine' is not the model the checkpoint measured \(weights: "):
        induction_transfer({"mine": model}, checkpoint=path, **small)


def test_estimate_matches_the_work_done(panel, capsys):
    est = estimate_induction_transfer([f"organism:{n}" for n in INDUCTION], ks=SETTINGS["ks"],
                                      n_prompts=SETTINGS["n_prompts"], n_random=SETTINGS["n_random"], device="cpu")
    printed = capsys.readouterr().out
    for e in est:
        assert e["known"] and f"{e['model']}: " in printed and "GiB" in printed
        rec = panel.model(e["model"])
        assert e["parameters"] == pytest.approx(sum(p.numel() for p in hf_model(e["model"]).parameters()), rel=0.35)
        # counted forward passes (detection, calibration scan, evaluation) against the estimate
        assert 0.5 < e["forward_passes"] / rec["forward_passes"] < 2.0, (e["forward_passes"], rec["forward_passes"])
    offline = estimate_induction_transfer(["no-such-org/no-such-model"], say=None)
    assert offline == [{"model": "no-such-org/no-such-model", "known": False}]


def test_cli_writes_table_json_and_figure(tmp_path, capsys):
    out = tmp_path / "panel"
    rc = main(["induction", f"organism:{INDUCTION[0]}", "--ks", "1", "--selectors", "comp", "single",
               "--prompts", "6", "--random", "2", "--out", str(out), "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "family macro" in text and (out / "induction.png").stat().st_size > 10_000
    r = load(out / "induction.json")
    assert r.labels == [INDUCTION[0]] and not (out / "checkpoint.json").exists()
    assert (out / "induction.txt").read_text().strip() == r.table().strip()


def test_one_model_loaded_or_by_name_gives_the_same_panel(panel):
    from coax_nb import load_model

    m = load_model(f"organism:{INDUCTION[0]}")
    r = induction_transfer({INDUCTION[0]: m}, families={INDUCTION[0]: "mine"}, **SETTINGS)
    assert r.models[0]["family"] == "mine"
    mine = [x["drop"] for x in r.rows]
    theirs = [x["drop"] for x in panel.rows if x["model"] == INDUCTION[0]]
    assert mine == pytest.approx(theirs, abs=1e-6)


def test_a_local_folder_runs_like_a_hub_model(toy_dir, capsys):
    """A model given by path (as a hub name would be): its config gives the estimate
    printed before anything loads, and its family is read off the architecture class."""
    r = induction_transfer([str(toy_dir)], n_primaries=2, ks=[1], selectors=["comp"], n_prompts=6, n_random=2,
                           half_length=6, progress=False)
    printed = capsys.readouterr().out
    assert printed.startswith(f"{str(toy_dir).rstrip('/')}: ") and "parameters, 12 heads" in printed
    assert r.models[0]["family"] == "GPT-2" and r.models[0]["label"] == str(toy_dir)


@pytest.mark.slow
@pytest.mark.parametrize("name", INDUCTION)
def test_report_runs_on_the_induction_organisms(name, tmp_path):
    """`coax-nb report --model organism:NAME --task induction`: the card's primaries and
    backups, the induction task's prompts, every section present."""
    import logging

    from coax_nb.report import execute_report

    logging.getLogger("papermill").setLevel(logging.CRITICAL)
    art = execute_report(f"organism:{name}", "induction", tmp_path / "r", n_prompts=16, robustness=False)
    card = organisms.card(name)
    assert art["meta"]["task"] == "induction" and art["meta"]["primaries_source"] == "organism card"
    assert sorted(heads(" ".join(art["meta"]["primaries"]))) == sorted(map(tuple, card["primaries"]))
    assert sorted(heads(" ".join(art["meta"]["truth"]))) == sorted(map(tuple, card["backups"]))
    ratio = next(r for r in art["recovery"]["rows"] if r["selector"] == "ratio")
    # the amplification ratio ranks every family's backups first or nearly (docs/organisms.md: 0.93 to 1.00);
    # one more misordered pair allowed, as another CPU's float order may swap two close heads
    assert ratio["roc_auc"] >= 0.85
    html = (tmp_path / "r" / "report.html").read_text()
    assert "organism:" + name in html and "<img" in html
