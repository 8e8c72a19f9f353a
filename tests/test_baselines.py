"""Gradient baselines against slow, obviously-correct references (float64)."""
import numpy as np
import pytest
import torch

from coax_nb import Engine, Variant, load_model
from coax_nb.baselines import _atp, _atp_graddrop, _eap_ig, attribution_scores
from coax_nb.tasks import Task, ioi_task
from coax_nb.units import Unit, all_units


def _metric_with(engine, task, scale=None, zero=(), fixed_delta=None):
    """Per-prompt metric of one plain forward: head ``u`` scaled by ``scale[u]``,
    heads in ``zero`` zeroed, block l's residual contribution replaced by
    ``fixed_delta = (l, tensor)``."""
    scale = scale or {}
    model = engine.model
    b = engine.buckets[0]
    hooks = []
    for layer in range(engine.n_layers):
        def edit(z, hook, layer=layer):
            z = z.clone()
            for u in zero:
                if u.layer == layer:
                    z[:, :, u.head] = 0
            for u, f in scale.items():
                if u.layer == layer:
                    z[:, :, u.head] = z[:, :, u.head] * f
            return z
        hooks.append((f"blocks.{layer}.attn.hook_z", edit))
    saved = {}
    if fixed_delta is not None:
        l, delta = fixed_delta
        hooks.append((f"blocks.{l}.hook_in", lambda x, hook: saved.setdefault("in", x)))
        hooks.append((f"blocks.{l}.hook_out", lambda x, hook: saved["in"] + delta))
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        logits = model(b.tokens)[:, b.positions]
    return task.subset(b.index).metric(list(logits))


def _block_delta(engine, layer, zero=()):
    model = engine.model
    b = engine.buckets[0]
    saved = {}
    hooks = [(f"blocks.{layer}.hook_in", lambda x, hook: saved.setdefault("in", x.clone())),
             (f"blocks.{layer}.hook_out", lambda x, hook: saved.setdefault("out", x.clone()))]
    for u in zero:
        def edit(z, hook, u=u):
            z = z.clone()
            z[:, :, u.head] = 0
            return z
        hooks.append((f"blocks.{u.layer}.attn.hook_z", edit))
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        model(b.tokens)
    return saved["out"] - saved["in"]


@pytest.fixture(scope="module")
def setup(toy64):
    task = ioi_task(toy64, 6, seed=2)
    return Engine(toy64, task, progress=False), task


@pytest.mark.parametrize("seed", [(), ("1.0", "2.2")])
def test_atp_equals_directional_finite_difference(setup, seed):
    engine, task = setup
    seed_units = engine.units(list(seed))
    got = _atp(engine, 0, Variant.zero(seed_units))  # [n, L, H], signed z . dm/dz
    eps = 1e-5
    for u in all_units(engine.n_layers, engine.n_heads):
        if u in seed_units:
            continue
        plus = _metric_with(engine, task, {u: 1 + eps}, seed_units)
        minus = _metric_with(engine, task, {u: 1 - eps}, seed_units)
        ref = (plus - minus) / (2 * eps)
        assert torch.allclose(got[:, u.layer, u.head], ref, atol=1e-6, rtol=1e-5), str(u)


def test_graddrop_equals_finite_difference_with_block_held_fixed(setup):
    engine, task = setup
    L = engine.n_layers
    got = _atp_graddrop(engine, 0, CLEAN := Variant())
    ref = torch.zeros_like(got)
    eps = 1e-5
    for drop in range(L):
        delta = _block_delta(engine, drop)
        for u in all_units(L, engine.n_heads):
            plus = _metric_with(engine, task, {u: 1 + eps}, fixed_delta=(drop, delta))
            minus = _metric_with(engine, task, {u: 1 - eps}, fixed_delta=(drop, delta))
            ref[:, u.layer, u.head] += ((plus - minus) / (2 * eps)).abs()
    ref /= L - 1
    assert CLEAN == Variant()
    assert torch.allclose(got, ref, atol=1e-6, rtol=1e-5)
    # a head's own layer contributes nothing: dropping the last layer leaves layer-0 heads live
    assert (got[:, 0] > 0).any()


