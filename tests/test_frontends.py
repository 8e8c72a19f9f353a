"""The widgets in front ends other than JupyterLab: Jupyter Notebook 7 and marimo.

Each server listens on 127.0.0.1 only, on a free port, with a token; each is started
by its test's fixture and stopped by its own process group id. Screenshots go to
test-artifacts/ (or $COAX_ARTIFACTS). docs/frontends.md says what is tested here.
"""
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

from conftest import chromium_or_skip, js_fmt, screenshot
from test_widgets_jupyterlab import _free_port, _kernel_state

pytestmark = pytest.mark.slow

NB_CELLS = [
    """import warnings; warnings.filterwarnings("ignore")
from coax_nb import load_model, Engine
from coax_nb.organisms import task_for
from coax_nb.widgets import HeadMap, RankingTable, link
model = load_model("organism:handwired")
engine = Engine(model, task_for("organism:handwired", 16), progress=False)
hm = HeadMap.live(engine, primaries=["L1H0", "L1H1"], truth=["L2H0", "L2H1"])
hm""",
    """rt = RankingTable(hm.result, truth=["L2H0", "L2H1"])
links = link(hm, rt)
rt""",
    """import json
print("STATE " + json.dumps({"primaries": sorted(hm.primaries), "version": hm.version, "selected": hm.selected,
                             "comp_L2H0": hm.result.value("comp", "L2H0")}))""",
]

# a marimo app: cells are functions; mo.ui.anywidget wraps the anywidget components
MARIMO_APP = textwrap.dedent('''
    import marimo

    app = marimo.App()


    @app.cell
    def _():
        import json
        import warnings
        warnings.filterwarnings("ignore")
        import marimo as mo
        from coax_nb import load_model, Engine, coax_scan
        from coax_nb.organisms import task_for
        from coax_nb.widgets import HeadMap, RankingTable
        model = load_model("organism:handwired")
        engine = Engine(model, task_for("organism:handwired", 16), progress=False)
        scan = coax_scan(engine, primaries=["L1H0", "L1H1"], progress=False)
        return HeadMap, RankingTable, engine, json, mo, scan


    @app.cell
    def _(HeadMap, engine, mo):
        # live: a click in the page sets primaries, the kernel rescans and sends new scores
        hm = mo.ui.anywidget(HeadMap.live(engine, primaries=["L1H0", "L1H1"], truth=["L2H0", "L2H1"]))
        hm
        return (hm,)


    @app.cell
    def _(RankingTable, hm, mo, scan):
        import traitlets
        rt = mo.ui.anywidget(RankingTable(scan, truth=["L2H0", "L2H1"]))
        # coax_nb.widgets.link (ipywidgets.jslink) does nothing in marimo: link in Python
        traitlets.link((hm.widget, "selected"), (rt.widget, "selected"))
        rt
        return (rt,)


    @app.cell
    def _(hm, json, mo, rt):
        # reruns whenever either component's value changes in the page (marimo's reactivity)
        _w = hm.widget
        mo.plain_text("STATE " + json.dumps({"primaries": sorted(_w.primaries), "version": _w.version,
                                             "selected": _w.selected, "table_selected": rt.widget.selected,
                                             "comp_L2H0": _w.result.value("comp", "L2H0")}))
        return


    if __name__ == "__main__":
        app.run()
''')


def _need(module: str, minversion=None):
    """The front end's package (the test extra has it); a skip, or a failure when
    COAX_REQUIRE_BROWSER=1 says the browser tests must run."""
    try:
        return pytest.importorskip(module, minversion=minversion)
    except pytest.skip.Exception as e:
        if os.environ.get("COAX_REQUIRE_BROWSER") == "1":
            pytest.fail(f"COAX_REQUIRE_BROWSER=1 but {e} (pip install -e '.[test]')")
        raise


