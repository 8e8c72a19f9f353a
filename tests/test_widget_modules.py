"""Each widget's ES module, unit-tested in a static page in headless Chromium with a fake
anywidget model (get / set / on / save_changes), no Jupyter involved."""
import json
import re
import warnings
from dataclasses import replace

import numpy as np
import pytest
from matplotlib.colors import to_rgb

from coax_nb import load_model, plots, widgets
from coax_nb.organisms import task_for
from coax_nb.results import Curves, PairScores, UnitScores
from coax_nb.units import Unit

from conftest import js_fmt, screenshot

FAKE_MODEL = """
window.makeModel = (state) => {
  const handlers = {};
  return {
    state, saves: 0,
    get(k) { return state[k]; },
    set(k, v) { state[k] = v; (handlers['change:' + k] || []).forEach((f) => f()); },
    on(evt, f) { (handlers[evt] = handlers[evt] || []).push(f); },
    off() {}, send() {},
    save_changes() { this.saves += 1; },
  };
};
"""




@pytest.fixture
def page(browser):
    p = browser.new_page(viewport={"width": 900, "height": 700})
    p.set_content("<!DOCTYPE html><html><body><div id='root'></div></body></html>")
    p.evaluate(FAKE_MODEL)
    yield p
    p.close()


def mount(page, bundle: str, state: dict):
    """Load a built bundle (``coax_nb/widgets/static/<bundle>.js`` and ``.css``), as anywidget does."""
    src = (widgets.STATIC / f"{bundle}.js").read_text()
    css = (widgets.STATIC / f"{bundle}.css").read_text()
    page.evaluate(
        """async ([src, css, state]) => {
          const style = document.createElement('style'); style.textContent = css; document.head.append(style);
          const url = URL.createObjectURL(new Blob([src], {type: 'text/javascript'}));
          const mod = await import(url);
          window.model = window.makeModel(state);
          mod.default.render({model: window.model, el: document.getElementById('root')});
        }""",
        [src, css, state],
    )


def state_of(w) -> dict:
    """The synced traitlets of a Python widget, as the page would receive them."""
    state = w.get_state()
    return json.loads(json.dumps({k: v for k, v in state.items() if not k.startswith("_") and k != "layout"}))


@pytest.fixture(scope="module")
def scores():
    rng = np.random.default_rng(0)
    comp = rng.normal(size=12)
    comp[[4, 5]] = np.nan
    return UnitScores(3, 4, [Unit(1, 0), Unit(1, 1)], {"comp": comp, "single": rng.random(12)})


def test_headmap_module(page, scores):
    w = widgets.HeadMap(scores, truth=["L2H0"])
    mount(page, "headmap", state_of(w))
    assert page.locator(".cell").count() == 12
    assert page.locator(".truth-mark").count() == 1
    assert page.locator(".cell-rect.primary").count() == 2
    page.hover(".cell[data-unit='L2H0']")
    tip = page.locator(".coax-tooltip").inner_text()
    assert "head L2H0 — ground truth" in tip
    assert f"comp: {js_fmt(scores['comp'][8])}" in tip and f"single: {js_fmt(scores['single'][8])}" in tip
    # switching the score re-labels every cell
    page.select_option(".coax-score-select", "single")
    assert page.evaluate("window.model.state.score") == "single"
    label = page.locator(".cell[data-unit='L0H3']").get_attribute("aria-label")
    assert label == f"head L0H3, single {js_fmt(scores['single'][3])}"
    # click toggles a primary; shift-click selects; keyboard works
    page.click(".cell[data-unit='L2H2']")
    assert page.evaluate("window.model.state.primaries") == ["L1H0", "L1H1", "L2H2"]
    page.click(".cell[data-unit='L0H1']", modifiers=["Shift"])
    assert page.evaluate("window.model.state.selected") == ["L0H1"]
    page.focus(".cell[data-unit='L1H0']")
    page.keyboard.press("Enter")
    assert page.evaluate("window.model.state.primaries") == ["L1H1", "L2H2"]
    assert page.evaluate("window.model.saves") == 4
    # busy indicator follows the kernel
    page.evaluate("window.model.set('busy', true)")
    assert page.locator(".coax-busy").is_visible()
    screenshot(page, "module-headmap")


