"""Each widget's ES module, unit-tested in a static page in headless Chromium with a fake
anywidget model (get / set / on / save_changes), no Jupyter involved."""
import json

import numpy as np
import pytest

from coax_nb import widgets
from coax_nb.curves import Curves as CurveData
from coax_nb.scores import PairScores, UnitScores
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


def mount(page, component: str, state: dict):
    src = widgets.module_source(component)
    css = widgets.asset("style.css")
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


def test_no_module_imports_anything_from_the_network():
    for name in list(widgets.COMPONENTS.values()) + ["common.js", "style.css"]:
        text = widgets.asset(name)
        assert "import " not in text.replace("await import(url)", ""), name
        assert "https://" not in text and "@import" not in text, name


def test_headmap_module(page, scores):
    w = widgets.HeadMap(scores, truth=["2.0"])
    mount(page, "HeadMap", state_of(w))
    assert page.locator(".cell").count() == 12
    assert page.locator(".truth-mark").count() == 1
    assert page.locator(".cell-rect.seed").count() == 2
    page.hover(".cell[data-unit='2.0']")
    tip = page.locator(".coax-tooltip").inner_text()
    assert "head 2.0 — ground truth" in tip
    assert f"comp: {js_fmt(scores['comp'][8])}" in tip and f"single: {js_fmt(scores['single'][8])}" in tip
    # switching the score re-labels every cell
    page.select_option(".coax-score-select", "single")
    assert page.evaluate("window.model.state.score") == "single"
    label = page.locator(".cell[data-unit='0.3']").get_attribute("aria-label")
    assert label == f"head 0.3, single {js_fmt(scores['single'][3])}"
    # click toggles the seed; shift-click selects; keyboard works
    page.click(".cell[data-unit='2.2']")
    assert page.evaluate("window.model.state.seed") == ["1.0", "1.1", "2.2"]
    page.click(".cell[data-unit='0.1']", modifiers=["Shift"])
    assert page.evaluate("window.model.state.selected") == ["0.1"]
    page.focus(".cell[data-unit='1.0']")
    page.keyboard.press("Enter")
    assert page.evaluate("window.model.state.seed") == ["1.1", "2.2"]
    assert page.evaluate("window.model.saves") == 4
    # busy indicator follows the kernel
    page.evaluate("window.model.set('busy', true)")
    assert page.locator(".coax-busy").is_visible()
    screenshot(page, "module-headmap")


def test_blindspot_module(page, scores):
    w = widgets.BlindSpot(scores, x="single", y="comp", truth=["2.0", "2.1"])
    mount(page, "BlindSpot", state_of(w))
    # seed heads left out; NaN CoAx (the seed) has no point either
    assert page.locator(".point").count() == 10
    assert page.locator(".point.truth").count() == 2
    px, py, names = w.percentiles()
    i = names.index("2.1")
    page.hover(".point[data-unit='2.1']")
    tip = page.locator(".coax-tooltip").inner_text()
    assert f"(p{round(px[i])})" in tip and f"(p{round(py[i])})" in tip
    page.click(".point[data-unit='2.1']")
    page.click(".point[data-unit='0.0']", modifiers=["Shift"])
    assert page.evaluate("window.model.state.selected") == ["2.1", "0.0"]
    screenshot(page, "module-blindspot")


def test_synergy_module(page):
    units = [Unit(1, 0), Unit(1, 1), Unit(2, 0), Unit(2, 1)]
    m = np.array([[np.nan, 0.1, 0.9, 0.0], [0.1, np.nan, 0.0, 0.8], [0.9, 0.0, np.nan, 0.05],
                  [0.0, 0.8, 0.05, np.nan]])
    w = widgets.SynergyGrid(PairScores(units, {"normalized": m}),
                            groups={"1.0": "mover", "1.1": "mover", "2.0": "backup", "2.1": "backup"})
    assert w.orders["cluster"] != w.orders["given"]
    mount(page, "SynergyGrid", state_of(w))
    assert page.locator(".pair-cell").count() == 16
    assert page.locator(".group-block").count() == 2
    page.hover(".pair-cell[data-pair='1.0|2.0']")
    assert "normalized: 0.9000" in page.locator(".coax-tooltip").inner_text()
    page.click(".pair-cell[data-pair='1.1|2.1']")
    assert page.evaluate("window.model.state.selected_pair") == ["1.1", "2.1"]
    page.select_option(".coax-order-select", "cluster")
    rows = page.locator("svg text.coax-axis[text-anchor='end']").all_text_contents()
    assert [r.split()[0] for r in rows] == [w.units[i] for i in w.orders["cluster"]]
    screenshot(page, "module-synergy")


def test_curves_module(page):
    c = CurveData("wake-up", "primaries ablated", "DLA")
    c.add("selected", [0, 1, 2], [0.0, 1.75, 3.5])
    c.add("random", [0, 1, 2], [0.1, 0.1, 0.1], [0.0, 0.0, 0.0], [0.2, 0.2, 0.2])
    w = widgets.Curves(c)
    mount(page, "Curves", state_of(w))
    assert page.locator("path.line").count() == 2
    assert page.locator("path.band").count() == 1
    box = page.locator(".coax-hit").bounding_box()
    page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2)
    assert page.locator(".coax-readout").inner_text() == "primaries ablated = 2 — selected: 3.500; random: 0.1000"
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
    w = widgets.RankingTable(scores, sort_by="single", truth=["2.0"])
    mount(page, "RankingTable", state_of(w))
    rows = page.locator("tbody tr")
    assert rows.count() == 12
    assert [r.split("\t")[1].split()[0] for r in rows.all_inner_texts()] == w.rows()
    page.click("th[data-score='single']")  # same column: flips to ascending
    assert page.evaluate("window.model.state.descending") is False
    first = page.locator("tbody tr").first.get_attribute("data-unit")
    assert first == str(Unit(*divmod(int(np.argmin(scores["single"])), 4)))
    page.click("tbody tr[data-unit='2.3']")
    assert page.evaluate("window.model.state.selected") == ["2.3"]
    screenshot(page, "module-ranking")


def test_dark_theme_uses_jupyterlab_colours(page, scores):
    """Under JupyterLab's dark theme variables, text and tooltips follow the theme."""
    page.evaluate("""() => {
      const s = document.body.style;
      s.setProperty('--jp-ui-font-color1', 'rgb(230, 230, 230)');
      s.setProperty('--jp-ui-font-color2', 'rgb(190, 190, 190)');
      s.setProperty('--jp-layout-color1', 'rgb(17, 17, 17)');
      s.background = 'rgb(17, 17, 17)';
    }""")
    mount(page, "RankingTable", state_of(widgets.RankingTable(scores)))
    color = page.evaluate("getComputedStyle(document.querySelector('.coax-root')).color")
    assert color == "rgb(230, 230, 230)"
    cell = page.evaluate("getComputedStyle(document.querySelector('.coax-ranking td')).color")
    assert cell == "rgb(230, 230, 230)"
    mount(page, "HeadMap", state_of(widgets.HeadMap(scores)))
    page.hover(".coax-headmap .cell[data-unit='0.0']")
    tip = page.evaluate("(() => { const t = getComputedStyle(document.querySelector('.coax-headmap .coax-tooltip'));"
                        " return [t.color, t.backgroundColor]; })()")
    assert tip == ["rgb(230, 230, 230)", "rgb(17, 17, 17)"]
    axis = page.evaluate("getComputedStyle(document.querySelector('.coax-headmap text.coax-axis')).fill")
    assert axis == "rgb(190, 190, 190)"
    screenshot(page, "module-dark-theme")
