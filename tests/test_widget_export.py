"""Kernel-free pages (coax_nb.widgets.to_html, coax-nb page): one offline HTML file that
runs the components' ES modules with an in-page model. Fast tests read the file; the
slow ones open it in headless Chromium with every request but the file itself aborted."""
import json
import re
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from coax_nb import Engine, coax_scan, load_model, widgets
from coax_nb.cli import main
from coax_nb.results import Curves, PairScores, RecoveryResult, UnitScores, load
from coax_nb.units import Unit
from coax_nb.widgets.export import component_state, page_html
from coax_nb.widgets.pages import result_components

from conftest import screenshot

CARD_TRUTH = ["L2H0", "L2H1"]  # organism:handwired's backups


@pytest.fixture(scope="module")
def scan():
    """coax_scan of the hand-wired organism on 6 prompts, primaries = its card's."""
    from coax_nb.organisms import task_for

    torch.manual_seed(0)
    engine = Engine(load_model("organism:handwired"), task_for("handwired", 6))
    return coax_scan(engine, primaries=["L1H0", "L1H1"], progress=False)


@pytest.fixture(scope="module")
def scan_json(scan, tmp_path_factory):
    path = tmp_path_factory.mktemp("scan") / "scan.json"
    scan.to_json(path)
    return path


def page_data(text: str) -> dict:
    """The JSON the page embeds (modules, each component's kind and state)."""
    m = re.search(r'<script type="application/json" id="coax-data">(.*?)</script>', text, re.S)
    assert m, "no embedded data"
    return json.loads(m.group(1))


def group(scan):
    return [widgets.HeadMap(scan, truth=CARD_TRUTH), widgets.BlindSpot(scan, truth=CARD_TRUTH),
            widgets.RankingTable(scan, truth=CARD_TRUTH)]


# ---------------------------------------------------------------- fast: the file itself
def test_page_loads_nothing_from_the_network(scan):
    text = page_html(group(scan), "scan")
    assert "https://" not in text
    # the one http:// is the SVG namespace string inside the modules, never a location
    assert set(re.findall(r"http://[^\s\"'<>\\]*", text)) == {"http://www.w3.org/2000/svg"}
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, re.I)
    assert not re.search(r"<link\b", text, re.I)
    assert not re.search(r"@import|url\(\s*['\"]?(?!data:)[a-z]+:", text, re.I)
    assert not re.search(r"""\bimport\s*(\(\s*)?["'](?!blob:)""", text)  # no static or dynamic import of a URL
    assert not re.search(r"^\s*import\s", text, re.M)
    # the browser refuses any request the page might still make
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', text).group(1)
    assert "default-src 'none'" in csp and "connect-src 'none'" in csp
    assert text.count("</script>") == 2  # the data and the loader; nothing else closes a script


def test_page_embeds_each_component_state_and_module(scan):
    comps = group(scan)
    data = page_data(page_html(comps, "scan"))
    assert [c["kind"] for c in data["components"]] == ["headmap", "blindspot", "ranking"]
    assert set(data["modules"]) == {"headmap", "blindspot", "ranking"}
    for kind in data["modules"]:
        assert data["modules"][kind] == (widgets.STATIC / f"{kind}.js").read_text()
    hm, bs, rk = (c["state"] for c in data["components"])
    comp = scan["comp"]
    assert hm["scores"]["comp"] == [None if np.isnan(v) else pytest.approx(v) for v in comp]
    assert hm["scores"]["comp"][4] is None and hm["scores"]["comp"][5] is None  # the primaries: NaN -> null
    assert hm["primaries"] == ["L1H0", "L1H1"] and hm["truth"] == CARD_TRUTH
    assert (hm["n_layers"], hm["n_heads"]) == (3, 4)
    assert bs["x_label"] == "single" and bs["y"] == hm["scores"]["comp"]
    assert rk["sort_by"] == "comp" and rk["descending"] is True
    # only the components' own traits, not ipywidgets' (layout, _esm, ...)
    assert not any(k.startswith("_") or k == "layout" for s in (hm, bs, rk) for k in s)
    assert data["linked"] is True
    assert page_data(page_html(comps, "scan", linked=False))["linked"] is False