def test_blindspot_module(page, scores):
    w = widgets.BlindSpot(scores, x="single", y="comp", truth=["L2H0", "L2H1"])
    mount(page, "blindspot", state_of(w))
    # primaries left out; NaN CoAx (the primaries) has no point either
    assert page.locator(".point").count() == 10
    assert page.locator(".point.truth").count() == 2
    px, py, names = w.percentiles()
    i = names.index("L2H1")
    page.hover(".point[data-unit='L2H1']")
    tip = page.locator(".coax-tooltip").inner_text()
    assert f"(p{round(px[i])})" in tip and f"(p{round(py[i])})" in tip
    page.click(".point[data-unit='L2H1']")
    page.click(".point[data-unit='L0H0']", modifiers=["Shift"])
    assert page.evaluate("window.model.state.selected") == ["L2H1", "L0H0"]
    screenshot(page, "module-blindspot")


def test_synergy_module(page):
    units = [Unit(1, 0), Unit(1, 1), Unit(2, 0), Unit(2, 1)]
    m = np.array([[np.nan, 0.1, 0.9, 0.0], [0.1, np.nan, 0.0, 0.8], [0.9, 0.0, np.nan, 0.05],
                  [0.0, 0.8, 0.05, np.nan]])
    w = widgets.SynergyGrid(PairScores(units, {"normalized": m}),
                            groups={"L1H0": "mover", "L1H1": "mover", "L2H0": "backup", "L2H1": "backup"})
    assert w.orders["cluster"] != w.orders["given"]
    mount(page, "synergy", state_of(w))
    assert page.locator(".pair-cell").count() == 16
    assert page.locator(".group-block").count() == 2
    page.hover(".pair-cell[data-pair='L1H0|L2H0']")
    assert "normalized: 0.9000" in page.locator(".coax-tooltip").inner_text()
    page.click(".pair-cell[data-pair='L1H1|L2H1']")
    assert page.evaluate("window.model.state.selected_pair") == ["L1H1", "L2H1"]
    page.select_option(".coax-order-select", "cluster")
    rows = page.locator("svg text.coax-axis[text-anchor='end']").all_text_contents()
    assert [r.split()[0] for r in rows] == [w.units[i] for i in w.orders["cluster"]]
    screenshot(page, "module-synergy")


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_synergy_collapses_a_module_to_its_mean(page, theme):
    if theme == "dark":
        page.evaluate(DARK_THEME)
    units = [Unit(1, 0), Unit(1, 1), Unit(2, 0), Unit(2, 1), Unit(0, 3)]
    m = np.array([[np.nan, 0.1, 0.9, 0.0, 0.2], [0.1, np.nan, 0.0, 0.8, 0.3], [0.9, 0.0, np.nan, 0.05, np.nan],
                  [0.0, 0.8, 0.05, np.nan, 0.4], [0.2, 0.3, np.nan, 0.4, np.nan]])
    w = widgets.SynergyGrid(PairScores(units, {"normalized": m}),
                            groups={"L1H0": "mover", "L1H1": "mover", "L2H0": "backup", "L2H1": "backup"})
    mount(page, "synergy", state_of(w))
    assert page.locator(".coax-collapse").all_text_contents() == ["▾ mover", "▾ backup"]  # "other" has none
    page.click(".coax-collapse[data-group='backup']")
    assert page.evaluate("window.model.state.collapsed") == ["backup"]
    assert page.locator(".pair-cell").count() == 16  # 3 heads + 1 module row, its diagonal drawn
    w.collapsed = ["backup"]
    labels, shown, _, members = w.shown()
    assert labels == ["L1H0", "L1H1", "backup (2 heads)", "L0H3"] and members[2] == ["L2H0", "L2H1"]
    # by hand: backup's cells are the means over its pairs, NaN left out
    assert shown[0, 2] == pytest.approx((0.9 + 0.0) / 2) and shown[2, 2] == pytest.approx(0.05)
    assert shown[3, 2] == pytest.approx(0.4)  # L0H3 x L2H0 is NaN: only L0H3 x L2H1 counts
    page.hover(".pair-cell[data-pair='L1H0|backup (2 heads)']")
    assert f"normalized: mean {js_fmt(shown[0, 2])} over 2 pairs" in page.locator(".coax-tooltip").inner_text()
    page.hover(".pair-cell[data-pair='backup (2 heads)|backup (2 heads)']")
    assert f"mean {js_fmt(shown[2, 2])} over 2 pairs" in page.locator(".coax-tooltip").inner_text()
    page.click(".pair-cell[data-pair='L1H1|backup (2 heads)']")  # selects every head of both rows
    assert sorted(page.evaluate("window.model.state.selected")) == ["L1H1", "L2H0", "L2H1"]
    screenshot(page, f"module-synergy-collapsed-{theme}")
    # the figure draws the same rows; a click on the module's row label expands it again
    ax = w.figure().axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["L1H0 mover", "L1H1 mover", "backup (2 heads)",
                                                           "L0H3 other"]
    assert np.allclose(ax.images[0].get_array().filled(np.nan)[0, 2], shown[0, 2])
    page.click(".coax-row-label[data-row='backup (2 heads)']")
    assert page.evaluate("window.model.state.collapsed") == [] and page.locator(".pair-cell").count() == 25
    page.click(".coax-row-label[data-row='L1H0']")  # a head's label collapses its group
    assert page.evaluate("window.model.state.collapsed") == ["mover"]
    page.click(".coax-row-label[data-row='L0H3']")  # ungrouped: nothing to collapse
    assert page.evaluate("window.model.state.collapsed") == ["mover"]