def test_eap_ig_is_complete_per_layer(setup):
    """Integrated gradients over a whole layer sum to that layer's zero-ablation effect."""
    engine, task = setup
    steps = 400
    got = _eap_ig(engine, 0, Variant(), steps)  # [n, L, H] signed, = -z . mean grad
    clean = _metric_with(engine, task)
    for layer in range(engine.n_layers):
        heads = [Unit(layer, h) for h in range(engine.n_heads)]
        effect = _metric_with(engine, task, zero=heads) - clean
        # right Riemann sum: error shrinks as 1/steps
        assert torch.allclose(got[:, layer].sum(-1), effect, atol=0.02 * effect.abs().max().item() + 1e-6)


def test_atp_is_exact_when_the_metric_is_linear_in_head_outputs(no_mlp_toy_dir):
    """With the MLPs zeroed and ln_final's scale frozen, logits are affine in the
    last-layer head outputs, so AtP equals the exact effect of zero-ablating each."""
    model = load_model(no_mlp_toy_dir, device="cpu", dtype="fp64")
    task = ioi_task(model, 6, seed=2)
    engine = Engine(model, task, progress=False)
    fixed = {}

    def freeze_scale(x, hook):
        return fixed.setdefault(x.shape, x.detach().clone())

    last = engine.n_layers - 1
    with model.hooks(fwd_hooks=[("ln_final.hook_scale", freeze_scale)]):
        est = -_atp(engine, 0, Variant())  # estimate of m(ablated) - m(clean)
        clean = _metric_with(engine, task)
        for h in range(engine.n_heads):
            exact = _metric_with(engine, task, zero=[Unit(last, h)]) - clean
            assert exact.abs().max() > 1e-3  # the check is not vacuous
            assert torch.allclose(est[:, last, h], exact, atol=1e-10), h


def test_attribution_scores_columns_costs_and_batching(toy, quiet):
    task = ioi_task(toy, 10, seed=5)
    s = attribution_scores(toy, task, primaries=["1.1"], ig_steps=3, progress=False)
    for col in ("atp", "atp_gd", "eap_ig", "cond_atp", "cond_atp_gd", "cond_eap_ig", "delta_atp"):
        assert s[col].shape == (12,)
    assert np.isnan(s.value("cond_atp", "1.1")) and not np.isnan(s.value("atp", "1.1"))
    assert np.allclose(s["delta_atp"][~s.is_primary()], (s["cond_atp"] - s["atp"])[~s.is_primary()])
    cost = s.meta["cost"]
    # intact + conditional: AtP 2 backward passes, GradDrop 2L, EAP-IG 2 L steps
    assert cost["atp"]["backward_passes"] == 2
    assert cost["atp_gd"]["backward_passes"] == 2 * 3
    assert cost["eap_ig"]["backward_passes"] == 2 * 3 * 3
    # batching does not change the result: one bucket vs buckets of 3 prompts
    small = Engine(toy, task, progress=False, max_bucket_prompts=3)
    s2 = attribution_scores(small, primaries=["1.1"], ig_steps=3, progress=False)
    for col in s.scores:
        assert np.allclose(s[col], s2[col], atol=1e-5, equal_nan=True), col


def test_gradient_baselines_refuse_bad_metrics(toy):
    task = ioi_task(toy, 4, seed=1)
    bad_shape = Task("t", task.prompts, metric_fn=lambda logits, t: torch.zeros(2))
    with pytest.raises(ValueError, match="one finite number per prompt"):
        attribution_scores(toy, bad_shape, methods=["atp"], progress=False)
    nan = Task("t", task.prompts, metric_fn=lambda logits, t: torch.stack([lg[-1, 0] for lg in logits]) * np.nan)
    with pytest.raises(ValueError, match="finite"):
        attribution_scores(toy, nan, methods=["atp"], progress=False)
    with pytest.raises(ValueError, match="need a behaviour metric"):
        attribution_scores(toy, task.prompts, methods=["atp"], progress=False)
    with pytest.raises(ValueError, match="unknown attribution method"):
        attribution_scores(toy, task, methods=["atp", "saliency"], progress=False)
