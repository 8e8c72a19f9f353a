"""Widget classes on the kernel side: traitlets, recompute on a change of the primaries,
static fallbacks drawn by coax_nb.plots with the page's colours, and the built bundles."""
import base64
import importlib.util
import json
import re
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgb

from coax_nb import Engine, load_model, plots, synergy, wakeup
from coax_nb.organisms import task_for
from coax_nb.results import UnitScores
from coax_nb.sensitivity import p_sensitivity
from coax_nb.units import Unit
from coax_nb.widgets import (COMPONENTS, STATIC, BlindSpot, Curves, HeadMap, RankingTable, SensitivityExplorer,
                             SynergyGrid, link)
from coax_nb.widgets.base import float_values, json_values

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def engine():
    return Engine(load_model("organism:handwired"), task_for("organism:handwired", 16), progress=False)


@pytest.fixture(scope="module")
def hm(engine):
    return HeadMap.live(engine, primaries=["L1H0", "L1H1"], truth=["L2H0", "L2H1"])


def test_headmap_recomputes_when_the_page_changes_the_primaries(engine, hm):
    assert hm.n_layers == 3 and hm.n_heads == 4 and hm.primaries == ["L1H0", "L1H1"]
    assert hm.truth == ["L2H0", "L2H1"]
    assert hm.scores["comp"][4] is None  # NaN (primary) travels as null
    before = hm.result.value("comp", "L2H1")
    hm.primaries = ["L1H0"]  # what a click on L1H1 does
    assert hm.version == 1 and not hm.busy and hm.error == ""
    assert [str(u) for u in hm.result.primaries] == ["L1H0"]
    # with only L1H0 removed, backup L2H1 (which watches L1H1) stays dormant
    assert hm.result.value("comp", "L2H1") < 1e-3 * before
    assert hm.scores["comp"][9] == pytest.approx(hm.result.value("comp", "L2H1"))
    hm.primaries = ["L1H0", "L9H9"]  # a head outside the model: the error is shown, the old scores stay
    assert "outside the model" in hm.error and [str(u) for u in hm.result.primaries] == ["L1H0"]
    hm.primaries = ["1.0", "1.1"]  # any head spelling; the trait keeps the page's labels
    assert hm.primaries == ["L1H0", "L1H1"] and hm.error == "" and hm.version == 3
    single = list(hm.scores["single"])
    hm.primaries = []  # the last primary removed: no stale CoAx scores of the old S
    assert all(v is None for v in hm.scores["comp"]) and hm.scores["single"] == single
    assert "S is empty" in hm.error and hm.version == 4
    hm.primaries = ["L1H0", "L1H1"]
    assert hm.error == "" and hm.grid()[2, 0] > 0


def test_old_seed_names_still_work_with_a_warning(engine):
    with pytest.warns(DeprecationWarning, match="primaries"):
        w = HeadMap.live(engine, seed=["1.0", "1.1"])
    with pytest.warns(DeprecationWarning, match="renamed primaries"):
        assert w.seed == ["L1H0", "L1H1"]