def test_curves_module(page):
    c = Curves("wake-up", "primaries ablated", "DLA")
    c.add("selected", [0, 1, 2], [0.0, 1.75, 3.5])
    c.add("random", [0, 1, 2], [0.1, 0.1, 0.1], [0.0, 0.0, 0.0], [0.2, 0.2, 0.2])
    w = widgets.Curves(c)
    mount(page, "curves", state_of(w))
    assert page.locator("path.line").count() == 2
    assert page.locator("path.band").count() == 1
    box = page.locator(".coax-hit").bounding_box()
    page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2)
    assert page.locator(".coax-readout").inner_text() == "primaries ablated = 2 — selected: 3.500; random: 0.1000"
    ticks = page.locator("svg text.coax-axis").all_text_contents()
    assert "0.875" in ticks and "1.5" in ticks and not any(t.endswith("00") and "." in t for t in ticks), ticks
    page.click(".legend-item[data-series='random']")
    assert page.evaluate("window.model.state.hidden") == ["random"]
    assert page.locator("path.line").count() == 1
    # live append: the kernel replaces data with one more point
    w.append("selected", 3, 4.0)
    before = page.locator("path.line[data-series='selected']").get_attribute("d")
    page.evaluate("(d) => window.model.set('data', d)", json.loads(json.dumps(w.data)))
    after = page.locator("path.line[data-series='selected']").get_attribute("d")
    assert before.count("L") == 2 and after.count("L") == 3
    # log scale drops the non-positive point of the line
    page.check(".coax-log-toggle")
    assert page.evaluate("window.model.state.data.log_y") is True
    assert page.locator("path.line[data-series='selected']").get_attribute("d").count("L") == 2
    screenshot(page, "module-curves")


def test_ranking_module(page, scores):
    w = widgets.RankingTable(scores, sort_by="single", truth=["L2H0"])
    mount(page, "ranking", state_of(w))
    rows = page.locator("tbody tr")
    assert rows.count() == 12
    assert [r.split("\t")[1].split()[0] for r in rows.all_inner_texts()] == w.rows()
    page.click("th[data-score='single']")  # same column: flips to ascending
    assert page.evaluate("window.model.state.descending") is False
    first = page.locator("tbody tr").first.get_attribute("data-unit")
    assert first == str(Unit(*divmod(int(np.argmin(scores["single"])), 4)))
    page.click("tbody tr[data-unit='L2H3']")
    assert page.evaluate("window.model.state.selected") == ["L2H3"]
    screenshot(page, "module-ranking")


def rgb(text: str) -> list[int]:
    """``rgb(r, g, b)`` (a computed style) as numbers."""
    return [int(x) for x in re.findall(r"\d+", text)[:3]]


def rgb255(color) -> list[int]:
    return [round(255 * c) for c in to_rgb(color)]


@pytest.mark.parametrize("score", ["comp", "single"])
def test_headmap_page_and_png_agree_cell_by_cell(page, score):
    """Every cell: the page's fill is the PNG's colour for the same value; the primaries
    are black in both, and a NaN head is the same grey in both (never a scale extreme)."""
    rng = np.random.default_rng(3)
    comp, single = rng.normal(size=12), rng.random(12)
    comp[[4, 5, 2]] = np.nan  # the primaries and one more head
    w = widgets.HeadMap(UnitScores(3, 4, [Unit(1, 0), Unit(1, 1)], {"comp": comp, "single": single}), score=score)
    mount(page, "headmap", state_of(w))
    fills = page.evaluate("[...document.querySelectorAll('.cell-rect')].map((r) => getComputedStyle(r).fill)")
    ax = w.figure().axes[0]
    im = ax.images[0]
    primaries = {(p.get_xy()[1] + 0.5, p.get_xy()[0] + 0.5): p.get_facecolor() for p in ax.patches}
    assert set(primaries) == {(1, 0), (1, 1)}
    values = w.grid()
    for i, fill in enumerate(fills):
        layer, head = divmod(i, 4)
        if (layer, head) in primaries:
            want = rgb255(primaries[layer, head])
        else:
            want = [round(255 * c) for c in im.to_rgba(np.ma.masked_invalid([values[layer, head]]))[0][:3]]
        assert rgb(fill) == pytest.approx(want, abs=1), (str(Unit(layer, head)), fill, want)
    nan_grey = rgb255(plots.palette()["nan"])
    if score == "comp":
        assert rgb(fills[2]) == nan_grey
    assert rgb(fills[4]) == rgb255(plots.palette()["primary"])