def _wait_http(proc, url: str, log, what: str, timeout: float = 120):
    deadline = time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                _stop(proc)
                pytest.fail(f"{what} did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.5)


def _stop(proc):
    # start_new_session put the server and its kernels in their own process group
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def notebook7(tmp_path):
    chromium_or_skip()
    _need("notebook", "7")
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": src}
                    for src in NB_CELLS],
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
          "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "widgets.ipynb").write_text(json.dumps(nb))
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / ".cfg"), JUPYTER_RUNTIME_DIR=str(tmp_path / ".rt"),
               HF_HUB_OFFLINE="1")
    log_path = tmp_path / "notebook.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "notebook", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--port={port}",
             f"--ServerApp.token={token}", f"--ServerApp.root_dir={tmp_path}", "--ServerApp.port_retries=0",
             "--allow-root"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(proc, f"{url}/api/status?token={token}", log_path, "Jupyter Notebook 7")
        yield url, token
    finally:
        _stop(proc)


def _kernel_connected(url: str, token: str, timeout: float = 90):
    """Wait until the page's websocket is attached to an idle kernel (Notebook 7 has no
    status bar to read this from)."""
    deadline, kernels = time.time() + timeout, None
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/kernels?token={token}", timeout=5) as r:
                kernels = json.load(r)
        except OSError:  # the server answers 500 for a moment while the kernel starts
            time.sleep(0.5)
            continue
        if any(k.get("connections", 0) > 0 and k.get("execution_state") == "idle" for k in kernels):
            return
        time.sleep(0.5)
    raise AssertionError(f"no kernel connected to the page: {kernels}")


def _nb_state(page) -> dict:
    return _kernel_state(page, len(NB_CELLS))


def test_notebook7_renders_and_drives_the_kernel(notebook7, browser):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout  # the browser fixture has playwright

    url, token = notebook7
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    page.set_default_timeout(120_000)
    try:
        page.goto(f"{url}/notebooks/widgets.ipynb?token={token}")
        page.locator(".jp-Notebook .jp-Cell").first.wait_for()
        _kernel_connected(url, token)
        first_prompt = page.locator(".jp-Notebook .jp-Cell").first.locator(".jp-InputPrompt")
        for _ in range(3):
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()
            # a page that was still settling can drop the request; the prompt says if it ran
            try:
                page.wait_for_function("p => /\\[(\\*|\\d+)\\]/.test(p.textContent)",
                                       arg=first_prompt.element_handle(), timeout=20_000)
                break
            except PlaywrightTimeout:
                continue

        cells = page.locator(".coax-headmap svg .cell")
        cells.first.wait_for()
        assert cells.count() == 12  # organism:handwired: 3 layers x 4 heads
        page.locator(".coax-ranking tbody tr").first.wait_for()
        assert page.locator(".coax-ranking tbody tr").count() == 12
        before = _nb_state(page)
        assert before["primaries"] == ["L1H0", "L1H1"] and before["version"] == 0

        page.locator(".coax-headmap .cell[data-unit='L2H0']").hover()
        tip = page.locator(".coax-headmap .coax-tooltip")
        assert f"comp: {js_fmt(before['comp_L2H0'])}" in tip.inner_text()
        screenshot(page, "notebook7-initial")

        # a click adds the head to the primaries; the kernel rescans and sends new scores
        page.locator(".coax-headmap .cell[data-unit='L2H1']").click()
        page.wait_for_function(
            "document.querySelector('.coax-headmap').closest('.coax-root').dataset.version === '1'")
        assert "primaries: L1H0, L1H1, L2H1" in page.locator(".coax-headmap .coax-status").inner_text()
        after = _nb_state(page)
        assert after["primaries"] == ["L1H0", "L1H1", "L2H1"] and after["version"] == 1
        assert after["comp_L2H0"] != before["comp_L2H0"]
        page.locator(".coax-headmap .cell[data-unit='L2H0']").hover()
        assert f"comp: {js_fmt(after['comp_L2H0'])}" in tip.inner_text()

        # the link: a row picked in the table is highlighted in the map and known to the kernel
        page.locator(".coax-ranking tbody tr[data-unit='L0H2']").click()
        page.locator(".coax-headmap .cell[data-unit='L0H2'] .cell-rect.selected").wait_for()
        assert _nb_state(page)["selected"] == ["L0H2"]
        screenshot(page, "notebook7-after-click")
    except Exception:
        screenshot(page, "notebook7-failure")  # what the page showed, for the log
        raise
    finally:
        page.close()


