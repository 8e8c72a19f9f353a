"""Ablation types (zero / mean / resample) and effect metrics (Fisher / KL / task) against
an independent plain Hugging Face float64 computation, on more than one family (the
matrix's models: tests/test_families.py builds them)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from coax_nb import Engine, Term, Variant, coax_scan, load_model, single_scan, synergy
from coax_nb import metrics as M
from coax_nb.tasks import Task, custom_task, induction_task, ioi_task
from coax_nb.toy import word_tokenizer, ioi_vocabulary
from test_families import D, H, L, PlainHF, family_model

FAMILIES = ("gpt2", "llama", "gpt_neox")
PRIMARY = (0, 0)


def engine_with_corrupted(name):
    """The family's model over its matrix task plus a paired corrupted prompt set."""
    folder, _, _, e, _ = family_model(name)
    g = torch.Generator().manual_seed(5)
    prompts = e.task.prompts
    corrupted = [[p[0]] + torch.randint(2, e.d_vocab, (len(p) - 1,), generator=g).tolist() for p in prompts]
    task = Task(name, prompts, targets=e.task.targets, distractors=e.task.distractors, corrupted=corrupted)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Engine(load_model(folder, device="cpu", dtype="fp64"), task, progress=False)


def hf_removals(hf, ablation, corrupted):
    """Per head, the plain-HF edit that removes it under ``ablation``."""
    _, clean_in = hf.run(capture=True)
    _, corrupt_in = hf.run(tokens=torch.tensor(corrupted), capture=True)
    dh = hf.dh

    def edit(layer, head):
        s = slice(head * dh, (head + 1) * dh)
        if ablation == "zero":
            return (layer, head, lambda x: 0.0)
        if ablation == "mean":
            m = clean_in[layer][..., s].reshape(-1, dh).mean(0)
            return (layer, head, lambda x: m.expand_as(x))
        return (layer, head, lambda x: corrupt_in[layer][..., s])
    return edit


def hf_effect(effect, task, z_ref, z, p0):
    if effect == "fisher":
        return M.sq_norm(M.features(z_ref, z, p0)).mean().item()
    if effect == "kl":
        return M.kl_divergence(z_ref, z).mean().item()
    rows = torch.arange(len(z))
    tgt = torch.tensor([t[0] for t in task.targets])
    dis = torch.tensor([d[0] for d in task.distractors])
    diff = lambda zz: zz[rows, tgt] - zz[rows, dis]  # noqa: E731
    return (diff(z_ref) - diff(z)).mean().item()


FAST = {("gpt2", "zero", "fisher"), ("llama", "resample", "kl"), ("gpt_neox", "mean", "task"),
        ("llama", "mean", "fisher"), ("gpt2", "resample", "task")}
CASES = [pytest.param(n, a, f, marks=() if (n, a, f) in FAST else pytest.mark.slow)  # the full product: slow tier
         for n in FAMILIES for a in ("zero", "mean", "resample") for f in ("fisher", "kl", "task")]


@pytest.mark.parametrize("name, ablation, effect", CASES)
def test_scan_equals_plain_hf(name, ablation, effect):
    e = engine_with_corrupted(name)
    hf = PlainHF(name)
    remove = hf_removals(hf, ablation, e.task.corrupted)
    s = coax_scan(e, primaries=[PRIMARY], ablation=ablation, effect=effect, progress=False)
    assert s.meta["ablation"] == ablation and s.meta["effect"] == effect
    z0 = hf.run()
    zS = hf.run([remove(*PRIMARY)])
    p0 = torch.softmax(z0, -1)
    # the task effect is a difference of logits, not a square: where the bridge's hooked attention
    # rounds through float32 (rotary families, ~1e-8 in logits) it shows at that absolute size
    tol = dict(rel=1e-5, abs=1e-8 if effect == "task" else 1e-10)
    for layer in range(L):
        for head in range(H):
            i = layer * H + head
            single = hf_effect(effect, e.task, z0, hf.run([remove(layer, head)]), p0)
            assert s["single"][i] == pytest.approx(single, **tol), (layer, head)
            if (layer, head) != PRIMARY:
                cond = hf_effect(effect, e.task, zS, hf.run([remove(*PRIMARY), remove(layer, head)]), p0)
                assert s["conditional"][i] == pytest.approx(cond, **tol), (layer, head)
                assert s["comp"][i] == pytest.approx(cond - single, **tol)
    assert np.nanmax(np.abs(s["single"])) > 1e-6