def test_curves_page_and_png_use_the_same_line_colours(page):
    w = widgets.Curves(Curves("many", "x", "y"))
    for k in range(9):
        w.append(f"s{k}", 0, 1.0 + k)
        w.append(f"s{k}", 1, 2.0 + k)
    w.hidden = ["s2"]
    mount(page, "curves", state_of(w))
    page_colors = page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('path.line')].map((p) => [p.dataset.series, p.getAttribute('stroke')]))")
    png_colors = {ln.get_label(): ln.get_color() for ln in w.figure().axes[0].lines}
    assert sorted(page_colors) == sorted(png_colors) == [f"s{k}" for k in range(9) if k != 2]
    for name, color in page_colors.items():
        assert rgb255(color) == rgb255(png_colors[name]), name


def test_blindspot_page_and_png_draw_the_same_points(page):
    """A head whose score is NaN is left out of both, not drawn at the 100th percentile."""
    single = np.linspace(0.1, 1.2, 12)
    comp = single[::-1].copy()
    comp[[4, 5, 7]] = np.nan  # the primaries and one more head
    w = widgets.BlindSpot(UnitScores(3, 4, [Unit(1, 0), Unit(1, 1)], {"comp": comp, "single": single}),
                          truth=["L2H0"])
    mount(page, "blindspot", state_of(w))
    shown = page.evaluate("[...document.querySelectorAll('.point')].map((c) => c.dataset.unit)")
    assert "L1H3" not in shown and len(shown) == 9
    heads, truth = w.figure().axes[0].collections[:2]
    assert len(heads.get_offsets()) + len(truth.get_offsets()) == len(shown)
    px, py, names = w.percentiles()
    svg_xy = page.evaluate("[...document.querySelectorAll('.point')].map((c) => [c.dataset.unit,"
                           " +c.getAttribute('cx'), +c.getAttribute('cy')])")
    # the page's axes: 0..100 percent over [52, 368] px in x and [296, 10] px in y
    for unit, cx, cy in svg_xy:
        k = names.index(unit)
        assert (cx - 52) / 316 * 100 == pytest.approx(px[k]) and (296 - cy) / 286 * 100 == pytest.approx(py[k])


DARK_THEME = """() => {
  const s = document.body.style;
  s.setProperty('--jp-ui-font-color1', 'rgb(230, 230, 230)');
  s.setProperty('--jp-ui-font-color2', 'rgb(190, 190, 190)');
  s.setProperty('--jp-layout-color1', 'rgb(17, 17, 17)');
  s.background = 'rgb(17, 17, 17)';
}"""


def test_dark_theme_uses_jupyterlab_colours(page, scores):
    """Under JupyterLab's dark theme variables, text and tooltips follow the theme."""
    page.evaluate(DARK_THEME)
    mount(page, "ranking", state_of(widgets.RankingTable(scores)))
    color = page.evaluate("getComputedStyle(document.querySelector('.coax-root')).color")
    assert color == "rgb(230, 230, 230)"
    cell = page.evaluate("getComputedStyle(document.querySelector('.coax-ranking td')).color")
    assert cell == "rgb(230, 230, 230)"
    mount(page, "headmap", state_of(widgets.HeadMap(scores)))
    page.hover(".coax-headmap .cell[data-unit='L0H0']")
    tip = page.evaluate("(() => { const t = getComputedStyle(document.querySelector('.coax-headmap .coax-tooltip'));"
                        " return [t.color, t.backgroundColor]; })()")
    assert tip == ["rgb(230, 230, 230)", "rgb(17, 17, 17)"]
    axis = page.evaluate("getComputedStyle(document.querySelector('.coax-headmap text.coax-axis')).fill")
    assert axis == "rgb(190, 190, 190)"
    screenshot(page, "module-dark-theme")


@pytest.fixture(scope="module")
def sens():
    """p_sensitivity on the hand-wired organism (8 prompts): the card's S, AtP and single
    ablation at k = 1..3, ACDC's circuit at two thresholds."""
    from coax_nb.sensitivity import p_sensitivity

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # single ablation finds only 2 heads: its k=3 is dropped, with a warning
        return p_sensitivity(load_model("organism:handwired"), task_for("handwired", 8), methods=["atp", "single"],
                             ks=[1, 2, 3], taus=[0.1, 1.0], sets={"card": ["L1H0", "L1H1"]},
                             truth=["L2H0", "L2H1"], progress=False)