@pytest.fixture
def marimo_app(tmp_path):
    chromium_or_skip()
    _need("marimo")
    (tmp_path / "app.py").write_text(MARIMO_APP)
    port, token = _free_port(), secrets.token_hex(16)
    # marimo keeps its config and state under the XDG folders: keep them out of $HOME
    env = dict(os.environ, HF_HUB_OFFLINE="1", **{f"XDG_{d}_HOME": str(tmp_path / d.lower())
                                                   for d in ("CONFIG", "STATE", "CACHE", "DATA")})
    log_path = tmp_path / "marimo.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "marimo", "run", str(tmp_path / "app.py"), "--headless", "--host", "127.0.0.1",
             "--port", str(port), "--token", "--token-password", token, "--no-sandbox"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(proc, f"{url}/health", log_path, "marimo")
        yield url, token
    finally:
        _stop(proc)


def _marimo_state(page, pattern: str) -> dict:
    """The app's last cell, rerun by marimo after each change in the page, once it matches."""
    out = page.get_by_text(re.compile("^STATE .*" + pattern))
    out.wait_for()
    return json.loads(out.inner_text().split("STATE ", 1)[1])


def test_marimo_renders_and_drives_the_kernel(marimo_app, browser):
    url, token = marimo_app
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.set_default_timeout(120_000)
    try:
        page.goto(f"{url}/?access_token={token}")
        # marimo mounts each anywidget in a shadow root; Playwright's CSS locators pierce it
        cells = page.locator(".coax-headmap svg .cell")
        cells.first.wait_for()
        assert cells.count() == 12
        page.locator(".coax-ranking tbody tr").first.wait_for()
        assert page.locator(".coax-ranking tbody tr").count() == 12
        before = _marimo_state(page, '"version": 0,')
        assert before["primaries"] == ["L1H0", "L1H1"]

        page.locator(".coax-headmap .cell[data-unit='L2H0']").hover()
        tip = page.locator(".coax-headmap .coax-tooltip")
        assert f"comp: {js_fmt(before['comp_L2H0'])}" in tip.inner_text()
        screenshot(page, "marimo-initial")  # with the tooltip (the table has no hover of its own)

        # the Python-side link: a row picked in the table is selected in the map and the kernel
        page.locator(".coax-ranking tbody tr[data-unit='L0H2']").click()
        linked = _marimo_state(page, '"selected": \\["L0H2"\\]')
        assert linked["version"] == 0 and linked["table_selected"] == ["L0H2"]
        page.locator(".coax-headmap .cell[data-unit='L0H2'] .cell-rect.selected").wait_for()

        # the click travels through marimo's comm to the widget, whose observer rescans
        page.locator(".coax-headmap .cell[data-unit='L2H1']").click()
        after = _marimo_state(page, '"version": 1,')
        assert after["primaries"] == ["L1H0", "L1H1", "L2H1"] and after["selected"] == ["L0H2"]
        assert after["comp_L2H0"] != before["comp_L2H0"]
        page.locator(".coax-headmap[data-version='1']").wait_for()  # the new scores reached the page
        assert "primaries: L1H0, L1H1, L2H1" in page.locator(".coax-headmap .coax-status").inner_text()
        page.locator(".coax-headmap .cell[data-unit='L2H0']").hover()
        assert f"comp: {js_fmt(after['comp_L2H0'])}" in tip.inner_text()

        screenshot(page, "marimo-after-click")
    except Exception:
        screenshot(page, "marimo-failure")
        raise
    finally:
        page.close()