@pytest.mark.parametrize("effect", ["fisher", "kl", "task"])
def test_synergy_effects_equal_plain_hf(effect):
    e = engine_with_corrupted("llama")
    hf = PlainHF("llama")
    remove = hf_removals(hf, "resample", e.task.corrupted)
    heads = [(0, 1), (1, 2), (1, 3)]
    out = synergy(e, [f"L{a}H{b}" for a, b in heads], ablation="resample", effect=effect, progress=False)
    z0 = hf.run()
    p0 = torch.softmax(z0, -1)
    for i in range(3):
        for j in range(i + 1, 3):
            if effect == "fisher":
                f = lambda zz: M.features(z0, zz, p0)  # noqa: E731
                inter = f(hf.run([remove(*heads[i]), remove(*heads[j])])) - f(hf.run([remove(*heads[i])])) \
                    - f(hf.run([remove(*heads[j])]))
                want = M.sq_norm(inter).mean().item()
            else:
                v = lambda *hs: hf_effect(effect, e.task, z0, hf.run([remove(*h) for h in hs]), p0)  # noqa: E731
                want = v(heads[i], heads[j]) - v(heads[i]) - v(heads[j])
            assert out["raw"][i, j] == pytest.approx(want, rel=1e-5, abs=1e-8 if effect == "task" else 1e-10)


def test_ablation_type_reaches_every_table():
    e = engine_with_corrupted("gpt2")
    s = single_scan(e, ablation="mean", effect="kl", progress=False)
    assert s.meta["ablation"] == "mean" and s.meta["effect"] == "kl"
    assert "mean" in s.table(3) or "mean" in s._repr_html_()


def test_resample_without_corrupted_prompts_is_refused():
    _, _, _, e, _ = family_model("gpt2")
    with pytest.raises(ValueError, match="resample ablation.*corrupted_texts"):
        single_scan(e, ablation="resample", progress=False)


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(ablation="resampel"), "unknown ablation 'resampel'"),
    (dict(effect="logitdiff"), "effect must be one of"),
    (dict(effect="task", top_r=8), "effect='task'.*top_r=0"),
])
def test_bad_choices_are_named(kwargs, pattern):
    _, _, _, e, _ = family_model("gpt2")
    with pytest.raises(ValueError, match=pattern):
        coax_scan(e, primaries=["L0H0"], progress=False, **kwargs)