def rank_rows(page) -> list[list[str]]:
    """The page's ranking: [head label, value text] per row, top first."""
    return page.evaluate("[...document.querySelectorAll('.coax-sensitivity .rank-row')].map((g) =>"
                         " [g.querySelector('.head-label').textContent, g.querySelector('.value').textContent])")


def test_sensitivity_module(page, sens):
    w = widgets.SensitivityExplorer(sens)
    mount(page, "sensitivity", state_of(w))
    slider = page.locator(".coax-sensitivity input[type=range]")
    assert (slider.get_attribute("max"), slider.input_value()) == ("2", "0")
    assert page.locator(".coax-step-value").inner_text() == "k = 1"
    assert page.locator(".coax-sens-s").inner_text() == "S = L1H0 (1 head selected)"
    assert page.locator(".coax-sens-source").inner_text() == f" — {sens.choice('atp k=1')['source']}"
    # the slider moves from the keyboard; the page re-ranks with no kernel and saves index + selected
    slider.focus()
    page.keyboard.press("ArrowRight")
    assert page.evaluate("[window.model.state.index, window.model.state.selected, window.model.state.group]") == [
        2, ["L1H0", "L1H1"], "atp"]
    assert page.evaluate("window.model.saves") == 1
    assert page.locator(".coax-step-value").inner_text() == "k = 2"
    assert page.locator(".coax-sens-s").inner_text() == "S = L1H0, L1H1 (2 heads selected)"
    want = sens.ranking("atp k=2", 10)
    assert rank_rows(page) == [[str(u) + (" ○" if str(u) in sens.truth else ""), js_fmt(v)] for u, v in want]
    assert {r[0] for r in rank_rows(page)[:2]} == {"L2H0 ○", "L2H1 ○"}
    assert page.locator(".coax-sens-agreement").inner_text() == (
        f"vs reference card: Spearman rho {js_fmt(sens.rho[2, 0])} · top-5 overlap {js_fmt(sens.overlap[2, 0])}"
        f" · ROC-AUC {js_fmt(sens.auc('atp k=2'))} against 2 truth heads")
    slider.fill("2")
    assert page.locator(".coax-sens-s").inner_text() == "S = L1H0, L1H1, L1H2 (3 heads selected)"
    assert rank_rows(page)[0][0] == str(sens.ranking("atp k=3", 1)[0][0]) + " ○"
    # another family: the tau sweep, labelled by tau
    page.select_option(".coax-group-select", "acdc tau")
    assert page.evaluate("[window.model.state.group, window.model.state.index]") == ["acdc tau", 6]
    assert page.locator(".coax-step-value").inner_text() == "tau = 0.1"
    assert page.locator(".coax-sens-s").inner_text() == "S = L0H0, L1H0, L1H1, L1H2 (4 heads selected)"
    assert page.evaluate("window.model.state.selected") == ["L0H0", "L1H0", "L1H1", "L1H2"]
    # the kernel moves it too (e.g. choose() in Python)
    page.evaluate("window.model.set('index', 2)")
    assert page.locator(".coax-step-value").inner_text() == "k = 2" and slider.input_value() == "1"
    assert page.locator(".coax-group-select").input_value() == "atp"
    screenshot(page, "module-sensitivity")


def test_sensitivity_page_and_png_draw_the_same_bars(page, sens):
    """Every bar: the page's fill is the PNG's (the truth colour for ground truth, the point
    colour otherwise), in the same order, with the same value."""
    w = widgets.SensitivityExplorer(sens, group="single")
    mount(page, "sensitivity", state_of(w))
    page.locator(".coax-sensitivity input[type=range]").fill("1")
    w.index = page.evaluate("window.model.state.index")
    assert w.label == "single k=2" and w.selected == page.evaluate("window.model.state.selected")
    fills = page.evaluate("[...document.querySelectorAll('.coax-sensitivity rect.bar')].map((r) =>"
                          " getComputedStyle(r).fill)")
    ax = w.figure().axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [r[0] for r in rank_rows(page)]
    assert len(fills) == len(ax.patches) == 10
    for fill, patch in zip(fills, ax.patches):
        assert rgb(fill) == rgb255(patch.get_facecolor())
    truth = [r[0].endswith("○") for r in rank_rows(page)]
    assert any(truth) and not all(truth)
    assert {tuple(rgb(f)) for f, t in zip(fills, truth) if t} == {tuple(rgb255(plots.palette()["truth"]))}
    assert {tuple(rgb(f)) for f, t in zip(fills, truth) if not t} == {tuple(rgb255(plots.palette()["point"]))}


