"""``coax-nb report``: execute the report notebook with papermill and write the executed
notebook, a standalone HTML export and a JSON artifact with full provenance.

The notebook (``coax_nb/report.ipynb``, paired with its text source ``report.nb.py``)
calls :func:`run_report`, which does the science through :func:`coax_nb.inputs.resolve`,
and writes ``report.json`` with :meth:`Report.write_json`, the one writer of that file;
:func:`execute_report` drives papermill and nbconvert around it.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .inputs import heads_text, resolve
from .io import atomic_write_text
from .models import provenance

REPORT_NOTEBOOK = Path(__file__).resolve().parent / "report.ipynb"
@dataclass
class Report:
    """Everything one report computed."""

    scores: object
    recovery: Optional[object]
    freezing: Optional[object]
    wakeup: Optional[object]
    meta: dict = field(default_factory=dict)

    def headline(self) -> str:
        """The table printed to the terminal."""
        lines = [f"CoAx report: {self.meta['model']} on {self.meta['task']} ({self.meta['n_prompts']} prompts), "
                 f"primaries S = {', '.join(self.meta['primaries'])}", "", self.scores.table(self.meta["top"])]
        if self.recovery is not None:
            lines += ["", "backup recovery (ground truth " + ", ".join(self.meta["truth"]) + "):"]
            for r in self.recovery.rows:
                lines.append(f"  {r['selector']:>12}: ROC-AUC {r['roc_auc']:.3f}  AP {r['ap']:.3f}")
        if self.freezing is not None:
            lines.append(f"\nfreezing CoAx's top heads removes {self.freezing.removed:.0%} of the self-repair "
                         f"(random sets: {sum(self.freezing.random_removed) / len(self.freezing.random_removed):.0%})")
        return "\n".join(lines)

    def summary_markdown(self) -> str:
        top = ", ".join(f"{u} ({v:.3g})" for u, v in self.scores.top(5))
        text = (f"**Model** `{self.meta['model']}` · **task** {self.meta['task']} · **prompts** "
                f"{self.meta['n_prompts']} (prompt seed {self.meta['prompt_seed']}) · **primaries S** "
                f"{', '.join(self.meta['primaries'])} ({self.meta['primaries_source']})\n\n**Top heads by CoAx:** {top}")
        if self.recovery is not None:
            text += (f"\n\n**Recovery of the known backups** ({', '.join(self.meta['truth'])}): CoAx ROC-AUC "
                     f"{self.recovery.auc('comp'):.3f}, single ablation {self.recovery.auc('single'):.3f}")
        return text

    def figures(self) -> list:
        from .widgets import BlindSpot, HeadMap

        truth = self.meta["truth"]
        figs = [HeadMap(self.scores, truth=truth).figure(), BlindSpot(self.scores, truth=truth).figure()]
        if self.recovery is not None:
            figs.append(self.recovery.plot())
        if self.wakeup is not None:
            figs.append(self.wakeup.plot())
        if self.freezing is not None:
            figs.append(self.freezing.plot())
        return figs

    def to_dict(self) -> dict:
        return {"type": "CoAxReport", "meta": self.meta, "headline": self.headline(), "scores": self.scores.to_dict(),
                "recovery": None if self.recovery is None else
                {"rows": self.recovery.rows, "truth": self.meta["truth"]},
                "freezing": None if self.freezing is None else self.freezing.to_dict(),
                "wakeup_margins": None if self.wakeup is None else self.wakeup.margins}

    def write_json(self, path) -> None:
        """Write ``report.json``: the only code that writes it (the report notebook calls it)."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1, default=float))


