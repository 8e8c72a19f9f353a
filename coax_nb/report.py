"""``coax-nb report``: execute the report notebook with papermill and write the executed
notebook, a standalone HTML export and a JSON artifact with full provenance.

The notebook (``coax_nb/report.ipynb``, paired with its text source ``report.nb.py``)
calls :func:`run_report`, which does the science through :func:`coax_nb.inputs.resolve`,
and writes ``report.json`` with :meth:`Report.write_json`, the one writer of that file;
:func:`execute_report` drives papermill and nbconvert around it.

A report is published as a whole or not at all. :func:`execute_report` checks its inputs
before a kernel starts, takes a lock on the output folder (a second run into the same
folder waits for it), runs in a hidden staging folder inside it (same file system, so
renames are atomic) and only when all three files are there moves them into place,
under a journal that the next run into the folder completes if the move itself was cut
short. A failed or interrupted run leaves the published report as it was and keeps its
notebook in ``OUT/.failed/report.ipynb``. An ``--out`` that is a symbolic link is
refused; report files that are links are replaced by the new files, never written through.
"""
from __future__ import annotations

import json
import logging
import numbers
import os
import shutil
import signal
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from .inputs import check_inputs, heads_text, resolve
from .io import atomic_write_text, check_writable_folder
from .metrics import EFFECTS
from .models import provenance, resolve_device
from .variant import ablation_action

log = logging.getLogger(__name__)

REPORT_NOTEBOOK = Path(__file__).resolve().parent / "report.ipynb"
REPORT_FILES = ("report.ipynb", "report.html", "report.json")  # published together or not at all
LOCK_FILE = ".coax-report.lock"
JOURNAL_FILE = ".coax-report.publishing"  # names the staging folder while its files are moved in
STAGING_PREFIX = ".coax-report-staging-"
FAILED_DIR = ".failed"  # the last failed run's notebook, kept for debugging