def test_sensitivity_module_shows_a_choice_without_heads(page, sens):
    sets = [dict(c) for c in sens.sets]
    sets[0].update(primaries=[], n_selected=0, scores=np.full(12, np.nan), auc=None, source="none: every head pruned")
    w = widgets.SensitivityExplorer(replace(sens, sets=sets), group="given")
    mount(page, "sensitivity", state_of(w))
    assert page.locator(".coax-sens-s").inner_text() == "S = none (0 heads selected)"
    assert page.locator(".coax-sens-empty").inner_text() == "no ranking: this choice selects no heads"
    assert page.locator(".rank-row").count() == 0
    assert page.locator(".coax-sensitivity input[type=range]").is_disabled()  # one choice: nothing to slide
    assert page.locator(".coax-sens-agreement").inner_text() == w.agreement() == (
        "this is the reference choice (card) · no ROC-AUC for this choice")


# --- issue 19 item 5: tooltips, table width, long group names, the blind-spot key, CSS scope

def rect(page, selector: str) -> dict:
    return page.evaluate("(s) => { const r = document.querySelector(s).getBoundingClientRect();"
                         " return {l: r.left, t: r.top, r: r.right, b: r.bottom}; }", selector)


def inside(inner: dict, outer: dict) -> bool:
    return (inner["l"] >= outer["l"] - 0.5 and inner["t"] >= outer["t"] - 0.5
            and inner["r"] <= outer["r"] + 0.5 and inner["b"] <= outer["b"] + 0.5)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_tooltip_stays_inside_the_component_and_the_viewport(page, scores, theme):
    """A 3x4 map in a narrow output area (overflow hidden, as tall as the map): the
    tooltip of a top-row head and of a right-column head lies wholly inside the component
    and the viewport, beside the pointer, not over it."""
    if theme == "dark":
        page.evaluate(DARK_THEME)
    page.evaluate("() => { const r = document.getElementById('root');"
                  " r.style.cssText = 'width: 260px; overflow: hidden; margin: 0'; document.body.style.margin = '0'; }")
    w = widgets.HeadMap(scores, truth=["L0H3", "L2H3"])
    mount(page, "headmap", state_of(w))
    viewport = {"l": 0, "t": 0, "r": 900, "b": 700}
    for unit in ["L0H0", "L0H3", "L2H3", "L1H3"]:
        cell = rect(page, f".cell[data-unit='{unit}'] .cell-rect")
        x, y = cell["r"] - 3, cell["t"] + 3  # the corner nearest the component's right / top edge
        page.mouse.move(x, y)
        tip = rect(page, ".coax-tooltip")
        box = rect(page, ".coax-root")
        assert tip["r"] - tip["l"] > 60 and tip["b"] - tip["t"] > 30, (unit, tip)
        assert inside(tip, box) and inside(tip, viewport), (unit, tip, box)
        assert not (tip["l"] <= x <= tip["r"] and tip["t"] <= y <= tip["b"]), (unit, tip, (x, y))
        assert f"head {unit}" in page.locator(".coax-tooltip").inner_text()
    # the right column flipped to the left of the pointer: 12 px right of it would overflow
    assert tip["r"] <= x
    screenshot(page, f"module-tooltip-{theme}")
    # at the viewport's bottom-right corner the tip flips up and left, still whole
    page.set_viewport_size({"width": 600, "height": 200})
    page.evaluate("() => { document.getElementById('root').style.cssText = 'width: 260px; margin: 30px 0 0 340px'; }")
    page.mouse.move(0, 0)
    cell = rect(page, ".cell[data-unit='L2H3'] .cell-rect")
    page.mouse.move(cell["l"] + 3, cell["t"] + 3)
    tip = rect(page, ".coax-tooltip")
    assert inside(tip, {"l": 0, "t": 0, "r": 600, "b": 200}), tip


ONE_LINE_PER_CELL = """() => [...document.querySelectorAll('.coax-ranking th, .coax-ranking td')].map((c) => {
  const r = document.createRange(); r.selectNodeContents(c);
  return new Set([...r.getClientRects()].map((q) => Math.round(q.top))).size; })"""
