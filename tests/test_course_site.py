"""The course site: built by one command from the lessons and the tutorials, every page
and link checked offline in Chromium (every request but the page itself refused), the
embedded views rendered without a kernel, and the instructor's checks passed."""
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from coax_nb.cli import main
from coax_nb.course import build_site, lessons
from coax_nb.report import ReportError

from conftest import screenshot

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "site"
    assert main(["course", "site", "--out", str(out), "--tutorials", str(ROOT / "notebooks")]) == 0
    return out


def _pages(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


def test_every_lesson_and_tutorial_has_a_page_and_a_row(site):
    want = {f"lessons/{p.stem}.html" for p in lessons()} | {f"tutorials/{p.stem}.html" for p in TUTORIALS}
    assert {str(p.relative_to(site)) for p in _pages(site)} == want | {"index.html"}
    index = (site / "index.html").read_text()
    for rel in want:
        assert f'href="{rel}"' in index, rel
    for p in lessons():
        assert f'href="student/{p.stem}.ipynb"' in index
        assert (site / "student" / f"{p.stem}.ipynb").is_file()
    assert re.findall(r"<td>(\d+) s</td>", index) and "organism:ioi_dormant" in index


def test_lesson_pages_show_the_solutions_passing(site):
    from coax_nb.course import read_lesson

    for p in lessons():
        text = (site / "lessons" / f"{p.stem}.html").read_text()
        for name in read_lesson(p).metadata["coax_course"]["exercises"]:
            # the check's own HTML output: the green tick, the exercise named
            assert f"correct</b> ({name})" in text, (p.stem, name)
        # no error output (the build would have stopped) and no stderr output left on the page
        assert "Traceback (most recent call last)" not in text
        assert 'data-mime-type="application/vnd.jupyter.stderr"' not in text


def _only(url: str, refused: list):
    """A route handler that lets through the page itself, its srcdoc frames and inline
    data, and records and refuses every other request. (A closure, not default
    arguments: Playwright passes a two-parameter handler the request as well.)"""
    def route(r):
        if r.request.url in (url, "about:srcdoc") or r.request.url.startswith(("data:", "blob:")):
            r.continue_()
        else:
            refused.append(r.request.url)
            r.abort()
    return route


def test_pages_and_links_work_offline_in_chromium(site, browser):
    views = 0
    for path in _pages(site):
        url = path.resolve().as_uri()
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        refused, errors = [], []

        page.route("**/*", _only(url, refused))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        frames = page.query_selector_all("iframe.coax-frame")
        for frame in frames:
            inner = frame.content_frame()
            inner.wait_for_selector("body[data-ready='1']", timeout=20000)
            assert inner.locator(".coax-export-item").count() == 1
            assert inner.locator(".coax-export-mount *").count() > 0  # the component drew itself
            # the frame grew to its view's height
            assert frame.evaluate("f => f.getBoundingClientRect().height") >= \
                inner.evaluate("() => document.body.getBoundingClientRect().bottom")
        views += len(frames)
        for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))"):
            if href.startswith("#"):
                # a browser matches a fragment as written or percent-decoded (nbconvert writes a heading's
                # id with its "·" percent-encoded; quotes and "?" would break a CSS selector)
                found = page.evaluate("ids => [...document.querySelectorAll('[id]')].filter(e => ids.includes(e.id))"
                                      ".length", list({href[1:], unquote(href[1:])}))
                assert found == 1, (path.name, href, found)
                continue
            assert not re.match(r"^[a-z]+:", href), f"{path.name}: link out of the site: {href}"
            target = (path.parent / href.split("#")[0]).resolve()
            assert target.is_file() and site.resolve() in target.parents, (path.name, href)
        assert refused == [], (path.name, refused)
        assert errors == [], (path.name, errors)
        if path.name in ("index.html", "03_coax_score.html"):
            screenshot(page, f"course-site-{path.stem}")
        page.close()
    # HeadMap (lesson 3, tutorial 00), SynergyGrid (lesson 4, tutorial 03), BlindSpot, RankingTable,
    # Curves, SensitivityExplorer: every coax-nb view the notebooks display is live in the page
    assert views >= 8


def test_a_failing_notebook_stops_the_build_and_keeps_the_old_site(tmp_path):
    src = tmp_path / "lessons"
    src.mkdir()
    (src / "01_broken.py").write_text(
        '# %% [markdown]\n# # Broken\n# %% tags=["exercise"]\nx = ...\n# %% tags=["solution"]\nx = 1 / 0\n'
        '# %% tags=["check"]\ncheck("fisher_energy", x)\n')
    out = tmp_path / "site"
    out.mkdir()
    (out / "index.html").write_text("old")
    with pytest.raises(ReportError, match="ZeroDivisionError"):
        build_site(out, tutorials=False, lessons_source=src)
    assert (out / "index.html").read_text() == "old"
    assert not list(tmp_path.glob(".site.*"))  # no staging folder left behind