def run_report(model: str = "organism:ioi_dormant", task: str = "default", primaries=None, n_prompts: int = 64,
               prompt_seed: int = 0, device: Optional[str] = None, out_dir: str = "report", top: int = 10) -> Report:
    """The report's computation: CoAx scan; with ground truth, the recovery table; wake-up
    and freezing of CoAx's top heads against random sets. The parameters are the report
    notebook's, in its order; ``primaries`` is None (an organism's card) or head names,
    e.g. one string ``"L9H9 L9H6"``."""
    from transformers.utils import logging as hf_logging

    from .recover import recovery
    from .scores import coax_scan
    from .validate import freezing, wakeup

    hf_logging.disable_progress_bar()  # a progress widget would make the static HTML load a widget manager
    timings = {}
    t0 = time.perf_counter()
    run = resolve(model, task, n_prompts, primaries, prompt_seed, device)
    engine, primaries, truth = run.engine, run.primaries, run.truth
    timings["load"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = coax_scan(engine, primaries=primaries, progress=False)
    timings["scan"] = time.perf_counter() - t0
    rec = None
    if truth:
        t0 = time.perf_counter()
        rec = recovery(engine, None, primaries, truth, selectors=("comp", "ratio", "single", "atp", "atp_gd", "cond_atp"),
                       progress=False)
        timings["recovery"] = time.perf_counter() - t0
    k = max(1, len(truth) or min(3, engine.n_layers * engine.n_heads - len(primaries) - 1))
    selected = [u for u, _ in scores.top(k)]
    t0 = time.perf_counter()
    try:
        fr = freezing(engine, None, primaries, selected, n_random=8)
    except ValueError:  # no repair at all: nothing to freeze away
        fr = None
    wu = wakeup(engine, None, primaries, selected, n_random=8)
    timings["validation"] = time.perf_counter() - t0
    meta = {"model": str(model), "task": run.task.name, "n_prompts": len(run.task), "prompt_seed": int(prompt_seed),
            "primaries": [str(u) for u in primaries], "primaries_source": run.primaries_source,
            "truth": [str(u) for u in truth], "selected": [str(u) for u in selected],
            "top": int(top), "timings_seconds": {k: round(v, 3) for k, v in timings.items()},
            "provenance": provenance(model, run.model), "out_dir": str(out_dir)}
    return Report(scores, rec, fr, wu, meta)


class ReportError(RuntimeError):
    pass


def _kernel_env(tmp: Path) -> dict:
    """A kernelspec named like the notebook's that runs *this* Python, first on
    JUPYTER_PATH, so the report never runs in some other interpreter."""
    spec = tmp / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}", "--log-level=ERROR"],
        "display_name": "Python 3 (coax-nb)", "language": "python"}))
    return dict(os.environ, JUPYTER_PATH=os.pathsep.join([str(tmp), os.environ.get("JUPYTER_PATH", "")]).rstrip(
        os.pathsep), MPLBACKEND="module://matplotlib_inline.backend_inline")


def execute_notebook(src: Path, dest: Path, parameters: dict, cwd: Optional[Path] = None, timeout: int = 1800) -> None:
    """papermill with this interpreter's kernel; a failing cell raises ReportError naming it."""
    import papermill as pm

    with tempfile.TemporaryDirectory() as tmp:
        env = _kernel_env(Path(tmp))
        old = dict(os.environ)
        os.environ.update(env)
        try:
            pm.execute_notebook(str(src), str(dest), parameters=parameters, kernel_name="python3",
                                cwd=str(cwd) if cwd else None, progress_bar=False, execution_timeout=timeout)
        except pm.PapermillExecutionError as exc:
            raise ReportError(f"cell {exc.cell_index} (execution count {exc.exec_count}): "
                              f"{exc.ename}: {exc.evalue}; the partly executed notebook is {dest}") from None
        finally:
            os.environ.clear()
            os.environ.update(old)


def export_html(notebook: Path, dest: Path) -> None:
    """Standalone HTML: images are inline data URIs; no script or font is fetched."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(notebook), as_version=4)
    # no widget manager runs in a static page: keep the picture / text fallbacks only
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "application/vnd.jupyter.widget-view+json" in data and len(data) > 1:
                del data["application/vnd.jupyter.widget-view+json"]
    exporter = HTMLExporter(template_name="lab")
    exporter.mathjax_url = ""
    exporter.require_js_url = ""
    exporter.exclude_input_prompt = True
    html, _ = exporter.from_notebook_node(nb)
    atomic_write_text(dest, html)


def execute_report(model: str, task: str, out: Path, primaries=None, n_prompts: int = 64, prompt_seed: int = 0,
                   device: Optional[str] = None, top: int = 10) -> dict:
    """Run the report notebook; returns the JSON artifact it wrote to ``out/report.json``.

    Head names go to papermill as one string (``"L9H9 L9H10"``), which it passes through
    unchanged; never as numbers (``9.10`` would arrive as ``9.1``)."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    params = {"model": str(model), "task": task, "primaries": heads_text(primaries), "n_prompts": n_prompts,
              "prompt_seed": prompt_seed, "device": device, "out_dir": str(out), "top": top}
    execute_notebook(REPORT_NOTEBOOK, out / "report.ipynb", params, cwd=out)
    export_html(out / "report.ipynb", out / "report.html")
    return json.loads((out / "report.json").read_text())