@dataclass
class Report:
    """Everything one report computed."""

    scores: object
    recovery: Optional[object]
    freezing: Optional[object]
    wakeup: Optional[object]
    robustness: Optional[object] = None
    meta: dict = field(default_factory=dict)

    def headline(self) -> str:
        """The table printed to the terminal."""
        lines = [f"CoAx report: {self.meta['model']} on {self.meta['task']} ({self.meta['n_prompts']} prompts), "
                 f"primaries S = {', '.join(self.meta['primaries'])}", "", self.scores.table(self.meta["top"])]
        if self.scores.meta.get("mlp_share", 0) > 0.5:
            lines += ["", f"warning: MLP layers carry {self.scores.meta['mlp_share']:.0%} of the first-order ablation "
                          "effect on this task; a head ranking says little about it (docs/method.md)"]
        if self.recovery is not None:
            lines += ["", "backup recovery (ground truth " + ", ".join(self.meta["truth"]) + "):"]
            for r in self.recovery.rows:
                lines.append(f"  {r['selector']:>12}: ROC-AUC {r['roc_auc']:.3f}  AP {r['ap']:.3f}")
        if self.robustness is not None:
            lines += ["", "robustness:", self.robustness.table()]
        if self.freezing is not None:
            lines.append(f"\nfreezing CoAx's top heads removes {self.freezing.removed:.0%} of the self-repair "
                         f"(random sets: {sum(self.freezing.random_removed) / len(self.freezing.random_removed):.0%})")
        return "\n".join(lines)

    def summary_markdown(self) -> str:
        top = ", ".join(f"{u} ({v:.3g})" for u, v in self.scores.top(5))
        text = (f"**Model** `{self.meta['model']}` · **task** {self.meta['task']} · **prompts** "
                f"{self.meta['n_prompts']} (prompt seed {self.meta['prompt_seed']}) · **primaries S** "
                f"{', '.join(self.meta['primaries'])} ({self.meta['primaries_source']}) · **ablation** "
                f"{self.meta.get('ablation', 'zero')} · **effect** {self.meta.get('effect', 'fisher')}"
                f"\n\n**Top heads by CoAx:** {top}")
        share = self.scores.meta.get("mlp_share")
        if share is not None and share > 0.5:
            text += (f"\n\n**Warning:** MLP layers carry {share:.0%} of the first-order ablation effect on this task; "
                     "CoAx ranks heads, and says little about a behaviour that feed-forward layers dominate.")
        if self.recovery is not None:
            text += (f"\n\n**Recovery of the known backups** ({', '.join(self.meta['truth'])}): CoAx ROC-AUC "
                     f"{self.recovery.auc('comp'):.3f}, single ablation {self.recovery.auc('single'):.3f}")
        if self.robustness is not None:
            text += "\n\n" + self.stability_markdown()
        return text

    def stability_markdown(self) -> str:
        """One paragraph on how far the ranking can be trusted (the robustness panel)."""
        r = self.robustness
        level = f"{r.meta['level']:.0%}"
        if r.auc:
            a = r.auc_row("comp")
            text = (f"**Stability:** CoAx ROC-AUC {a['auc']:.3f}, {level} bootstrap interval "
                    f"[{a['lo']:.3f}, {a['hi']:.3f}] over {r.meta['n_prompts']} prompts")
        else:
            half = [x for x in r.efficiency if x["selector"] == "comp" and x["n_prompts"] <= r.meta["n_prompts"] // 2]
            text = "**Stability:** no ground truth"
            if half:
                text += (f"; CoAx's ranking from {half[-1]['n_prompts']}-prompt subsets agrees with the full ranking at "
                         f"Spearman rho {half[-1]['rho_mean']:.2f} (mean of {r.meta['draws']})")
        held = [x for x in r.held_out if x["selector"] == "comp"]
        if held:
            if r.auc:
                inside = sum(x["inside_interval"] for x in held)
                text += f"; held-out templates: {inside} of {len(held)} inside the interval"
            text += (" (rank agreement with the calibration ranking: "
                     + ", ".join(f"{x['set']} {x['rho_to_calibration']:.2f}" for x in held) + ")")
        return text + "."

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
        if self.robustness is not None:
            figs.append(self.robustness.plot())
        return figs

    def to_dict(self) -> dict:
        return {"type": "CoAxReport", "meta": self.meta, "headline": self.headline(), "scores": self.scores.to_dict(),
                "recovery": None if self.recovery is None else
                {"rows": self.recovery.rows, "truth": self.meta["truth"]},
                "freezing": None if self.freezing is None else self.freezing.to_dict(),
                "wakeup_margins": None if self.wakeup is None else self.wakeup.margins,
                "robustness": None if self.robustness is None else self.robustness.to_dict()}

    def write_json(self, path) -> None:
        """Write ``report.json``: the only code that writes it (the report notebook calls it)."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1, default=float))


def run_report(model: str = "organism:ioi_dormant", task: str = "default", primaries=None, n_prompts: int = 64,
               prompt_seed: int = 0, device: Optional[str] = None, out_dir: str = "report", top: int = 10,
               ablation: str = "zero", effect: str = "fisher", robustness_panel: bool = True) -> Report:
    """The report's computation: CoAx scan; with ground truth, the recovery table; wake-up
    and freezing of CoAx's top heads against random sets; with ``robustness_panel``, the
    panel (bootstrap intervals, data efficiency, feature modes and, for IOI, held-out
    templates: about nine more scans). The parameters are the report
    notebook's, in its order; ``primaries`` is None (an organism's card) or head names,
    e.g. one string ``"L9H9 L9H6"``; ``out_dir`` is the folder the notebook writes
    ``report.json`` to (``coax-nb report`` runs it in its staging folder, as ".")."""
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
    scores = coax_scan(engine, primaries=primaries, ablation=ablation, effect=effect, progress=False)
    timings["scan"] = time.perf_counter() - t0
    rec = None
    if truth:
        t0 = time.perf_counter()
        rec = recovery(engine, None, primaries, truth, selectors=("comp", "ratio", "single", "atp", "atp_gd", "cond_atp"),
                       ablation=ablation, progress=False)
        timings["recovery"] = time.perf_counter() - t0
    k = max(1, len(truth) or min(3, engine.n_layers * engine.n_heads - len(primaries) - 1))
    selected = [u for u, _ in scores.top(k)]
    t0 = time.perf_counter()
    try:
        fr = freezing(engine, None, primaries, selected, n_random=8, ablation=ablation)
    except ValueError:  # no repair at all: nothing to freeze away
        fr = None
    wu = wakeup(engine, None, primaries, selected, n_random=8, ablation=ablation)
    timings["validation"] = time.perf_counter() - t0
    rob = None
    if robustness_panel:
        t0 = time.perf_counter()
        rob = _robustness_panel(run, primaries, truth, ablation)
        timings["robustness"] = time.perf_counter() - t0
    meta = {"model": str(model), "task": run.task.name, "n_prompts": len(run.task), "prompt_seed": int(prompt_seed),
            "primaries": [str(u) for u in primaries], "primaries_source": run.primaries_source,
            "truth": [str(u) for u in truth], "selected": [str(u) for u in selected],
            "top": int(top), "ablation": ablation, "effect": effect,
            "timings_seconds": {k: round(v, 3) for k, v in timings.items()},
            "provenance": provenance(model, run.model), "out_dir": str(out_dir)}
    return Report(scores, rec, fr, wu, rob, meta)


def _robustness_panel(run, primaries, truth, ablation: str):
    from .robustness import robustness
    from .tasks import ioi_rewordings

    held = None
    if "places" in run.task.info:  # an IOI task: its held-out rewordings
        held = ioi_rewordings(run.model, run.task)
    selectors = ("comp", "ratio", "single") + (("atp",) if run.task.targets is not None else ())
    return robustness(run.engine, None, primaries, truth or None, selectors=selectors, held_out=held,
                      ablation=ablation, progress=False)


class ReportError(RuntimeError):
    """The report did not complete: ``what`` says where it failed, ``notebook`` is the
    partly executed notebook kept for debugging (or None)."""

    def __init__(self, what: str, notebook: Optional[Path] = None):
        self.what, self.notebook = what, notebook
        super().__init__(what if notebook is None else f"{what}; the partly executed notebook is {notebook}")


class ReportInterrupted(KeyboardInterrupt):
    """Ctrl-C during a report; the message says what became of the published report."""


# the kernel's main: ipykernel_launcher's, with the kernel's own stderr (its log, a crash
# message) sent to a file, so a kernel outliving an interrupted run never writes to the terminal
_KERNEL_MAIN = """import os, sys
if sys.path and sys.path[0] == "":
    del sys.path[0]