def test_page_state_is_the_current_state_and_static(scan):
    """The page shows the component as it is now; a HeadMap selects on click and is
    never busy there, and the live widget is left as it was."""
    hm = widgets.HeadMap(scan, score="single", truth=CARD_TRUTH)
    hm.selected = ["L0H2"]
    hm.busy = True
    state = page_data(page_html(hm, "one"))["components"][0]["state"]
    assert state["score"] == "single" and state["selected"] == ["L0H2"]
    assert state["click_action"] == "select" and state["busy"] is False
    assert hm.click_action == "primaries" and hm.busy is True
    assert component_state(hm) == state


def test_text_cannot_close_the_script_or_style(tmp_path):
    c = Curves("</script><script>alert(1)</script>", "x & y", "<b>y</b>")
    c.add("s</style>", [0, 1], [1.0, float("nan")])
    text = widgets.Curves(c).to_html(tmp_path / "c.html", title="<i>t</i>").read_text()
    assert text.count("</script>") == 2 and "<i>t</i>" not in text and "&lt;i&gt;t&lt;/i&gt;" in text
    data = page_data(text)
    d = data["components"][0]["state"]["data"]
    assert d["title"] == "</script><script>alert(1)</script>" and d["series"][0]["y"] == [1.0, None]


def test_component_to_html_writes_one_file_atomically(scan, tmp_path):
    out = tmp_path / "sub" / "rank.html"
    out.parent.mkdir()
    out.write_text("old")
    rk = widgets.RankingTable(scan)
    assert rk.to_html(out, title="ranking") == out
    assert out.read_text() == page_html([rk], "ranking")
    assert [p.name for p in out.parent.iterdir()] == ["rank.html"]  # no temporary file left
    # a group through the module function; the file is replaced whole
    widgets.to_html(group(scan), out, title="three", captions=["a", "b", "c"])
    text = out.read_text()
    assert "<title>three</title>" in text and len(page_data(text)["components"]) == 3
    assert [p.name for p in out.parent.iterdir()] == ["rank.html"]


def test_to_html_bad_input(scan, tmp_path):
    with pytest.raises(ValueError, match="at least one component"):
        widgets.to_html([], tmp_path / "x.html")
    with pytest.raises(TypeError, match="coax-nb components"):
        widgets.to_html([scan], tmp_path / "x.html")
    with pytest.raises(ValueError, match="one per component"):
        widgets.to_html(group(scan), tmp_path / "x.html", captions=["only one"])
    assert not (tmp_path / "x.html").exists()


def test_result_components_for_each_kind(scan):
    comps, caps, about = result_components(scan)
    assert [type(c).__name__ for c in comps] == ["HeadMap", "BlindSpot", "RankingTable"]
    assert all(c.truth == CARD_TRUTH for c in comps)  # from the organism card named in meta
    assert "organism:handwired" in about and "L2H0, L2H1" in about
    comps, _, _ = result_components(scan, truth=["L0H0"])
    assert comps[0].truth == ["L0H0"]
    # a scan with one score: no BlindSpot
    one = UnitScores(2, 2, [], {"single": np.arange(4.0)})
    assert [type(c).__name__ for c in result_components(one)[0]] == ["HeadMap", "RankingTable"]
    # a recovery result: one repeat's scores, with the result's truth
    other = UnitScores(3, 4, [Unit(1, 0)], {k: v[::-1].copy() for k, v in scan.scores.items()})
    rec = RecoveryResult(rows=[], scores=[scan, other], truth=[Unit(2, 1)], primaries=[Unit(1, 0)])
    comps, _, about = result_components(rec, repeat=1)
    assert comps[0].scores["single"] == widgets.HeadMap(other, score="single").scores["single"]
    assert comps[0].truth == ["L2H1"] and "repeat 2 of 2" in about
    with pytest.raises(ValueError, match="outside the result's 2 repeats"):
        result_components(rec, repeat=2)
    pairs = PairScores([Unit(0, 0), Unit(0, 1)], {"synergy": np.array([[np.nan, 0.5], [0.5, np.nan]])})
    assert [type(c).__name__ for c in result_components(pairs)[0]] == ["SynergyGrid"]
    c = Curves("wake-up", "k", "dla").add("selected", [0, 1], [0.0, 1.0])
    assert [type(c).__name__ for c in result_components(c)[0]] == ["Curves"]
    # results with a dict of curves panels (WakeUp, Knockout) or a curves() method (Pruning)
    d = Curves("dla", "k", "DLA").add("selected", [0, 1], [0.0, 2.0])
    comps, caps, _ = result_components(SimpleNamespace(curves={"norm": c, "dla": d}))
    assert [w.data["title"] for w in comps] == ["wake-up", "dla"] and caps == ["wake-up", "dla"]
    assert len(result_components(SimpleNamespace(curves=lambda: d))[0]) == 1
    with pytest.raises(ValueError, match="no interactive page for a str"):
        result_components("nope")