ROW_HEIGHTS = "[...document.querySelectorAll('.coax-ranking tr')].map((r) => r.getBoundingClientRect().height)"
SCROLL = ("(() => { const b = document.querySelector('.coax-table-box'), r = document.querySelector('.coax-root');"
          " return [b.scrollWidth, b.clientWidth, r.getBoundingClientRect().width]; })()")


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_ranking_cells_never_wrap_at_700px(page, theme):
    """A full scan's seven columns with awkward numbers in a 700 px output area: every
    cell is one line, numbers are compact (full value in the title) and the table needs no
    sideways scroll. Four more columns: still one line per cell; only the table box scrolls."""
    if theme == "dark":
        page.evaluate(DARK_THEME)
    page.evaluate("() => { document.getElementById('root').style.width = '700px'; }")
    rng = np.random.default_rng(5)
    names = ["single", "conditional", "comp", "coupling", "ratio", "wakeup", "coact"]  # coax_nb.scores
    vals = {n: rng.normal(size=12) * 10.0 ** rng.integers(-6, 5, size=12) for n in names}
    vals["comp"][3] = -1.234567e-5
    vals["coupling"][3] = 123456.789
    vals["ratio"][3] = 0.123456
    w = widgets.RankingTable(UnitScores(3, 4, [Unit(1, 0), Unit(1, 1)], vals), truth=["L2H0"], sort_by="comp")
    mount(page, "ranking", state_of(w))
    lines = page.evaluate(ONE_LINE_PER_CELL)
    assert len(lines) == 13 * 9 and set(lines) == {1}, lines
    heights = page.evaluate(ROW_HEIGHTS)
    assert max(heights) - min(heights) < 1.0 and max(heights) < 24, heights
    scroll_w, client_w, root_w = page.evaluate(SCROLL)
    assert scroll_w <= client_w and root_w <= 700, (scroll_w, client_w, root_w)
    row = page.locator("tbody tr[data-unit='L0H3'] td.num")
    assert row.all_inner_texts()[2:5] == ["-1.2e-5", "1.2e5", "0.123"]
    assert row.nth(2).get_attribute("title") == js_fmt(-1.234567e-5)
    screenshot(page, f"module-ranking-700px-{theme}")
    more = {**vals, **{n: rng.normal(size=12) for n in ["atp", "cond_atp", "eap_ig", "cond_eap_ig"]}}
    page.evaluate("(s) => window.model.set('scores', s)", json.loads(json.dumps(
        {k: [None if np.isnan(x) else float(x) for x in v] for k, v in more.items()})))
    lines = page.evaluate(ONE_LINE_PER_CELL)
    assert len(lines) == 13 * 13 and set(lines) == {1}
    scroll_w, client_w, root_w = page.evaluate(SCROLL)
    assert scroll_w > client_w and root_w <= 700, (scroll_w, client_w, root_w)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_synergy_shows_long_group_names_whole(page, theme):
    if theme == "dark":
        page.evaluate(DARK_THEME)
    units = [Unit(1, 0), Unit(1, 1), Unit(2, 0), Unit(2, 1)]
    m = np.array([[np.nan, 0.1, 0.9, 0.0], [0.1, np.nan, 0.0, 0.8], [0.9, 0.0, np.nan, 0.05],
                  [0.0, 0.8, 0.05, np.nan]])
    long30 = "backup name movers (late path)"
    huge = "a group name far too long to show: " + "x" * 80
    assert len(long30) == 30
    w = widgets.SynergyGrid(PairScores(units, {"normalized": m}),
                            groups={"L1H0": "mover", "L1H1": "mover", "L2H0": long30, "L2H1": huge})
    mount(page, "synergy", state_of(w))
    labels = page.evaluate("""() => [...document.querySelectorAll('.coax-synergy .coax-row-label')].map((g) => {
        const t = g.querySelector('text').getBoundingClientRect();
        const s = g.ownerSVGElement.getBoundingClientRect();
        return [g.querySelector('text').textContent, g.querySelector('title').textContent, t.left - s.left, t.right]; })""")
    first_cell = page.evaluate("Math.min(...[...document.querySelectorAll('.pair-cell')].map((c) => c.getBoundingClientRect().left))")
    by_unit = {text.split()[0]: (text, title, left, right) for text, title, left, right in labels}
    assert by_unit["L2H0"][0] == f"L2H0 {long30}"  # whole, not cut
    assert by_unit["L2H0"][1] == f"L2H0 — group {long30} (click to collapse)"
    assert by_unit["L2H1"][0].endswith("…") and by_unit["L2H1"][1] == f"L2H1 — group {huge} (click to collapse)"
    for text, _, left, right in labels:
        assert left >= 0 and right <= first_cell, (text, left, right, first_cell)
    screenshot(page, f"module-synergy-long-groups-{theme}")


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_blindspot_key_covers_no_point(page, theme):
    """Points along the anti-diagonal fill the blind-spot corner; the key is drawn where
    no point is, in the page and in the PNG (legend outside the axes, no text inside)."""
    if theme == "dark":
        page.evaluate(DARK_THEME)
    single = np.linspace(0.1, 2.0, 24)
    comp = single[::-1].copy()
    comp[[4, 5]] = np.nan
    w = widgets.BlindSpot(UnitScores(4, 6, [Unit(0, 4), Unit(0, 5)], {"comp": comp, "single": single}),
                          truth=["L0H0", "L0H1"])
    mount(page, "blindspot", state_of(w))
    key = rect(page, ".coax-blind-key")
    assert "blind spot" in page.locator(".coax-blind-key").inner_text()
    points = page.evaluate("[...document.querySelectorAll('.point')].map((c) => { const r = c.getBoundingClientRect();"
                           " return {l: r.left, t: r.top, r: r.right, b: r.bottom}; })")
    assert len(points) == 22
    text = page.evaluate("[...document.querySelectorAll('.coax-blindspot svg text')].map((t) => t.textContent)")
    assert not any("blind spot" in t for t in text)
    for p in points:
        assert p["r"] < key["l"] or p["l"] > key["r"] or p["b"] < key["t"] or p["t"] > key["b"], (p, key)
    assert min(p["t"] for p in points) > key["b"]  # a point at the 100th percentile is still below it
    screenshot(page, f"module-blindspot-key-{theme}")
    fig = w.figure()
    ax = fig.axes[0]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend, frame = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
    assert not legend.overlaps(frame) and not ax.texts
    assert "blind spot: low first-order, high CoAx" in [t.get_text() for t in ax.get_legend().get_texts()]