@pytest.fixture(scope="module")
def sens(engine):
    """Choices of S on the hand-wired organism: the card's, AtP and single ablation at
    k = 1..3, ACDC's circuit at two thresholds (given out of order)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # single ablation finds only 2 heads: its k=3 is dropped, with a warning
        return p_sensitivity(engine, methods=["atp", "single"], ks=[1, 2, 3], taus=[1.0, 0.1],
                             sets={"card": ["L1H0", "L1H1"]}, truth=["L2H0", "L2H1"], progress=False)


def test_every_component_has_a_static_picture(engine, hm, sens):
    comps = [hm, BlindSpot(hm.result, truth=["L2H0"]), SensitivityExplorer(sens),
             SynergyGrid(synergy(engine, ["L1H0", "L1H1", "L2H0", "L2H1"], progress=False), name="normalized",
                         groups={"L2H0": "backup", "L2H1": "backup"}),
             Curves(wakeup(engine, None, ["L1H0", "L1H1"], ["L2H0"], n_random=2).curves["dla"]),
             RankingTable(hm.result)]
    assert [cls for cls in COMPONENTS if not any(isinstance(c, cls) for c in comps)] == []
    for c in comps:
        data, _ = c._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in data
        png = base64.b64decode(data["image/png"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000, type(c).__name__


def test_curves_append_and_ranking_order(hm):
    cv = Curves()
    for k in range(3):
        cv.append("loss", k, 10.0 / (k + 1))
    cv.append("band", 0, 1.0, lo=0.5, hi=1.5)
    assert cv.data["series"][0]["y"] == [10.0, 5.0, 10.0 / 3]
    assert cv.curves().get("band")["lo"] == [0.5]
    rt = RankingTable(hm.result, sort_by="comp")
    order = rt.rows()
    assert order[:2] in (["L2H0", "L2H1"], ["L2H1", "L2H0"])
    assert order[-2:] == ["L1H0", "L1H1"]  # NaN (primaries) last
    rt.descending = False
    assert rt.rows()[0] not in ("L2H0", "L2H1")


def test_widget_bad_input(hm):
    with pytest.raises(ValueError, match="no score 'atp'"):
        HeadMap(hm.result, score="atp")
    with pytest.raises(ValueError, match="no score"):
        BlindSpot(hm.result, x="atp")
    with pytest.raises(ValueError, match="at least two"):
        link(hm)
    assert len(link(hm, BlindSpot(hm.result), RankingTable(hm.result))) == 2


def test_sensitivity_explorer_walks_the_choices_of_s(sens):
    w = SensitivityExplorer(sens)
    labels = sens.labels
    assert labels == ["card", "atp k=1", "atp k=2", "atp k=3", "single k=1", "single k=2", "acdc tau=1",
                      "acdc tau=0.1"]
    # families in order of discovery; the tau sweep runs by tau, whatever order it was given in
    assert w.groups == {"given": [0], "atp": [1, 2, 3], "single": [4, 5], "acdc tau": [7, 6]}
    # default: the first discovery method with more than one choice, at its first choice
    assert (w.group, w.index, w.label, w.selected) == ("atp", 1, "atp k=1", ["L1H0"])
    assert w.reference_index == 0 and w.truth == ["L2H0", "L2H1"] and (w.n_layers, w.n_heads) == (3, 4)
    assert [c["n_selected"] for c in w.choices] == [2, 1, 2, 3, 1, 2, 4, 4]
    assert w.choices[2]["scores"][4] is None and w.choices[2]["scores"][8] == pytest.approx(
        sens.sets[2]["scores"][8])  # NaN (inside S) travels as null
    assert w.rho_to_reference == pytest.approx(list(sens.rho[:, 0]))
    assert w.overlap_to_reference == pytest.approx(list(sens.overlap[:, 0]))
    assert [c["auc"] for c in w.choices] == [sens.auc(x) for x in labels]
    # the slider's atp k=2 is the card's S: it ranks the two backups first
    w.index = 2
    assert (w.group, w.selected) == ("atp", ["L1H0", "L1H1"])
    ranked = w.ranking()
    assert len(ranked) == 10 and {h for h, _ in ranked[:2]} == {"L2H0", "L2H1"}
    assert [(h, v) for h, v in ranked] == [(str(u), pytest.approx(v)) for u, v in sens.ranking("atp k=2", 10)]
    assert w.choices[2]["auc"] == 1.0 and w.rho_to_reference[2] == pytest.approx(1.0)
    # with only L1H0 removed (atp k=1), backup L2H1 (which watches L1H1) stays dormant
    assert w.choices[1]["scores"][Unit(2, 1).flat(4)] < 1e-3 * dict(ranked)["L2H1"]
    # the index leads the family; a family change starts at its first choice
    w.index = 7
    assert (w.group, w.label, w.selected) == ("acdc tau", "acdc tau=0.1", ["L0H0", "L1H0", "L1H1", "L1H2"])
    w.group = "single"
    assert (w.index, w.label, w.selected) == (4, "single k=1", [str(sens.sets[4]["primaries"][0])])
    assert w.choose("card").group == "given" and w.selected == ["L1H0", "L1H1"]
    w.rows = 3
    assert len(w.ranking()) == 3
    assert SensitivityExplorer(sens, group="acdc tau", rows=4).index == 7


def test_sensitivity_explorer_figure_is_the_current_ranking(sens):
    w = SensitivityExplorer(sens).choose("atp k=2")
    ax = w.figure().axes[0]
    ranked = w.ranking()
    pal = plots.palette()
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert ticks == [h + (" ○" if h in ("L2H0", "L2H1") else "") for h, _ in ranked]
    widths = [p.get_width() for p in ax.patches]
    assert widths == pytest.approx([v for _, v in ranked])
    want = [pal["truth"] if h in ("L2H0", "L2H1") else pal["point"] for h, _ in ranked]
    assert [to_rgb(p.get_facecolor()) for p in ax.patches] == [to_rgb(c) for c in want]
    title = ax.get_title()
    assert "atp k=2: S = L1H0, L1H1 (2 heads selected)" in title and "top 10 heads outside S" in title
    assert "vs reference card: Spearman rho 1 · top-5 overlap 1 · ROC-AUC 1 against 2 truth heads" in title
    # a choice that selects no head: the page and the PNG say so, no empty chart
    sets = [dict(c) for c in sens.sets]
    sets[3].update(primaries=[], n_selected=0, scores=np.full(12, np.nan), auc=None, source="none: every head pruned")
    empty = SensitivityExplorer(replace(sens, sets=sets)).choose("atp k=3")
    assert empty.selected == [] and empty.ranking() == []
    ax = empty.figure().axes[0]
    assert not ax.patches and "S = none (0 heads selected)" in ax.get_title()
    assert [t.get_text() for t in ax.texts] == ["no ranking: this choice selects no heads"]


def test_sensitivity_explorer_bad_input(sens, hm):
    with pytest.raises(TypeError, match="SensitivityExplorer draws a Sensitivity"):
        SensitivityExplorer(hm.result)
    with pytest.raises(ValueError, match="no family of choices 'acdc'; this Sensitivity has given, atp, single, "
                                         "acdc tau"):
        SensitivityExplorer(sens, group="acdc")
    w = SensitivityExplorer(sens)
    with pytest.raises(ValueError, match="no family of choices 'role'"):
        w.group = "role"
    with pytest.raises(ValueError, match=r"index 8 is outside the 8 choices of S \(0..7\)"):
        w.index = 8
    with pytest.raises(ValueError, match="outside"):
        w.index = -1
    with pytest.raises(ValueError, match="no choice 'atp k=9'; have card, atp k=1"):
        w.choose("atp k=9")
    with pytest.raises(ValueError, match="rows must be >= 1"):
        SensitivityExplorer(sens, rows=0)
    assert (w.group, w.index) == ("atp", 1)  # a refused value leaves the widget as it was


# ------------------------------------------------------------ page and PNG agree
@pytest.fixture(scope="module")
def scores():
    """3 x 4 heads; comp NaN on the primaries L1H0, L1H1 and on a non-primary, L0H2."""
    comp = np.array([0.5, -1.0, np.nan, 2.0, np.nan, np.nan, 0.0, 1.5, 3.0, -0.5, 0.25, 1.0])
    single = np.array([0.1, 0.4, 0.2, 0.3, 9.0, 8.0, 0.7, 0.6, 0.05, 0.5, 0.9, 0.8])
    return UnitScores(3, 4, [Unit(1, 0), Unit(1, 1)], {"comp": comp, "single": single})


def test_blindspot_percentiles_are_the_ranks_outside_the_primaries_and_nan_stays_out(scores):
    px, py, names = BlindSpot(scores).percentiles()
    assert names == ["L0H0", "L0H1", "L0H2", "L0H3", "L1H2", "L1H3", "L2H0", "L2H1", "L2H2", "L2H3"]
    # single, primaries left out: 0.1 0.4 0.2 0.3 0.7 0.6 0.05 0.5 0.9 0.8 -> ranks of 10 values
    assert px == pytest.approx(100 / 9 * np.array([1, 4, 2, 3, 7, 6, 0, 5, 9, 8]))
    # comp: L0H2 is NaN, so 9 values rank 0..8 and L0H2 has no percentile (the page draws no point)
    assert np.isnan(py[2])
    assert np.delete(py, 2) == pytest.approx(100 / 8 * np.array([4, 0, 7, 2, 6, 8, 1, 3, 5]))
    assert plots.percentiles([np.nan, 3.0, np.nan]) == pytest.approx([np.nan, 50.0, np.nan], nan_ok=True)


def test_blindspot_figure_draws_no_nan_head(scores):
    w = BlindSpot(scores, x="single", y="comp", truth=["L2H0"])
    fig = w.figure()
    heads, truth = fig.axes[0].collections[:2]
    drawn = np.vstack([heads.get_offsets(), truth.get_offsets()])
    assert len(drawn) == 9  # 10 heads outside the primaries, minus L0H2 whose comp is NaN
    px, py, names = w.percentiles()
    assert truth.get_offsets().tolist() == [[px[names.index("L2H0")], py[names.index("L2H0")]]]
    assert np.isfinite(drawn).all()
    assert to_rgb(truth.get_facecolor()[0]) == pytest.approx(to_rgb(plots.palette()["truth"]))
    assert to_rgb(heads.get_facecolor()[0]) == pytest.approx(to_rgb(plots.palette()["point"]))


def rgb255(c):
    return np.round(np.array(to_rgb(c)) * 255)


def test_headmap_figure_uses_the_page_scale_and_hides_nan(scores):
    fig = HeadMap(scores, score="comp").figure()
    im = fig.axes[0].images[0]
    pal = plots.palette()
    # comp has both signs: the diverging scale, symmetric around 0 over the non-primary values
    assert im.norm.vmin == -3.0 and im.norm.vmax == 3.0
    assert rgb255(im.to_rgba(0.0)) == pytest.approx(pal["diverging"][1], abs=1)
    assert rgb255(im.to_rgba(-3.0)) == pytest.approx(pal["diverging"][0], abs=1)
    assert rgb255(im.to_rgba(3.0)) == pytest.approx(pal["diverging"][2], abs=1)
    shown = np.asarray(im.get_array())
    # primaries and the NaN head are masked (grey / covered), never drawn as the maximum
    assert np.isnan(np.ma.getdata(shown))[[0, 1, 1], [2, 0, 1]].all()
    assert rgb255(im.cmap(np.ma.masked_invalid([np.nan]))[0]) == pytest.approx(rgb255(pal["nan"]))
    squares = [p for p in fig.axes[0].patches if to_rgb(p.get_facecolor()) == to_rgb(pal["primary"])]
    assert sorted((p.get_xy()[1] + 0.5, p.get_xy()[0] + 0.5) for p in squares) == [(1, 0), (1, 1)]
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["S", "S"]
    seq = HeadMap(scores, score="single").figure().axes[0].images[0]
    # one sign: the sequential scale from the smallest to the largest non-primary value
    assert (seq.norm.vmin, seq.norm.vmax) == (0.05, 0.9)
    assert rgb255(seq.to_rgba(0.05)) == pytest.approx(pal["sequential"][0], abs=1)
    assert rgb255(seq.to_rgba(0.9)) == pytest.approx(pal["sequential"][-1], abs=1)
    assert rgb255(seq.to_rgba(0.475)) == pytest.approx(pal["sequential"][2], abs=1)


def test_curves_figure_uses_the_page_line_colours():
    c = Curves()
    for k in range(9):
        c.append(f"s{k}", 0, 1.0 + k)
    c.hidden = ["s1"]
    lines = c.figure().axes[0].lines
    names = [f"s{k}" for k in range(9) if k != 1]
    assert [ln.get_label() for ln in lines] == names
    # every series keeps its page colour (the k-th palette colour) when another is hidden
    want = [plots.palette()["lines"][int(n[1:]) % 8] for n in names]
    assert [to_rgb(ln.get_color()) for ln in lines] == [to_rgb(w) for w in want]
    assert plots.palette()["lines"][7].upper() == "#7F7F7F"  # one 8th colour, page and PNG


# ------------------------------------------------------------ built bundles
def load_build():
    spec = importlib.util.spec_from_file_location("widgets_build", ROOT / "widgets" / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_bundles_are_built_from_the_current_sources():
    build = load_build()
    assert build.stale() == [], "run: python widgets/build.py"
    # the bundles the package loads (the checkout's, or an installed wheel's) are the build's output
    assert {p.name: p.read_text() for p in build.OUT.iterdir()} == {p.name: p.read_text() for p in STATIC.iterdir()}
    shipped = {p.read_text() for p in STATIC.iterdir()}
    for cls in COMPONENTS:
        # given as paths, anywidget turns them into watched file contents (hot reload)
        for asset in (cls._esm, cls._css):
            assert type(asset).__name__ == "FileContents" and str(asset) in shipped, cls.__name__
    # the palette the pages are built with is the one the PNGs are drawn with
    assert json.loads((STATIC / "palette.json").read_text()) == plots.palette()
    assert f"const PALETTE = {json.dumps(plots.palette(), separators=(', ', ': '))};" in (STATIC / "headmap.js").read_text()


def test_no_module_imports_anything_from_the_network():
    for path in sorted(STATIC.iterdir()) + sorted((ROOT / "widgets").glob("*.[jc]s*")):
        text = path.read_text()
        if path.parent == STATIC:  # a bundle is self-contained: no import at all
            assert not re.search(r"^\s*import\b|\bimport\s*\(", text, re.M), path.name
        else:  # sources import only each other
            for target in re.findall(r'^import .* from "([^"]+)"', text, re.M):
                assert re.fullmatch(r"\./[\w-]+\.(js|json)", target), (path.name, target)
        assert "https://" not in text and "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "@import" not in text and "url(" not in text, path.name


def test_linked_views_follow_a_headmap_rescan(engine):
    """A click that changes S rescans in the kernel; the linked BlindSpot and RankingTable
    then draw the new scores (not the old S's), and clear with S."""
    from coax_nb import coax_scan

    hm = HeadMap.live(engine, primaries=["L1H0", "L1H1"], truth=["L2H0", "L2H1"])
    bs, rt = BlindSpot(hm.result), RankingTable(hm.result)
    link(hm, bs, rt)
    hm.primaries = ["L1H0"]  # the page's click on L1H1
    fresh = coax_scan(engine, primaries=["L1H0"], progress=False)
    assert bs.primaries == rt.primaries == ["L1H0"]
    assert np.allclose(float_values(bs.y), fresh["comp"], equal_nan=True)
    assert np.allclose(float_values(rt.scores["comp"]), fresh["comp"], equal_nan=True)
    assert rt.result is hm.result
    rt.selected = ["L0H2"]  # a row clicked where only the kernel links them (marimo): the others follow
    assert hm.selected == bs.selected == ["L0H2"]
    hm.primaries = ["L1H0", "L9H9"]  # a failed rescan: the views keep the last good scores
    assert bs.primaries == ["L1H0"]
    hm.primaries = []  # no S: nothing that depends on S is left
    assert bs.primaries == [] and all(v is None for v in bs.y) and all(v is None for v in rt.scores["comp"])
    assert rt.scores["single"] == json_values(fresh["single"])


def test_views_say_what_their_numbers_are(engine):
    """Each scan view carries a caption: the ablation, the units of the effect scores, the
    prompts and S; it follows a rescan."""
    hm = HeadMap.live(engine, primaries=["L1H0", "L1H1"], truth=["L2H0", "L2H1"])
    bs, rt = BlindSpot(hm.result), RankingTable(hm.result)
    link(hm, bs, rt)
    want = ("zero ablation · single / conditional / comp in Fisher energy; ratio, wakeup, coact without units · "
            "16 prompts · S = L1H0, L1H1")
    assert hm.caption == bs.caption == rt.caption == want
    hm.primaries = ["L1H0"]
    assert hm.caption.endswith("S = L1H0") and bs.caption == rt.caption == hm.caption


def test_grid_and_curves_say_their_ablation_and_units(engine):
    """SynergyGrid and Curves state the ablation that made their numbers, the units and the
    prompts; co-activation says no ablation was done; a curves result without a record of
    its ablation says so rather than nothing."""
    heads = ["L1H0", "L1H1", "L2H0", "L2H1"]
    pairs = synergy(engine, heads, ablation="mean", progress=False)
    assert SynergyGrid(pairs).caption == ("mean ablation · synergy over sqrt(single_u single_v), without units · "
                                          "16 prompts")
    assert SynergyGrid(pairs, name="raw").caption == "mean ablation · synergy in Fisher energy · 16 prompts"
    from coax_nb import co_activation

    assert SynergyGrid(co_activation(engine, heads)).caption.startswith("no ablation (intact model) · correlation")
    w = wakeup(engine, None, ["L1H0", "L1H1"], ["L2H0", "L2H1"], n_random=3, ablation="resample")
    cv = Curves(w.curves["dla"])
    assert cv.caption == ("resample ablation · 16 prompts · primaries removed in 1 order(s); 3 random sets of 2 "
                          "heads") and cv.data["ylabel"] == "DLA (logits)"
    live = Curves()
    assert live.caption == ""  # nothing measured yet
    live.data = {**live.data, "meta": {"ablation": "zero", "n_prompts": 32}}
    assert live.caption == "zero ablation · 32 prompts"
    old = replace(w.curves["dla"], meta={})  # a result saved before its ablation was recorded
    assert Curves(old).caption == "no ablation recorded"


def test_sensitivity_explorer_says_its_ablation(sens):
    w = SensitivityExplorer(sens)
    assert w.caption == (f"zero ablation · bars: comp (in Fisher energy) · {sens.meta['n_prompts']} prompts · "
                         f"{sens.meta['scans']} scans, one per choice of S")
