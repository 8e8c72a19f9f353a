"""Finding the primaries (coax_nb.discover): each method against the organism cards'
primaries, the role and ACDC arithmetic checked by hand, the "auto" spec through
resolve and the CLI, and bad inputs."""
import math
import warnings

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from coax_nb import Engine, load_model, results  # noqa: E402
from coax_nb.cli import main as cli_main  # noqa: E402
from coax_nb.discover import discover_primaries, parse_auto  # noqa: E402
from coax_nb.engine import Term, Variant  # noqa: E402
from coax_nb.inputs import check_inputs, heads_text, resolve  # noqa: E402
from coax_nb.organisms import card, task_for  # noqa: E402
from coax_nb.tasks import induction_task  # noqa: E402
from coax_nb.units import Unit  # noqa: E402

HW = "organism:handwired"


def _engine(name, n=16):
    return Engine(load_model(f"organism:{name}"), task_for(name, n), progress=False)


@pytest.fixture(scope="module")
def hw():
    return _engine("handwired")


@pytest.fixture(scope="module")
def dormant():
    return _engine("ioi_dormant")


def _card(name):
    return {Unit(*x) for x in card(name)["primaries"]}


def _names(units):
    return sorted(map(str, units))


@pytest.fixture(scope="module")
def found(hw, dormant):
    """Every method on both organisms, k = the card's number of primaries."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {(org, m): discover_primaries(e, method=m, k=len(_card(org)), progress=False)
                for org, e in (("handwired", hw), ("ioi_dormant", dormant))
                for m in ("single", "atp", "role", "acdc")}


# ---------------------------------------------------------------- against the cards
def test_atp_and_role_recover_the_handwired_primaries(found):
    for m in ("atp", "role"):
        d = found["handwired", m]
        assert set(d.primaries) == _card("handwired"), (m, d.table())
        assert d.source.startswith(f"auto:{m} (top-2 by ")
    # the two movers write the answer with the same weights: a tie, above the co-firing L1H2
    role = found["handwired", "role"].evidence["name_mover"]
    assert role[4] == pytest.approx(role[5]) and role[4] > role[6] > 10 * np.nanmax(np.delete(role, [4, 5, 6]))


def test_single_ablation_misses_the_handwired_primaries(found):
    """The two movers back each other up (and the dormant L2 heads back both up): alone,
    neither moves the logit difference, so single ablation ranks the S-inhibition head
    L0H0 and the co-firing L1H2 first. This is the self-repair CoAx is about."""
    d = found["handwired", "single"]
    assert _names(d.primaries) == ["L0H0", "L1H2"]
    single = d.evidence["single"]
    assert max(abs(single[4]), abs(single[5])) < 1e-3 and single[0] > 5 and single[6] > 1


def test_acdc_keeps_the_handwired_primaries_in_its_circuit(found, hw):
    """The circuit holds both movers; ranked by the change each caused when tried, the
    upstream L0H0 (tried last, with every downstream head already in place) comes
    first, so the top-2 holds one mover of the two (they tie)."""
    d = found["handwired", "acdc"]
    circuit = {u for u in d.units if d.evidence["kept"][u.flat(4)] == 1}
    assert circuit == {Unit(0, 0), Unit(1, 0), Unit(1, 1), Unit(1, 2)}
    assert d.primaries[0] == Unit(0, 0) and len(set(d.primaries) & _card("handwired")) == 1
    whole = discover_primaries(hw, method="acdc", k=None, progress=False)
    assert set(whole.primaries) == circuit and "the whole circuit" in whole.source


def test_on_ioi_dormant_the_total_effect_methods_rank_layer_0_first(found):
    """The card's primaries are the middle-layer movers, found by their direct effect
    (DLA). Every method here measures a head's total effect or its attention to the IO
    name, and the layer-0 heads, which read the names and feed the movers, dominate it:
    single ablation finds one mover of three, AtP and the name-mover score none (the
    movers attend to the IO token with weight ~0.01: they read the names elsewhere)."""
    truth = _card("ioi_dormant")
    single, atp, role = (found["ioi_dormant", m] for m in ("single", "atp", "role"))
    assert _names(single.primaries) == ["L0H0", "L0H3", "L1H0"]
    for d in (atp, role):
        assert all(u.layer == 0 for u in d.primaries) and not set(d.primaries) & truth
    # the movers' name-mover scores are near zero, the layer-0 heads' are not
    nm = role.evidence["name_mover"]
    assert max(nm[u.flat(4)] for u in truth) < 0.05 < min(nm[:3])


def test_acdc_keeps_the_ioi_dormant_primaries_in_its_circuit(found):
    d = found["ioi_dormant", "acdc"]
    circuit = {u for u in d.units if d.evidence["kept"][u.flat(4)] == 1}
    assert _card("ioi_dormant") <= circuit and len(circuit) == 7
    assert d.primaries[0] == Unit(0, 0) and len(set(d.primaries) & _card("ioi_dormant")) == 2


# ---------------------------------------------------------------- the arithmetic
def test_k_none_takes_every_head_above_the_share(hw):
    d = discover_primaries(hw, method="atp", k=None, share=0.5, progress=False)
    atp = d.evidence["atp"]
    chosen = {u.flat(4) for u in d.primaries}
    assert chosen == {i for i in range(12) if atp[i] >= 0.5 * atp.max()} == {4, 5, 6}
    assert d.meta["share"] == 0.5 and "heads >= 50% of the largest" in d.source


def test_acdc_changes_add_up_to_the_pruned_circuit(hw):
    tau = 0.3
    d = discover_primaries(hw, method="acdc", k=None, tau=tau, progress=False)
    change, kept = d.evidence["change"], d.evidence["kept"]
    removed = [u for u in d.units if kept[u.flat(4)] == 0]
    assert all(abs(change[u.flat(4)]) < tau for u in removed)
    assert all(abs(change[u.flat(4)]) >= tau for u in d.units if kept[u.flat(4)] == 1)
    # the changes of the pruned heads telescope to the drop with all of them removed
    joint = hw.energies([[(1.0, Term(Variant.zero(removed)))]], effect="task", progress=False)[0]
    assert joint == pytest.approx(change[[u.flat(4) for u in removed]].sum(), abs=1e-4)
    assert d.meta["tau"] == tau and d.meta["forward_passes"] > 0


def test_name_mover_score_by_hand(hw):
    d = discover_primaries(hw, method="role", k=2, progress=False)
    task, e = hw.task, hw
    pats = e.attention_patterns(0)  # one bucket: every prompt has the same length
    W_O, W_U = e.arch.W_O.detach(), e.arch.W_U.detach()
    gain = e.arch.final_norm_gain().float()
    for layer, head in ((1, 0), (2, 2)):
        total = 0.0
        for j, p in enumerate(e.buckets[0].index):
            row, io = task.prompts[p], task.targets[p][0]
            write = e.clean.z[0][layer][j, -1, head] @ W_O[layer, head]
            write = write - write.mean()
            total += float(pats[j, layer, head, -1, row.index(io)]) * float(write @ (gain * W_U[:, io]))
        assert d.evidence["name_mover"][layer * 4 + head] == pytest.approx(total / len(task), rel=1e-4, abs=1e-6)


def test_induction_scores_by_hand(toy):
    """On repeated random tokens the role method ranks by the induction score; each role
    score is the mean attention to the position it names."""
    task = induction_task(toy, n_prompts=3, half_length=4, prompt_seed=1)
    e = Engine(toy, task, progress=False)
    d = discover_primaries(e, method="role", k=2, progress=False)
    assert d.by == "induction" and "induction score" in d.source
    pats = e.attention_patterns(0)
    half = 4
    for flat in (0, 7):
        layer, head = divmod(flat, 4)
        ind, dup, prev = [], [], []
        for j in range(len(task)):
            a = pats[j, layer, head]
            T = a.shape[0]
            for q in range(T - half, T):  # the second copy: its token was seen `half` before
                ind.append(float(a[q, q - half + 1]))
                dup.append(float(a[q, q - half]))
            prev += [float(a[q, q - 1]) for q in range(1, T)]
        assert d.evidence["induction"][flat] == pytest.approx(np.mean(ind), rel=1e-5)
        assert d.evidence["duplicate_token"][flat] == pytest.approx(np.mean(dup), rel=1e-5)
        assert d.evidence["previous_token"][flat] == pytest.approx(np.mean(prev), rel=1e-5)
    assert d.primaries == [Unit.from_flat(int(i), 4) for i in np.argsort(-d.evidence["induction"])[:2]]


def test_the_result_round_trips_and_shows_its_source(found, tmp_path):
    d = found["handwired", "acdc"]
    back = results.load(d.to_json(tmp_path / "d.json"))
    assert isinstance(back, results.Discovery) and back.to_dict() == d.to_dict()
    assert back.primaries == d.primaries and back.by == "change"
    frame = d.to_frame()
    assert list(frame["name"][:4]) == ["L0H0", "L1H0", "L1H1", "L1H2"] and frame["primary"].sum() == 2
    assert d.source in d.table() and d.source in d._repr_html_()
    assert d.plot().axes
    nan = found["handwired", "role"]
    assert np.isnan(results.load(nan.to_json()).evidence["induction"]).sum() == np.isnan(
        nan.evidence["induction"]).sum()


# ---------------------------------------------------------------- auto through resolve and the CLI
def test_resolve_auto_names_the_method():
    run = resolve(HW, n_prompts=8, primaries="auto:atp:k=2")
    assert set(run.primaries) == _card("handwired")
    assert run.primaries_source == "auto:atp (top-2 by |AtP| on the logit difference)"
    assert isinstance(run.discovery, results.Discovery) and run.truth == [Unit(2, 0), Unit(2, 1)]
    run = resolve(run.model, n_prompts=8, primaries=["auto:role"])  # a one-item list, as a CLI gives it
    assert run.primaries_source == "auto:role (top-3 by name-mover score from attention patterns)"
    assert _names(run.primaries) == ["L1H0", "L1H1", "L1H2"]
    assert heads_text("auto:acdc:tau=0.3") == "auto:acdc:tau=0.3" and heads_text(" auto ") == "auto"
    assert parse_auto("Auto:ACDC:tau=0.3:k=none") == {"method": "acdc", "k": None, "tau": 0.3}
    assert parse_auto("L1H0") is None


def test_cli_scan_with_auto_primaries(capsys):
    with pytest.warns(UserWarning, match="only 2 heads have a positive single score"):
        assert cli_main(["scan", "--model", HW, "--primaries", "auto", "--prompts", "16", "--quiet", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "primaries S = L0H0, L1H2 (auto:single (top-2 by single zero-ablation on the logit difference))" in out
    assert cli_main(["scan", "--model", HW, "--primaries", "auto:nope", "--prompts", "4", "--quiet"]) == 2
    assert "unknown discovery method 'nope'" in capsys.readouterr().err


# ---------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("kwargs, error, message", [
    (dict(method="dla"), ValueError, "unknown discovery method 'dla'"),
    (dict(method=["single"]), ValueError, "unknown discovery method"),
    (dict(k=0), ValueError, "k must be a whole number >= 1"),
    (dict(k=-2), ValueError, "k must be a whole number >= 1"),
    (dict(k=2.0), ValueError, "k must be a whole number >= 1"),
    (dict(k=True), ValueError, "k must be a whole number >= 1"),
    (dict(k=12), ValueError, "k=12 would take every head of the 12"),
    (dict(k=None, share=0), ValueError, "share must be a number in"),
    (dict(k=None, share=1.5), ValueError, "share must be a number in"),
    (dict(method="acdc", tau=-0.1), ValueError, "tau must be a finite number >= 0"),
    (dict(method="acdc", tau=math.nan), ValueError, "tau must be a finite number >= 0"),
    (dict(method="acdc", tau=math.inf), ValueError, "tau must be a finite number >= 0"),
    (dict(method="acdc", tau=1e6), ValueError, "pruned every head"),
    (dict(method="acdc", tau=0.0, k=None), ValueError, "kept every head"),
    (dict(method="single", role="induction"), ValueError, "role='induction' needs method='role'"),
    (dict(method="role", role="mover"), ValueError, "needs method='role' and one of"),
])
def test_bad_arguments_fail_clearly(hw, kwargs, error, message):
    with pytest.raises(error, match=message):
        discover_primaries(hw, progress=False, **kwargs)


def test_a_task_without_targets_is_refused(hw):
    bare = Engine(hw.model, hw.task.prompts[:4], progress=False)
    for method in ("single", "atp", "role", "acdc"):
        with pytest.raises(ValueError, match="no behaviour metric"):
            discover_primaries(bare, method=method, progress=False)
    with pytest.raises(ValueError, match="give a task"):
        discover_primaries(hw.model, progress=False)


def test_a_role_that_the_prompts_cannot_show_is_refused(hw):
    from coax_nb.tasks import Task

    # no token repeats, and the answer (id 5) is not in the prompt
    t = Task("flat", [[0, 19, 15]] * 2, "last", [[5]] * 2)
    e = Engine(hw.model, t, progress=False)
    with pytest.raises(ValueError, match="the induction score cannot be read on these prompts"):
        discover_primaries(e, method="role", k=1, progress=False)
    with pytest.raises(ValueError, match="the name_mover score cannot be read"):
        discover_primaries(e, method="role", role="name_mover", k=1, progress=False)


def test_a_k_above_the_positive_heads_takes_those_with_a_warning(hw):
    with pytest.warns(UserWarning, match="only 2 heads have a positive single score, fewer than k=8"):
        d = discover_primaries(hw, method="single", k=8, progress=False)
    assert _names(d.primaries) == ["L0H0", "L1H2"] and d.source.startswith("auto:single (top-2 by")


@pytest.mark.parametrize("spec, message", [
    ("auto:nope", "unknown discovery method 'nope'"),
    ("auto:acdc:tau=abc", "cannot read 'tau=abc'"),
    ("auto:single:x=1", "cannot read 'x=1'"),
    ("auto:single:k=0", "k must be a whole number >= 1"),
    ("auto:acdc:tau=-1", "tau must be a finite number >= 0"),
])
def test_bad_auto_specs_fail_before_any_load(spec, message):
    with pytest.raises(ValueError, match=message):
        check_inputs("organism:handwired", primaries=spec)
    with pytest.raises(ValueError, match=message):
        check_inputs("/no/such/model/dir", primaries=spec)


def test_attention_patterns_are_distributions(hw):
    pats = hw.attention_patterns(0)
    T = hw.buckets[0].length
    assert pats.shape == (16, 3, 4, T, T)
    assert torch.allclose(pats.sum(-1), torch.ones(()), atol=1e-5)
    assert float(pats.triu(1).abs().max()) == 0.0  # causal: no attention to later positions


def test_rankings_break_rounding_ties_by_head_order():
    """Scores in one cell of a grid of a millionth of the largest are rounding apart (the
    hand-wired organism's mirror-image primaries differ by ~4e-9 of their 1.75), so they keep
    layer-and-head order; +inf leads, NaN and -inf trail, and a real gap still decides."""
    from coax_nb.units import ranked

    change = [6.666904, 0.0, -5.9e-4, -4.7e-4, 1.749061234, 1.749061242, 1.499368]
    assert ranked(change)[:4] == [0, 4, 5, 6]
    assert np.argsort([-c for c in change], kind="stable")[1] == 5  # what a plain sort said
    assert ranked([1.0, float("nan"), float("inf"), 1.0 + 1e-3, float("-inf")]) == [2, 3, 0, 1, 4]
    assert ranked([0.0, 0.0]) == [0, 1] and ranked([float("nan")] * 2) == [0, 1]