def test_task_effect_needs_a_behaviour_metric():
    folder = family_model("gpt2")[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e = Engine(load_model(folder, device="cpu", dtype="fp64"), [[0, 5, 6, 7]], progress=False)
    with pytest.raises(ValueError, match="effect='task'.*no.*|effect='task' measures"):
        single_scan(e, effect="task", progress=False)


def test_builtin_tasks_carry_paired_corrupted_prompts():
    tok = word_tokenizer(ioi_vocabulary())
    ioi = ioi_task(tok, n_prompts=12, prompt_seed=3)
    assert len(ioi.corrupted) == 12
    for clean, bad, t, d in zip(ioi.prompts, ioi.corrupted, ioi.targets, ioi.distractors):
        assert len(clean) == len(bad) and clean != bad
        assert t[0] not in bad and d[0] not in bad  # ABC: neither IO nor S survives
        names = [x for x in bad if x in set(tok.convert_tokens_to_ids(["Ġ" + n for n in ioi.info["names"]]))
                 or tok.decode([x]).strip() in ioi.info["names"]]
        assert len(names) == 3 and len(set(names)) == 3  # three distinct names in the three slots
    assert ioi.subset([1, 4]).corrupted == [ioi.corrupted[1], ioi.corrupted[4]]
    ind = induction_task(tok, n_prompts=5, half_length=6, prompt_seed=2)
    for clean, bad in zip(ind.prompts, ind.corrupted):
        assert bad[-6:] == clean[-6:] and bad[1:7] != clean[1:7] and len(bad) == len(clean)
    # the clean prompts do not depend on the corrupted stream
    assert ioi_task(tok, n_prompts=12, prompt_seed=3).prompts == ioi.prompts


def test_custom_task_corrupted_texts_must_match_lengths():
    tok = word_tokenizer(ioi_vocabulary())
    t = custom_task(tok, ["When Mary and John went to the store, John gave a drink to"], answers=["Mary"],
                    distractors=["John"], corrupted_texts=["When Anne and Paul went to the store, Kate gave a drink to"])
    assert len(t.corrupted[0]) == len(t.prompts[0])
    with pytest.raises(ValueError, match=r"corrupted_texts\[0\].*same length"):
        custom_task(tok, ["When Mary and John went to the store, John gave a drink to"],
                    corrupted_texts=["When Anne went to the store"])


# ---------------------------------------------------------------- MLP units
MLP_OUT = {  # the MLP's output projection in plain HF: its output is the MLP's write
    "gpt2": "transformer.h.{}.mlp.c_proj",
    "llama": "model.layers.{}.mlp.down_proj",
    "gpt_neox": "gpt_neox.layers.{}.mlp.dense_4h_to_h",
    "bloom": "transformer.h.{}.mlp.dense_4h_to_h",  # BLOOM's MLP module adds the residual itself
}


def hf_mlp_run(hf, name, edits, tokens=None, capture=False):
    """Last-position logits with MLP outputs edited: ``edits`` maps layer -> fn(output)."""
    from test_families import _layers

    proj = _layers(MLP_OUT[name])
    hooks, seen = [], {}
    for layer in range(L):
        def post(mod, args, out, layer=layer):
            seen[layer] = out
            return edits[layer](out) if layer in edits else None
        hooks.append(proj(hf.model, layer).register_forward_hook(post))
    try:
        with torch.no_grad():
            logits = hf.model(hf.tokens if tokens is None else tokens).logits[:, -1]
    finally:
        for h in hooks:
            h.remove()
    return (logits, seen) if capture else logits


@pytest.mark.parametrize("name, ablation", [
    pytest.param(n, a, marks=() if (n, a) in {("bloom", "zero"), ("llama", "resample"), ("gpt2", "mean")}
                 else pytest.mark.slow) for n in sorted(MLP_OUT) for a in ("zero", "mean", "resample")])
def test_mlp_units_equal_plain_hf(name, ablation):
    """Single energies of each layer's MLP, and a head's conditional energy given an MLP
    removed (S = {L0MLP}), under each ablation type."""
    e = engine_with_corrupted(name)
    hf = PlainHF(name)
    _, clean_out = hf_mlp_run(hf, name, {}, capture=True)
    _, corrupt_out = hf_mlp_run(hf, name, {}, tokens=torch.tensor(e.task.corrupted), capture=True)

    def removal(layer):
        if ablation == "zero":
            return lambda out: torch.zeros_like(out)
        if ablation == "mean":
            return lambda out: clean_out[layer].reshape(-1, D).mean(0).expand_as(out)
        return lambda out: corrupt_out[layer]

    s = single_scan(e, heads=None, ablation=ablation, progress=False)  # heads only: no MLP columns
    assert s["single"].shape == (L * H,)
    z0 = hf.run()
    p0 = torch.softmax(z0, -1)
    energy = lambda ref, z: M.sq_norm(M.features(ref, z, p0)).mean().item()  # noqa: E731
    mlp_energy = e.energies([[(1.0, Term(Variant.ablate([e.units(f"L{layer}MLP")[0]], ablation)))]
                             for layer in range(L)])
    for layer in range(L):
        assert mlp_energy[layer] == pytest.approx(energy(z0, hf_mlp_run(hf, name, {layer: removal(layer)})),
                                                  rel=1e-5, abs=1e-10)
    scan = coax_scan(e, primaries=["M0"], ablation=ablation, progress=False)
    zS = hf_mlp_run(hf, name, {0: removal(0)})
    remove = hf_removals(hf, ablation, e.task.corrupted)
    for layer, head in [(0, 1), (1, 2)]:
        hooks_run = _mlp_and_head(hf, name, removal(0), remove(layer, head))
        assert scan["conditional"][layer * H + head] == pytest.approx(energy(zS, hooks_run), rel=1e-5, abs=1e-10)
    assert max(mlp_energy) > 1e-6


def _mlp_and_head(hf, name, mlp0_edit, head_edit):
    """Logits with layer 0's MLP and one head edited at once."""
    from test_families import _layers

    handle = _layers(MLP_OUT[name])(hf.model, 0).register_forward_hook(lambda m, a, out: mlp0_edit(out))
    try:
        return hf.run([head_edit])
    finally:
        handle.remove()


def test_mlp_share_flags_a_model_whose_mlps_carry_the_behaviour(tmp_path):
    """A toy whose attention writes are scaled down 1000x: the MLPs carry the outputs'
    dependence, the scan says so; the IOI organisms stay quiet (their share: 0-11%)."""
    from safetensors.torch import load_file, save_file

    from coax_nb.organisms import task_for
    from coax_nb.toy import build_toy_model

    folder = build_toy_model(tmp_path / "m", n_layers=2, n_heads=4, d_model=32, seed=3)
    weights = load_file(folder / "model.safetensors")
    for key in weights:
        if key.endswith("attn.c_proj.weight"):
            weights[key] = weights[key] * 1e-3
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    e = Engine(load_model(folder, device="cpu"), [[0, 5, 9, 12, 7, 30, 4, 8]] * 4, progress=False)
    with pytest.warns(UserWarning, match=r"MLP layers carry (9\d|100)% of the first-order ablation effect"):
        s = coax_scan(e, primaries=["L0H0"], progress=False)
    assert s.meta["mlp_share"] > 0.9 and set(s.meta["mlp_single"]) == {"L0MLP", "L1MLP"}

    for name in ("ioi_dormant", "handwired"):
        spec = f"organism:{name}"
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            s = coax_scan(load_model(spec, device="cpu"), task_for(spec, 16), primaries=["L1H0"], progress=False)
        assert s.meta["mlp_share"] < 0.2


def test_groups_and_mlp_units_in_synergy_equal_plain_hf():
    """Modules of the grid: a head pair and an MLP each ablated as one unit."""
    from coax_nb.results import load

    e = engine_with_corrupted("gpt2")
    hf = PlainHF("gpt2")
    out = synergy(e, {"pair": ["L0H0", "L0H1"], "mlp": ["M1"], "lone": ["L1H2"]}, progress=False)
    assert [str(u) for u in out.units] == ["pair", "mlp", "lone"]
    z0 = hf.run()
    p0 = torch.softmax(z0, -1)
    zero_mlp1 = lambda out_: torch.zeros_like(out_)  # noqa: E731
    removal = {"pair": dict(heads=[(0, 0), (0, 1)]), "mlp": dict(mlp=True), "lone": dict(heads=[(1, 2)])}

    def run(*names):
        heads = [(a, b, lambda x: 0.0) for n in names for a, b in removal[n].get("heads", [])]
        if any(removal[n].get("mlp") for n in names):
            from test_families import _layers
            handle = _layers(MLP_OUT["gpt2"])(hf.model, 1).register_forward_hook(lambda m, a, o: zero_mlp1(o))
            try:
                return hf.run(heads)
            finally:
                handle.remove()
        return hf.run(heads)

    f = lambda z: M.features(z0, z, p0)  # noqa: E731
    names = ["pair", "mlp", "lone"]
    for i in range(3):
        for j in range(i + 1, 3):
            want = M.sq_norm(f(run(names[i], names[j])) - f(run(names[i])) - f(run(names[j]))).mean().item()
            assert out["raw"][i, j] == pytest.approx(want, rel=1e-6, abs=1e-12)
    back = load(out.to_json())
    assert [str(u) for u in back.units] == names and back.units[0].members == out.units[0].members
    with pytest.raises(ValueError, match="group 'x' is empty"):
        synergy(e, {"x": [], "y": ["L0H0"]}, progress=False)