log = sys.argv.pop(1)
try:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
except OSError:
    fd = os.open(os.devnull, os.O_WRONLY)
os.dup2(fd, 2)
from ipykernel.kernelapp import launch_new_instance
launch_new_instance()
"""


def _kernel_env(tmp: Path, kernel_log: Optional[Path] = None) -> dict:
    """A kernelspec named like the notebook's that runs *this* Python, first on
    JUPYTER_PATH, so the report never runs in some other interpreter; with
    ``kernel_log``, the kernel's stderr goes to that file."""
    spec = tmp / "kernels" / "python3"
    spec.mkdir(parents=True)
    start = [sys.executable, "-m", "ipykernel_launcher"] if kernel_log is None else \
        [sys.executable, "-c", _KERNEL_MAIN, str(kernel_log)]
    (spec / "kernel.json").write_text(json.dumps({
        "argv": start + ["-f", "{connection_file}", "--log-level=CRITICAL"],
        "display_name": "Python 3 (coax-nb)", "language": "python"}))
    return dict(os.environ, JUPYTER_PATH=os.pathsep.join([str(tmp), os.environ.get("JUPYTER_PATH", "")]).rstrip(
        os.pathsep), MPLBACKEND="module://matplotlib_inline.backend_inline")


def _mark_unrun_cells(notebook: Path, reason: str) -> None:
    """After an interrupt papermill marks every cell "completed", even those it never
    started: mark those "pending" again and the last one started (running when the run
    stopped) "failed", and say so at the top."""
    import nbformat

    if not notebook.is_file():
        return
    nb = nbformat.read(str(notebook), as_version=4)
    started = [c for c in nb.cells if (c.metadata.get("papermill") or {}).get("start_time")]
    for cell in nb.cells:
        pm = cell.metadata.get("papermill")
        if pm is not None and not pm.get("start_time"):
            pm.update(status="pending", exception=None, end_time=None, duration=None)
    if started:
        started[-1].metadata.papermill.update(status="failed", exception=True)
    nb.metadata.setdefault("papermill", {})["exception"] = True
    where = f"in cell {nb.cells.index(started[-1])}" if started else "before its first cell"
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(
        f"**This run was stopped {where} ({reason}); the cells after it never ran.**"))
    atomic_write_text(notebook, nbformat.writes(nb))


