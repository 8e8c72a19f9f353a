"""Scores against float64 references computed straight from method.md's definitions."""
import numpy as np
import pytest
import torch

from coax_nb import Engine, Variant, co_activation, coax_scan, greedy_completion, synergy
from coax_nb.units import Unit

from conftest import mixed_length_prompts


def fisher_energy_ref(z_ref, z, p_logits, top_r=0, mode="fisher_centered"):
    """Straight from the definition, in float64, one (prompt, position) at a time."""
    total, count = 0.0, 0
    for a, b, c in zip(z_ref, z, p_logits):  # per prompt: [P, V]
        for j in range(a.shape[0]):
            zr, zz, zc = a[j].double(), b[j].double(), c[j].double()
            if top_r:
                sup = zc.topk(top_r).indices
                zr, zz, zc = zr[sup], zz[sup], zc[sup]
            p = torch.softmax(zc, 0)
            d = zr - zz
            F = torch.diag(p) - torch.outer(p, p)
            e = d @ F @ d if mode == "fisher_centered" else (p * d * d).sum()
            total += e.item()
            count += 1
    return total / count


@pytest.mark.parametrize("top_r", [0, 5])
@pytest.mark.parametrize("mode", ["last", "all"])
def test_scan_matches_float64_definition(toy64, top_r, mode):
    prompts = mixed_length_prompts(toy64, 6, seed=11)
    e = Engine(toy64, prompts, position_mode=mode, progress=False)
    seed = e.units(["1.0", "2.1"])
    s = coax_scan(e, primaries=seed, top_r=top_r, progress=False)
    z0 = e.clean_logits()
    S = Variant.zero(seed)
    zS = e.naive_logits(S)
    for u in [Unit(0, 2), Unit(1, 3), Unit(2, 0), Unit(1, 0)]:
        zu = e.naive_logits(Variant.zero([u]))
        single = fisher_energy_ref(z0, zu, z0, top_r)
        assert s.value("single", u) == pytest.approx(single, rel=1e-9, abs=1e-14)
        if u in seed:
            assert np.isnan(s.value("comp", u)) and np.isnan(s.value("conditional", u))
            continue
        zSu = e.naive_logits(S | Variant.zero([u]))
        cond = fisher_energy_ref(zS, zSu, z0, top_r)
        assert s.value("conditional", u) == pytest.approx(cond, rel=1e-9, abs=1e-14)
        assert s.value("comp", u) == pytest.approx(cond - single, rel=1e-9, abs=1e-14)
        assert s.value("ratio", u) == pytest.approx(cond / single, rel=1e-9)
    assert single > 1e-4  # the references are not all zero


def test_conditional_geometry_and_coupling(toy64):
    prompts = mixed_length_prompts(toy64, 5, seed=2)
    e = Engine(toy64, prompts, progress=False)
    seed = e.units(["1.1"])
    s = coax_scan(e, primaries=seed, geometry="conditional", progress=False)
    z0 = e.clean_logits()
    S = Variant.zero(seed)
    zS = e.naive_logits(S)
    u = Unit(2, 2)
    zu, zSu = e.naive_logits(Variant.zero([u])), e.naive_logits(S | Variant.zero([u]))
    assert s.value("conditional", u) == pytest.approx(fisher_energy_ref(zS, zSu, zS), rel=1e-9)
    # coupling from its definition: mean ||f(zS -> zSu) - f(z0 -> zu)||^2 under the metric of each feature
    tot = 0.0
    for a, b, c, d in zip(z0, zu, zS, zSu):
        p0, pS = torch.softmax(a[0], 0), torch.softmax(c[0], 0)
        f1 = pS.sqrt() * ((c[0] - d[0]) - (pS * (c[0] - d[0])).sum())
        f0 = p0.sqrt() * ((a[0] - b[0]) - (p0 * (a[0] - b[0])).sum())
        tot += ((f1 - f0) ** 2).sum().item()
    assert s.value("coupling", u) == pytest.approx(tot / len(prompts), rel=1e-9)