def test_cli_page_writes_the_scan_page(scan_json, tmp_path, capsys):
    out = tmp_path / "page.html"
    assert main(["page", str(scan_json), "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    text = out.read_text()
    data = page_data(text)
    assert [c["kind"] for c in data["components"]] == ["headmap", "blindspot", "ranking"]
    scan = load(scan_json)
    assert data["components"][2]["state"]["scores"]["single"] == pytest.approx(list(scan["single"]))
    assert data["components"][0]["state"]["truth"] == CARD_TRUTH
    assert "<title>coax-nb: UnitScores of organism:handwired</title>" in text
    assert main(["page", str(scan_json), "-o", str(out), "--truth", "L0H1", "--title", "mine"]) == 0
    assert page_data(out.read_text())["components"][1]["state"]["truth"] == ["L0H1"]
    assert "<title>mine</title>" in out.read_text()


def test_cli_page_errors_are_one_line(scan_json, tmp_path, capsys):
    assert main(["page", str(tmp_path / "missing.json"), "-o", str(tmp_path / "p.html")]) == 2
    assert "no results file" in capsys.readouterr().err
    assert main(["page", str(scan_json), "-o", str(tmp_path / "p.html"), "--truth", "L7H0"]) == 2
    assert "outside the model" in capsys.readouterr().err
    assert not (tmp_path / "p.html").exists()


# ---------------------------------------------------------------- slow: the page in Chromium
def open_offline(browser, path, color_scheme="light"):
    """Open the file with every other request aborted; returns the page and the list of
    requests it attempted (the file itself first)."""
    page = browser.new_page(viewport={"width": 1000, "height": 800}, color_scheme=color_scheme)
    url = path.resolve().as_uri()
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.route("**/*", lambda route: route.continue_() if route.request.url == url else route.abort())
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    return page, requests, errors


def selected_everywhere(page) -> dict:
    return page.evaluate("""() => ({
      headmap: [...document.querySelectorAll('.coax-headmap .cell-rect.selected')].map((r) => r.parentNode.dataset.unit),
      blindspot: [...document.querySelectorAll('.coax-blindspot .point.selected')].map((c) => c.dataset.unit),
      ranking: [...document.querySelectorAll('.coax-ranking tbody tr.selected')].map((r) => r.dataset.unit),
      models: window.coaxPage.models.map((m) => m.get('selected')),
    })""")


@pytest.mark.slow
def test_scan_page_works_offline(browser, scan, scan_json, tmp_path):
    out = tmp_path / "scan.html"
    assert main(["page", str(scan_json), "-o", str(out)]) == 0
    page, requests, errors = open_offline(browser, out)
    try:
        assert requests == [out.resolve().as_uri()] and errors == []
        # the rescan note is shown; hover shows the tooltip with every score
        note = page.locator("[data-kind='headmap'] .coax-export-note")
        assert note.is_visible() and "rescanning needs a kernel" in note.inner_text()
        page.hover(".coax-headmap .cell[data-unit='L2H0']")
        tip = page.locator(".coax-headmap .coax-tooltip")
        assert tip.is_visible()
        assert "head L2H0 — ground truth" in tip.inner_text() and "single: " in tip.inner_text()
        page.hover(".coax-blindspot .point[data-unit='L0H0']")
        assert "L0H0" in page.locator(".coax-blindspot .coax-tooltip").inner_text()
        screenshot(page, "export-scan-hover")
        # sorting the ranking reorders its rows, by the page alone
        rows = lambda: page.locator(".coax-ranking tbody tr").evaluate_all("(rs) => rs.map((r) => r.dataset.unit)")
        by_comp = rows()
        assert by_comp[:2] == CARD_TRUTH
        page.click(".coax-ranking th[data-score='single']")
        twin = widgets.RankingTable(scan, sort_by="single")  # the Python order of the same sort
        descending = rows()
        assert descending == twin.rows() and descending != by_comp
        page.click(".coax-ranking th[data-score='single']")  # again: ascending
        twin.descending = False
        assert rows() == twin.rows() != descending
        # clicking a head in the map selects it in the scatter and the table, not a rescan
        page.click(".coax-headmap .cell[data-unit='L2H1']")
        sel = selected_everywhere(page)
        assert sel["headmap"] == sel["blindspot"] == sel["ranking"] == ["L2H1"]
        assert sel["models"] == [["L2H1"]] * 3
        assert page.locator(".coax-headmap .cell-rect.primary").count() == 2
        assert page.locator(".coax-headmap .coax-status").inner_text() == "primaries: L1H0, L1H1"
        # ... and from the table and the scatter back to the others
        page.click(".coax-ranking tbody tr[data-unit='L0H3']")
        assert selected_everywhere(page)["headmap"] == ["L0H3"] == selected_everywhere(page)["blindspot"]
        page.click(".coax-blindspot .point[data-unit='L0H2']", modifiers=["Shift"])
        sel = selected_everywhere(page)
        assert sorted(sel["headmap"]) == sorted(sel["ranking"]) == ["L0H2", "L0H3"]
        # a primary cannot change without a kernel, even from the model; a send says so
        page.evaluate("window.coaxPage.models[0].set('primaries', ['L0H0'])")
        assert page.evaluate("window.coaxPage.models[0].get('primaries')") == ["L1H0", "L1H1"]
        page.evaluate("window.coaxPage.models[2].send({})")
        assert page.locator("[data-kind='ranking'] .coax-export-note").inner_text() == (
            "static page: this action needs a kernel")
        # the score menu re-colours the map in the page
        page.select_option(".coax-headmap .coax-score-select", "single")
        label = page.locator(".coax-headmap .cell[data-unit='L0H0']").get_attribute("aria-label")
        assert label.startswith("head L0H0, single ")
        screenshot(page, "export-scan")
        assert requests == [out.resolve().as_uri()] and errors == []
    finally:
        page.close()
    dark, requests, errors = open_offline(browser, out, color_scheme="dark")
    try:
        color = dark.evaluate("getComputedStyle(document.querySelector('.coax-root')).color")
        assert color == "rgb(230, 230, 230)" and errors == []
        screenshot(dark, "export-scan-dark")
    finally:
        dark.close()


@pytest.fixture(scope="module")
def sens():
    from coax_nb.organisms import task_for
    from coax_nb.sensitivity import p_sensitivity

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return p_sensitivity(load_model("organism:handwired"), task_for("handwired", 6), methods=["atp"],
                             ks=[1, 2], taus=[], sets={"card": ["L1H0", "L1H1"]}, truth=CARD_TRUTH, progress=False)


@pytest.mark.slow
def test_every_other_component_works_offline(browser, sens, tmp_path):
    units = [Unit(1, 0), Unit(1, 1), Unit(2, 0), Unit(2, 1)]
    m = np.array([[np.nan, 0.1, 0.9, 0.0], [0.1, np.nan, 0.0, 0.8], [0.9, 0.0, np.nan, 0.05],
                  [0.0, 0.8, 0.05, np.nan]])
    syn = widgets.SynergyGrid(PairScores(units, {"normalized": m}), groups={"L1H0": "a", "L2H0": "a"})
    c = Curves("wake-up", "primaries ablated", "DLA")
    c.add("selected", [0, 1, 2], [0.0, 1.75, 3.5])
    c.add("random", [0, 1, 2], [0.1, 0.1, 0.1], [0.0, 0.0, 0.0], [0.2, 0.2, 0.2])
    curves, explorer = widgets.Curves(c), widgets.SensitivityExplorer(sens)
    out = widgets.to_html([syn, curves, explorer], tmp_path / "other.html", title="other components")
    page, requests, errors = open_offline(browser, out)
    try:
        assert requests == [out.resolve().as_uri()] and errors == []
        assert page.locator(".coax-export-note:visible").count() == 0  # nothing here needs a kernel
        page.hover(".pair-cell[data-pair='L1H0|L2H0']")
        assert "normalized: 0.9000" in page.locator(".coax-synergy .coax-tooltip").inner_text()
        page.select_option(".coax-order-select", "cluster")
        labels = page.locator(".coax-synergy svg text.coax-axis[text-anchor='end']").all_text_contents()
        assert [t.split()[0] for t in labels] == [syn.units[i] for i in syn.orders["cluster"]]
        # a pair click selects both heads, shared with the explorer's model
        page.click(".pair-cell[data-pair='L1H1|L2H1']")
        assert page.evaluate("window.coaxPage.models.map((m) => m.get('selected'))") == [["L1H1", "L2H1"]] * 3
        # curves: hover readout, a legend button hides a series, log scale
        box = page.locator(".coax-curves .coax-hit").bounding_box()
        page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2)
        assert page.locator(".coax-readout").inner_text() == "primaries ablated = 2 — selected: 3.500; random: 0.1000"
        page.click(".legend-item[data-series='random']")
        assert page.locator(".coax-curves path.line").count() == 1
        # the sensitivity slider re-ranks in the page and moves the shared selection
        assert page.locator(".coax-step-value").inner_text() == "k = 1"
        page.locator(".coax-sensitivity input[type=range]").fill("1")
        assert page.locator(".coax-step-value").inner_text() == "k = 2"
        want = [str(u) for u, _ in sens.ranking("atp k=2", 10)]
        shown = page.evaluate("[...document.querySelectorAll('.coax-sensitivity .rank-row')].map((g) => g.dataset.unit)")
        assert shown == want
        sel = page.evaluate("window.coaxPage.models.map((m) => m.get('selected'))")
        assert sel == [[str(u) for u in sens.choice("atp k=2")["primaries"]]] * 3 and len(sel[0]) == 2
        screenshot(page, "export-other")
        assert requests == [out.resolve().as_uri()] and errors == []
    finally:
        page.close()
    # the same explorer from a saved Sensitivity, through the command
    sens.to_json(tmp_path / "sens.json")
    assert main(["page", str(tmp_path / "sens.json"), "-o", str(tmp_path / "sens.html")]) == 0
    data = page_data((tmp_path / "sens.html").read_text())
    assert [c["kind"] for c in data["components"]] == ["sensitivity"]
    assert data["components"][0]["state"]["choices"] == component_state(explorer)["choices"]
    page, requests, errors = open_offline(browser, tmp_path / "sens.html")
    try:
        assert requests == [(tmp_path / "sens.html").resolve().as_uri()] and errors == []
        assert page.locator(".coax-sensitivity .rank-row").count() == 10
    finally:
        page.close()


@pytest.mark.slow
def test_the_offline_harness_sees_a_request(browser, scan, tmp_path):
    """The checks above can fail: a page that asks for the network shows up as a request
    (aborted) or, under the page's CSP, as a refusal on the console."""
    text = page_html(widgets.RankingTable(scan), "t")
    leak = '<img src="https://example.invalid/x.png">'
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text).replace("<body>", "<body>" + leak))
    page, requests, errors = open_offline(browser, bare)
    page.close()
    assert "https://example.invalid/x.png" in requests
    strict = tmp_path / "strict.html"
    strict.write_text(text.replace("<body>", "<body>" + leak))
    page, requests, errors = open_offline(browser, strict)
    page.close()
    assert any("Content Security Policy" in e for e in errors)