def execute_notebook(src: Path, dest: Path, parameters: dict, cwd: Optional[Path] = None, timeout: int = 1800,
                     kernel_log: Optional[Path] = None) -> None:
    """papermill with this interpreter's kernel; a failing cell raises ReportError naming
    it. On an interrupt the cells that never ran are left marked "pending" in ``dest``.
    ``kernel_log``: a file for the kernel's own stderr (default: this process's)."""
    import papermill as pm

    with tempfile.TemporaryDirectory() as tmp:
        env = _kernel_env(Path(tmp), kernel_log)
        old = dict(os.environ)
        os.environ.update(env)
        try:
            pm.execute_notebook(str(src), str(dest), parameters=parameters, kernel_name="python3",
                                cwd=str(cwd) if cwd else None, progress_bar=False, execution_timeout=timeout)
        except pm.PapermillExecutionError as exc:
            raise ReportError(f"cell {exc.cell_index} (execution count {exc.exec_count}): "
                              f"{exc.ename}: {exc.evalue}", Path(dest)) from None
        except BaseException as exc:
            try:
                _mark_unrun_cells(Path(dest), type(exc).__name__)
            except Exception as mark_exc:  # never hide why the run stopped
                log.warning("could not mark the unrun cells of %s: %s", dest, mark_exc)
            raise
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


def check_out(out) -> Path:
    """The report folder, checked before any work: not a file, not a symbolic link (the
    report is never written through one), and writable. Returns its absolute path."""
    out = Path(out).expanduser().absolute()
    if out.is_symlink():
        raise ValueError(f"the report folder --out {str(out)!r} is a symbolic link (to {os.readlink(out)!r}); "
                         f"give the folder itself, e.g. --out {str(out.resolve())!r}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"the report folder --out {str(out)!r} is a file, not a folder; choose another --out")
    check_writable_folder(out, "the report folder --out")
    return out


@contextmanager
def _folder_lock(out: Path, timeout: float, say: Callable[[str], None]):
    """An exclusive flock on ``out/.coax-report.lock`` while a run uses the folder; a
    second run waits (saying so once) up to ``timeout`` seconds. POSIX only (the CLI's
    report command; the notebook API does not lock)."""
    import fcntl

    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    try:
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ReportError(f"another coax-nb report into {out} still runs after {timeout:g} s of waiting "
                                      f"(it holds {out / LOCK_FILE}); let it finish, or choose another --out")
                if not told:
                    say(f"waiting for another coax-nb report into {out} to finish (up to {timeout:g} s) ...")
                    told = True
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)  # releases the lock


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _move_in(staging: Path, out: Path) -> None:
    """Rename the staged files over the published ones, then drop the journal."""
    for name in REPORT_FILES:
        if (staging / name).exists():
            os.replace(staging / name, out / name)  # a link at out/name is replaced, not followed
    _fsync_dir(out)
    (out / JOURNAL_FILE).unlink(missing_ok=True)
    _fsync_dir(out)


def _publish(staging: Path, out: Path) -> None:
    """Publish the three staged files together: the journal is written first, so a move
    cut short (SIGKILL, power loss) is completed by the next run; Ctrl-C and SIGTERM wait
    until the move is done."""
    missing = [n for n in REPORT_FILES if not (staging / n).is_file()]
    if missing:
        raise ReportError(f"the notebook ran but did not write {', '.join(missing)}")
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        atomic_write_text(out / JOURNAL_FILE, staging.name)
        _move_in(staging, out)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _recover(out: Path) -> None:
    """Under the lock: complete a publish that was cut short, and remove what killed runs
    left (staging folders, a journal's temporary file)."""
    journal = out / JOURNAL_FILE
    if journal.is_file():
        staging = out / Path(journal.read_text().strip()).name
        if staging.name.startswith(STAGING_PREFIX) and staging.is_dir():
            log.warning("completing the report publish into %s that an earlier run left unfinished", out)
            _move_in(staging, out)
        else:
            journal.unlink()
    for leftover in out.glob(STAGING_PREFIX + "*"):
        shutil.rmtree(leftover, ignore_errors=True)
    for leftover in out.glob(f".{JOURNAL_FILE}.*.tmp"):
        leftover.unlink(missing_ok=True)