def css_rules(text: str):
    """(at-rule prelude or None, selector, declarations) for every rule of a stylesheet."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out, i, stack = [], 0, []
    while i < len(text):
        j = text.find("{", i)
        k = text.find("}", i)
        if k != -1 and (j == -1 or k < j):
            assert stack, "unbalanced }"
            stack.pop()
            i = k + 1
            continue
        if j == -1:
            assert not text[i:].strip(), text[i:]
            break
        head = text[i:j].strip()
        if head.startswith("@"):
            stack.append(head)
            i = j + 1
            continue
        end = text.index("}", j)
        out.append((stack[-1] if stack else None, head, text[j + 1:end]))
        i = end + 1
    assert not stack
    return out


@pytest.mark.parametrize("bundle", sorted(n[:-4] for n in ("headmap.css", "blindspot.css", "synergy.css",
                                                            "curves.css", "ranking.css", "sensitivity.css")))
def test_every_css_rule_is_scoped_to_the_component(bundle):
    """No rule of a built stylesheet reaches outside the component (JupyterLab's own
    controls, fonts, ...): every selector starts with .coax-root or the component's root
    class, which the module gives its root element; :root may only define --coax-* variables."""
    assert f'class: "coax-root coax-{bundle}"' in (widgets.STATIC / f"{bundle}.js").read_text()
    rules = css_rules((widgets.STATIC / f"{bundle}.css").read_text())
    assert len(rules) > 8
    for at, selector, body in rules:
        assert at is None or at.startswith(("@media", "@supports")), at
        for sel in (s.strip() for s in selector.split(",")):
            if sel == ":root":
                names = re.findall(r"([\w-]+)\s*:", body)
                assert names and all(n.startswith("--coax-") for n in names), (bundle, body)
                continue
            assert re.match(rf"\.coax-(root|{bundle})(?![\w-])", sel), (bundle, sel)
    assert css_rules("select, button { font: inherit; }")[0][1] == "select, button"  # the parser sees bare ones


def test_styles_do_not_restyle_controls_outside_the_component(page, scores):
    """A page's own select / button / input (JupyterLab's) keep their font when every
    component's stylesheet is loaded."""
    page.evaluate("""() => { document.body.style.font = '20px serif';
      for (const tag of ['select', 'button', 'input']) {
        const e = document.createElement(tag); e.className = 'outside'; document.body.prepend(e); } }""")
    fonts = "[...document.querySelectorAll('.outside')].map((e) => getComputedStyle(e).font)"
    before = page.evaluate(fonts)
    assert all("20px" not in f for f in before)  # the browser's own control font, not the body's
    for bundle in ["headmap", "blindspot", "synergy", "curves", "ranking", "sensitivity"]:
        css = (widgets.STATIC / f"{bundle}.css").read_text()
        page.evaluate("(css) => { const s = document.createElement('style'); s.textContent = css;"
                      " document.head.append(s); }", css)
    assert page.evaluate(fonts) == before
    # the component's own controls still take its font
    mount(page, "headmap", state_of(widgets.HeadMap(scores)))
    assert page.evaluate("getComputedStyle(document.querySelector('.coax-score-select')).fontSize") == "12px"
