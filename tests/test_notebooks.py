"""Tutorial notebooks (papermill, nbval) and the `coax-nb report` command."""
import inspect
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import papermill
import pytest

from coax_nb.report import REPORT_NOTEBOOK, ReportError, execute_notebook, run_report

from conftest import screenshot

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# the text sources (jupytext py:percent) that the committed notebooks are paired with;
# the report's is named report.nb.py so that it is no module of the package
SOURCES = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")) + [ROOT / "coax_nb" / "report.nb.py"]


def paired(source: Path) -> Path:
    return source.with_name(source.name.removesuffix(".nb.py").removesuffix(".py") + ".ipynb")


def cells(nb) -> list:
    return [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in nb.cells]


def test_committed_notebooks_are_in_sync_with_their_text_sources():
    assert len(NOTEBOOKS) == 11
    assert sorted(map(paired, SOURCES)) == sorted(NOTEBOOKS + [REPORT_NOTEBOOK])
    for src in SOURCES:
        text = jupytext.read(src)
        assert "ipynb" in text.metadata["jupytext"]["formats"].split(","), f"{src.name} is not paired"
        nb = nbformat.read(str(paired(src)), as_version=4)
        assert cells(nb) == cells(text), f"{paired(src).name} differs from {src.name}: run jupytext --sync {src}"


def test_committed_notebooks_are_clean():
    for path in NOTEBOOKS + [REPORT_NOTEBOOK]:
        nb = nbformat.read(str(path), as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name} carries outputs"
        assert any("parameters" in c.metadata.get("tags", []) for c in code), f"{path.name} has no parameters cell"
    for path in NOTEBOOKS:
        nb = nbformat.read(str(path), as_version=4)
        assert "You will learn" in nb.cells[0].source
        assert any("assert" in c.source for c in nb.cells if c.cell_type == "code"), f"{path.name}: no checked exercise"


def test_notebook_parameters():
    """papermill injects unknown names without complaint, so the names are pinned here."""
    for path in NOTEBOOKS:
        assert list(papermill.inspect_notebook(str(path))) == [
            "model", "task", "n_prompts", "primaries", "device", "output_dir"], path.name
    positional = [n for n, p in inspect.signature(run_report).parameters.items()
                  if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert list(papermill.inspect_notebook(str(REPORT_NOTEBOOK))) == positional


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_under_papermill(path, tmp_path):
    t0 = time.perf_counter()
    out = tmp_path / path.name
    execute_notebook(path, out, {"output_dir": str(tmp_path / "outputs"), "n_prompts": 24}, cwd=tmp_path)
    seconds = time.perf_counter() - t0
    nb = nbformat.read(str(out), as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    # widgets show a static picture too (image/png next to the widget view)
    bundles = [o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    ours = [b for b in bundles if "coax_nb.widgets" in str(b.get("text/plain", ""))]
    assert all("image/png" in b and "application/vnd.jupyter.widget-view+json" in b for b in ours)
    # ... and that picture is the only one of the widget: no cell shows a widget and a separate picture too
    for c in nb.cells:
        data = [o.get("data", {}) for o in getattr(c, "outputs", [])]
        if any("application/vnd.jupyter.widget-view+json" in d for d in data):
            assert not [d for d in data if "image/png" in d and "application/vnd.jupyter.widget-view+json" not in d]
    print(f"{path.name}: {seconds:.1f} s")


def test_deterministic_cells_match_under_nbval(tmp_path):
    """Strict where deterministic: cells tagged nbval-check-output are re-run by nbval
    and compared with the papermill run's outputs (everything else lax). The primaries are
    the organism card's, given as the one string that `papermill -p primaries` passes."""
    src = ROOT / "notebooks" / "00_quickstart.ipynb"
    executed = tmp_path / src.name
    execute_notebook(src, executed, {"output_dir": str(tmp_path / "outputs"), "primaries": "L1H1 L1H0 L1H2"},
                     cwd=tmp_path)
    nb = nbformat.read(str(executed), as_version=4)
    tagged = [c for c in nb.cells if "nbval-check-output" in c.metadata.get("tags", [])]
    assert tagged and all(c.outputs for c in tagged)
    shown = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "primaries S (given): ['L1H1', 'L1H0', 'L1H2']" in shown
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "--nbval-lax", "-p", "no:cacheprovider",
                          "-o", "addopts=", str(executed)], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:]


def test_a_failing_cell_is_named(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("1 / 0")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src = tmp_path / "bad.ipynb"
    nbformat.write(nb, str(src))
    with pytest.raises(ReportError, match=r"cell 1 .*ZeroDivisionError"):
        execute_notebook(src, tmp_path / "out.ipynb", {}, cwd=tmp_path)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "r"
    run = subprocess.run(["coax-nb", "report", "--out", str(out), "--prompts", "24"], capture_output=True,
                         text=True, timeout=900)
    return out, run


def test_report_command_writes_three_files_and_prints_the_table(report):
    out, run = report
    assert run.returncode == 0, run.stderr[-3000:]
    for f in ("report.ipynb", "report.html", "report.json"):
        assert (out / f).stat().st_size > 1000, f
    assert "rank    head" in run.stdout and "backup recovery" in run.stdout and "ROC-AUC" in run.stdout
    art = json.loads((out / "report.json").read_text())
    prov = art["meta"]["provenance"]
    assert prov["model_spec"] == "organism:ioi_dormant" and len(prov["weights_sha256"]) == 64
    assert prov["packages"]["torch"] and prov["device"] == "cpu"
    assert art["meta"]["prompt_seed"] == 0 and art["meta"]["n_prompts"] == 24
    assert set(art["meta"]["timings_seconds"]) >= {"load", "scan", "recovery", "validation"}
    rows = {r["selector"]: r for r in art["recovery"]["rows"]}
    assert rows["comp"]["roc_auc"] > rows["single"]["roc_auc"]
    assert len(art["scores"]["scores"]["comp"]) == 12


def test_report_html_shows_its_figures_offline(report, browser):
    out, run = report
    assert run.returncode == 0
    page = browser.new_page()
    requests = []

    def block(route):
        requests.append(route.request.url)
        if route.request.url.startswith(("file:", "data:")):
            route.continue_()
        else:
            route.abort()
    page.route("**/*", block)
    page.goto((out / "report.html").as_uri())
    page.wait_for_load_state("load")
    sizes = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, "
                          "i.src.startsWith('data:image/png;base64,')])")
    figures = [s for s in sizes if s[2]]
    assert len(figures) >= 5 and all(done and w > 100 for done, w, _ in figures)
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    screenshot(page, "report-html")
    page.close()


def test_report_bad_model_fails_before_the_kernel(tmp_path):
    """Inputs are checked before papermill starts a kernel (a failing cell is named:
    tests/test_report_transaction.py)."""
    run = subprocess.run(["coax-nb", "report", "--model", "organism:nope", "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 2 and run.stdout == ""
    assert re.fullmatch(r"coax-nb: error: unknown organism 'nope'; bundled organisms: .*handwired.*\n", run.stderr)
    assert not (tmp_path / "r").exists()