def test_uncentered_feature_mode(toy64):
    prompts = mixed_length_prompts(toy64, 4, seed=5)
    e = Engine(toy64, prompts, progress=False)
    s = coax_scan(e, primaries=["0.0"], feature_mode="fisher_uncentered", progress=False)
    z0 = e.clean_logits()
    u = Unit(1, 2)
    ref = fisher_energy_ref(z0, e.naive_logits(Variant.zero([u])), z0, mode="fisher_uncentered")
    assert s.value("single", u) == pytest.approx(ref, rel=1e-9)


def test_scan_results_roundtrip_and_top(toy, tmp_path):
    s = coax_scan(toy, mixed_length_prompts(toy, 6), primaries=["2.0", "1.1"], progress=False)
    top = s.top(3)
    assert len(top) == 3 and all(u not in s.primaries for u, _ in top)
    assert top[0][1] >= top[1][1] >= top[2][1]
    df = s.to_frame()
    assert list(df.columns[:4]) == ["layer", "head", "name", "primary"] and len(df) == 12
    back = type(s).from_json(s.to_json(tmp_path / "s.json"))
    np.testing.assert_allclose(back["comp"], s["comp"], equal_nan=True)
    assert back.primaries == s.primaries
    assert s.meta["forward_passes"] > 0 and s.meta["n_prompts"] == 6


def test_wakeup_is_one_below_the_seed_layer(toy):
    s = coax_scan(toy, mixed_length_prompts(toy, 6), primaries=["1.0"], progress=False)
    np.testing.assert_allclose(s["wakeup"][:4], 1.0, rtol=1e-6)  # layer 0 cannot react to layer 1
    assert np.nanmax(np.abs(s["wakeup"][8:] - 1.0)) > 1e-3  # layer 2 does react


def test_synergy_matches_definition(toy64):
    prompts = mixed_length_prompts(toy64, 4, seed=8)
    e = Engine(toy64, prompts, progress=False)
    units = e.units(["0.1", "1.2", "2.3"])
    syn = synergy(e, units, progress=False)
    z0 = e.clean_logits()

    def feat(z):
        out = []
        for a, b in zip(z0, z):
            p = torch.softmax(a, -1)
            d = a - b
            out.append(p.sqrt() * (d - (p * d).sum(-1, keepdim=True)))
        return out

    fu = {u: feat(e.naive_logits(Variant.zero([u]))) for u in units}
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        fuv = feat(e.naive_logits(Variant.zero([units[i], units[j]])))
        raw = np.mean([((a - b - c) ** 2).sum().item() for a, b, c in zip(fuv, fu[units[i]], fu[units[j]])])
        assert syn["raw"][i, j] == pytest.approx(raw, rel=1e-9)
        assert syn["raw"][j, i] == syn["raw"][i, j]
        si = np.mean([(a ** 2).sum().item() for a in fu[units[i]]])
        sj = np.mean([(a ** 2).sum().item() for a in fu[units[j]]])
        assert syn["normalized"][i, j] == pytest.approx(raw / np.sqrt(si * sj), rel=1e-9)
    assert np.isnan(np.diag(syn["raw"])).all()


def test_greedy_completion_picks_the_largest_conditional_energy(toy64):
    prompts = mixed_length_prompts(toy64, 4, seed=9)
    e = Engine(toy64, prompts, progress=False)
    comp = greedy_completion(e, ["1.0"], k=2, progress=False)
    # step 1 equals argmax of the conditional energy of a scan with the same seed
    s = coax_scan(e, primaries=["1.0"], progress=False)
    cond = np.nan_to_num(s["conditional"], nan=-1)
    assert comp.added[0] == s.units[int(np.argmax(cond))]
    assert comp.gains[0] == pytest.approx(float(np.max(cond)), rel=1e-9)
    assert comp.added[1] not in comp.added[:1] + comp.primaries


def test_co_activation_is_a_correlation_matrix(toy):
    aff = co_activation(toy, ["0.0", "0.1", "1.2"], mixed_length_prompts(toy, 6), progress=False)
    m = aff["affinity"]
    np.testing.assert_allclose(np.diag(m), 1.0, rtol=1e-5)
    np.testing.assert_allclose(m, m.T, rtol=1e-6)
    assert (np.abs(m) <= 1 + 1e-6).all()


def test_docstring_example_runs():
    import doctest

    import coax_nb.scores

    result = doctest.testmod(coax_nb.scores)
    assert result.attempted >= 5 and result.failed == 0