def _keep_failed(staging: Path, out: Path) -> Optional[Path]:
    """Move a failed run's notebook (and its kernel's log, when the kernel wrote one) to
    ``out/.failed/`` (replacing the last ones kept); None when the run wrote no notebook."""
    notebook = staging / "report.ipynb"
    if not notebook.is_file():
        return None
    failed = out / FAILED_DIR
    if failed.is_symlink() or failed.is_file():
        failed.unlink()
    failed.mkdir(exist_ok=True)
    log_file = staging / "kernel.log"
    if log_file.is_file() and log_file.stat().st_size:
        os.replace(log_file, failed / "kernel.log")
    else:
        (failed / "kernel.log").unlink(missing_ok=True)
    os.replace(notebook, failed / "report.ipynb")
    return failed / "report.ipynb"


def execute_report(model: str, task: str, out: Path, primaries=None, n_prompts: int = 64, prompt_seed: int = 0,
                   device: Optional[str] = None, top: int = 10, ablation: str = "zero", effect: str = "fisher",
                   robustness: bool = True, lock_timeout: float = 3600.0,
                   say: Callable[[str], None] = log.info) -> dict:
    """Run the report notebook and publish ``out/report.ipynb``, ``report.html`` and
    ``report.json`` together; returns the JSON artifact of this run. ``robustness=False``
    leaves out the robustness panel.

    The inputs and ``out`` are checked first (ValueError, before any kernel starts). A run
    into a folder another run is using waits up to ``lock_timeout`` seconds. ``say`` gets
    one line when the run waits and one when its notebook starts (the CLI prints them;
    default: logged). On failure (ReportError) or Ctrl-C (ReportInterrupted) the
    published report is left as it was.

    Head names go to papermill as one string (``"L9H9 L9H10"``), which it passes through
    unchanged; never as numbers (``9.10`` would arrive as ``9.1``)."""
    out = check_out(out)
    check_inputs(model, task, n_prompts, primaries, prompt_seed)
    ablation_action(ablation)
    if effect not in EFFECTS:
        raise ValueError(f"effect must be one of {', '.join(EFFECTS)}, got {effect!r}")
    resolve_device(device)
    if not isinstance(top, numbers.Integral) or isinstance(top, bool) or top < 1:
        raise ValueError(f"top (rows of the ranking table) must be an integer >= 1, got {top!r}")
    params = {"model": str(model), "task": task, "primaries": heads_text(primaries), "n_prompts": int(n_prompts),
              "prompt_seed": int(prompt_seed), "device": device, "out_dir": ".", "top": int(top),
              "ablation": ablation, "effect": effect, "robustness_panel": bool(robustness)}
    out.mkdir(parents=True, exist_ok=True)
    with _folder_lock(out, lock_timeout, say):
        _recover(out)
        say(f"running the report notebook on {model} (papermill) ...")
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
        stage = "running the notebook"
        try:
            execute_notebook(REPORT_NOTEBOOK, staging / "report.ipynb", params, cwd=staging,
                             kernel_log=staging / "kernel.log")
            stage = "exporting report.html"
            export_html(staging / "report.ipynb", staging / "report.html")
            stage = "reading report.json"
            artifact = json.loads((staging / "report.json").read_text())
            stage = "publishing"
            _publish(staging, out)
            stage = "published"
        except BaseException as exc:
            if stage == "published":  # Ctrl-C held back during the move arrives now
                raise ReportInterrupted(f"after the new report was published in {out}") from None
            kept = _keep_failed(staging, out)
            previous = (f"the report in {out} is unchanged" if any((out / n).exists() for n in REPORT_FILES)
                        else f"nothing was published in {out}")
            if isinstance(exc, KeyboardInterrupt):
                where = "" if kept is None else f"; the partly executed notebook is kept in {kept}"
                raise ReportInterrupted(f"{stage} was interrupted; {previous}{where}") from None
            if isinstance(exc, ReportError):
                raise ReportError(f"{exc.what}; {previous}", kept) from None
            if isinstance(exc, Exception):
                raise ReportError(f"{stage} failed with {type(exc).__name__}: {exc}; {previous}", kept) from exc
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return artifact
