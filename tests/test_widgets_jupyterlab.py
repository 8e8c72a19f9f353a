"""The widgets in a real JupyterLab, driven by Playwright in Debian's chromium.

JupyterLab listens on 127.0.0.1 only, on a free port, with a token; the fixture stops
it by its own process id. Screenshots go to test-artifacts/ (or $COAX_ARTIFACTS).
"""
import hashlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import chromium_or_skip, js_fmt, screenshot

CELLS = [
    """import warnings; warnings.filterwarnings("ignore")
from coax_nb import load_model, Engine, synergy, wakeup
from coax_nb.organisms import task_for
from coax_nb.widgets import HeadMap, BlindSpot, SynergyGrid, Curves, RankingTable, link
model = load_model("organism:handwired")
engine = Engine(model, task_for("organism:handwired", 16), progress=False)
hm = HeadMap.live(engine, primaries=["L1H0", "L1H1"], truth=["L2H0", "L2H1"])
hm""",
    """bs = BlindSpot(hm.result, truth=["L2H0", "L2H1"])
bs""",
    """sg = SynergyGrid(synergy(engine, ["L1H0", "L1H1", "L2H0", "L2H1"], progress=False), name="normalized",
                 groups={"L1H0": "mover", "L1H1": "mover", "L2H0": "backup", "L2H1": "backup"})
sg""",
    """cv = Curves(wakeup(engine, None, ["L1H0", "L1H1"], ["L2H0", "L2H1"], n_random=4).curves["dla"])
cv""",
    """rt = RankingTable(hm.result, truth=["L2H0", "L2H1"])
links = link(hm, bs, rt)
rt""",
    """import hashlib, json
from coax_nb.widgets.base import png_base64
print("STATE " + json.dumps({"primaries": sorted(hm.primaries), "version": hm.version, "selected": hm.selected,
                             "comp_L2H0": hm.result.value("comp", "L2H0"),
                             "picture": hashlib.sha1(png_base64(hm.figure()).encode()).hexdigest()}))""",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _notebook() -> dict:
    return {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                       "source": src} for src in CELLS],
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
            "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    chromium_or_skip()
    root = tmp_path_factory.mktemp("lab")
    (root / "widgets.ipynb").write_text(json.dumps(_notebook()))
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(root / ".cfg"), JUPYTER_RUNTIME_DIR=str(root / ".rt"),
               HF_HUB_OFFLINE="1")
    log = open(root / "lab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
         f"--LabApp.workspaces_dir={root / '.ws'}", "--LabApp.news_url=", "--allow-root",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail("JupyterLab did not start:\n" + (root / "lab.log").read_text()[-3000:])
            time.sleep(0.5)
    yield url, token, root
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def _run_all(page):
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()


def _kernel_state(page, n_cells: int = len(CELLS)) -> dict:
    """Run the notebook's last cell, which prints the kernel's view of the HeadMap (also
    used for Notebook 7, whose page is JupyterLab's notebook)."""
    cell = page.locator(".jp-Notebook .jp-Cell").nth(n_cells - 1)
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    out = cell.locator(".jp-OutputArea-output")
    deadline = time.time() + 60
    while time.time() < deadline:
        text = out.all_inner_texts()
        if text and "STATE " in text[-1]:
            return json.loads(text[-1].split("STATE ", 1)[1])
        time.sleep(0.3)
    raise AssertionError("the state cell printed nothing")




def _saved_picture(root) -> str:
    """The digest of the PNG saved beside the HeadMap view (the first cell's output)."""
    outputs = json.loads((root / "widgets.ipynb").read_text())["cells"][0]["outputs"]
    pngs = [o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {})]
    return hashlib.sha1("".join(pngs).encode()).hexdigest() if len(pngs) == 1 else f"{len(pngs)} pictures"


def test_widgets_render_and_drive_the_kernel(lab, browser):
    url, token, root = lab
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    page.set_default_timeout(120_000)
    page.goto(f"{url}/lab/tree/widgets.ipynb?token={token}")
    page.locator(".jp-Notebook .jp-Cell").first.wait_for()
    page.get_by_text(re.compile(r"Python 3 \(ipykernel\) \| Idle")).wait_for()  # kernel connected
    _run_all(page)

    cells = page.locator(".coax-headmap .cell")
    cells.first.wait_for()
    assert cells.count() == 12
    page.locator(".coax-blindspot .point").first.wait_for()
    assert page.locator(".coax-blindspot .point").count() == 10  # 12 heads minus the 2 primaries
    page.locator(".coax-synergy .pair-cell").first.wait_for()
    assert page.locator(".coax-synergy .pair-cell").count() == 16
    page.locator(".coax-curves path.line").first.wait_for()
    assert page.locator(".coax-curves path.line").count() == 2
    page.locator(".coax-ranking tbody tr").first.wait_for()
    assert page.locator(".coax-ranking tbody tr").count() == 12
    before = _kernel_state(page)
    assert before["primaries"] == ["L1H0", "L1H1"] and before["version"] == 0

    # hover shows the kernel's value
    page.locator(".coax-headmap .cell[data-unit='L2H0']").hover()
    assert f"comp: {js_fmt(before['comp_L2H0'])}" in page.locator(".coax-headmap .coax-tooltip").inner_text()
    screenshot(page, "lab-initial")

    # clicking a head adds it to the primaries in the kernel, which recomputes the scores
    page.locator(".coax-headmap .cell[data-unit='L2H1']").click()
    page.wait_for_function(
        "document.querySelector('.coax-headmap').closest('.coax-root').dataset.version === '1'")
    assert "primaries: L1H0, L1H1, L2H1" in page.locator(".coax-headmap .coax-status").inner_text()
    # the picture a saved notebook keeps beside the view is redrawn for the new S with no
    # cell run: the kernel ends the click's message with post_execute, as it ends a cell
    deadline = time.time() + 30
    while True:
        page.keyboard.press("Control+s")
        time.sleep(0.5)
        saved = _saved_picture(root)
        if saved not in (before["picture"], "0 pictures"):
            break
        assert time.time() < deadline, "the saved notebook keeps the HeadMap picture of before the click"
    after = _kernel_state(page)
    assert saved == after["picture"] != before["picture"]
    assert after["primaries"] == ["L1H0", "L1H1", "L2H1"] and after["version"] == 1
    assert after["comp_L2H0"] != before["comp_L2H0"]
    page.locator(".coax-headmap .cell[data-unit='L2H0']").hover()
    assert f"comp: {js_fmt(after['comp_L2H0'])}" in page.locator(".coax-headmap .coax-tooltip").inner_text()

    # linked views: selecting a row of the table highlights the head everywhere
    page.locator(".coax-ranking tbody tr[data-unit='L0H2']").click()
    page.locator(".coax-headmap .cell[data-unit='L0H2'] .cell-rect.selected").wait_for()
    page.locator(".coax-blindspot .point.selected[data-unit='L0H2']").wait_for()
    assert _kernel_state(page)["selected"] == ["L0H2"]
    screenshot(page, "lab-after-click")
    page.close()
