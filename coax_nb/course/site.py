"""The course site: the executed instructor edition and the tutorials as static HTML.

Every page reads offline: figures are inline PNG, no script or font is fetched, and each
coax-nb widget a notebook displayed is embedded as its kernel-free page (the one
``coax-nb page`` writes), built from the widget state the run saved, so hover, menus and
selection work without a kernel. ``index.html`` is the syllabus: every lesson and
tutorial with what it teaches, the organism it runs on and how long it took to execute.
"""
from __future__ import annotations

import html
import importlib
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional, Union

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
_MODEL = re.compile(r"""^model\s*=\s*["']([^"']+)["']""", re.M)


def default_tutorials() -> Optional[Path]:
    """The tutorials folder of a checkout of coax-nb (next to the package), or
    ``./notebooks``; None when neither holds tutorials."""
    for folder in (Path(__file__).resolve().parents[2] / "notebooks", Path.cwd() / "notebooks"):
        if any(folder.glob("[0-9][0-9]_*.ipynb")):
            return folder
    return None


def _widget_class(anywidget_id: str):
    module, _, name = anywidget_id.rpartition(".")
    if not module.startswith("coax_nb.widgets"):
        return None
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def widget_frame(model_id: str, states: dict) -> Optional[str]:
    """The kernel-free page of a coax-nb component a notebook run displayed, in an iframe
    (None for any other widget, e.g. a progress bar, or a model the run did not save)."""
    from ..widgets.export import PageItem, embed_frame, items_page, static_state

    saved = (states.get(model_id) or {}).get("state") or {}
    cls = _widget_class(saved.get("_anywidget_id", ""))
    if cls is None or not isinstance(getattr(cls, "kind", None), str) or "_esm" not in saved:
        return None
    name = cls.__name__
    item = PageItem(cls.kind, saved["_esm"], saved.get("_css") or "", static_state(cls.kind, saved), name)
    page = items_page([item], "", about="The view as the notebook run left it.")
    return embed_frame(page, f"{name} (interactive, no kernel needed)", height=520)


def page_notebook(nb, nav: str):
    """A copy of an executed notebook ready for the site: each coax-nb widget output an
    embedded kernel-free page, other widget views (progress bars) and stderr noise out,
    papermill's parameter cells out, ``nav`` (markdown) on top and at the bottom."""
    import copy

    import nbformat

    nb = copy.deepcopy(nb)
    states = ((nb.metadata.get("widgets") or {}).get(WIDGET_STATE) or {}).get("state") or {}
    nb.metadata.pop("widgets", None)
    cells = []
    for cell in nb.cells:
        if "injected-parameters" in cell.metadata.get("tags", []):
            continue
        outputs = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                continue  # weight-loading bars and library chatter, not the lesson
            data = out.get("data", {})
            if WIDGET_VIEW in data:
                frame = widget_frame(data[WIDGET_VIEW].get("model_id", ""), states)
                del data[WIDGET_VIEW]
                if frame is not None:
                    data.pop("image/png", None)  # the frame shows the same view, live
                    data["text/html"] = frame
                elif set(data) <= {"text/plain"}:
                    continue  # a progress bar's "HBox(...)": nothing to read
            outputs.append(out)
        if cell.cell_type == "code":
            cell.outputs = outputs
        cells.append(cell)
    nb.cells = [nbformat.v4.new_markdown_cell(nav)] + cells + [nbformat.v4.new_markdown_cell(nav)]
    return nb


def notebook_html(nb, title: str) -> str:
    """nbconvert's lab page of ``nb``, code shown, with nothing fetched from outside."""
    from nbconvert import HTMLExporter

    nb.metadata["title"] = title
    exporter = HTMLExporter(template_name="lab")
    exporter.mathjax_url = ""
    exporter.require_js_url = ""
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    text, _ = exporter.from_notebook_node(nb)
    return text


def _inline(text: str) -> str:
    """Escaped text with markdown's `code` spans as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _summary_row(entry: dict) -> str:
    learn = "".join(f"<li>{_inline(x)}</li>" for x in entry["learn"])
    extra = (f' · <a href="{html.escape(entry["student"])}">student notebook</a>' if entry.get("student") else "")
    return (f'<tr><td><a href="{html.escape(entry["href"])}">{_inline(entry["title"])}</a>{extra}</td>'
            f"<td><ul>{learn}</ul></td><td><code>{html.escape(entry['model'])}</code></td>"
            f"<td>{entry['seconds']:.0f} s</td></tr>")


_INDEX_CSS = """
body { margin: 24px auto; max-width: 1100px; padding: 0 16px; font-family: system-ui, sans-serif; color: #1f1f1f;
  background: #fff; line-height: 1.45; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 24px; }
th, td { border-bottom: 1px solid #ddd; padding: 6px 8px; text-align: left; vertical-align: top; }
td ul { margin: 0; padding-left: 18px; }
.about { color: #555; }
@media (prefers-color-scheme: dark) { body { color: #e6e6e6; background: #111; } th, td { border-color: #444; }
  a { color: #8ab4f8; } .about { color: #bbb; } }
"""


def index_html(sections: list[tuple[str, str, list[dict]]], threads: int) -> str:
    from .. import __version__

    parts = []
    for heading, intro, entries in sections:
        rows = "".join(_summary_row(e) for e in entries)
        parts.append(f"<h2>{html.escape(heading)}</h2><p>{intro}</p><table><thead><tr><th>page</th>"
                     f"<th>you will learn</th><th>model</th><th>executed in</th></tr></thead>"
                     f"<tbody>{rows}</tbody></table>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>coax-nb course</title><style>{_INDEX_CSS}</style></head><body>"
            "<h1>coax-nb course: Conditional Co-Ablation, hands on</h1>"
            "<p class=\"about\">Executed notebooks, readable without a kernel or a network: the lessons (instructor "
            "edition, solutions in) and the tutorials. Interactive views run in the page; rescanning needs Jupyter. "
            f"Built by coax-nb {html.escape(__version__)}; run times measured during this build (kernel start included) on a "
            f"machine with {threads} CPU core(s).</p>" + "".join(parts) + "</body></html>\n")


def _nav(prev: Optional[tuple[str, str]], nxt: Optional[tuple[str, str]], extra: str = "") -> str:
    links = ["[Contents](../index.html)"]
    if prev:
        links.append(f"[← {prev[1]}]({prev[0]})")
    if nxt:
        links.append(f"[{nxt[1]} →]({nxt[0]})")
    return " · ".join(links) + extra


def build_site(out: Union[str, os.PathLike] = "site", *, tutorials: Union[None, bool, os.PathLike] = None,
               lessons_source: Optional[os.PathLike] = None, timeout: int = 1800,
               say: Callable[[str], None] = lambda message: None) -> Path:
    """Execute the instructor edition of every lesson and (by default) every tutorial, and
    write the site to ``out``: ``index.html``, ``lessons/*.html``, ``tutorials/*.html`` and
    the student edition's notebooks under ``student/`` for download. ``tutorials``: a folder
    of tutorial notebooks, None for the checkout's ``notebooks/``, False for none. A failing
    notebook stops the build (a ReportError naming the cell); the site is replaced only
    once every page is written."""
    from ..io import check_writable_folder
    from .editions import build

    out = check_writable_folder(out, "the site folder")
    if tutorials is None:
        tutorials = default_tutorials()
        if tutorials is None:
            raise FileNotFoundError("no tutorials found (notebooks/NN_*.ipynb next to the package or in the current "
                                    "folder); run from a checkout of coax-nb, pass tutorials=FOLDER "
                                    "(--tutorials DIR) or tutorials=False (--no-tutorials)")
    tutorial_files = sorted(Path(tutorials).glob("[0-9][0-9]_*.ipynb")) if tutorials else []
    if tutorials and not tutorial_files:
        raise FileNotFoundError(f"no tutorial notebooks (NN_name.ipynb) in {tutorials}")

    with tempfile.TemporaryDirectory(prefix="coax-site-") as tmp:
        tmp = Path(tmp)
        editions = build(tmp / "editions", source=lessons_source)
        staging = out.parent / f".{out.name}.building"
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "student").mkdir(parents=True)
        try:
            done = _write_pages(staging, tmp, editions, tutorial_files, timeout, say)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)  # the old site stays as it was
            raise
        old = out.parent / f".{out.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if out.exists():
            os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    say(f"site written to {out} ({done} pages): open {out / 'index.html'}")
    return out


def _write_pages(staging: Path, tmp: Path, editions: dict, tutorial_files: list, timeout: int,
                 say: Callable[[str], None]) -> int:
    """Execute every notebook and write its page, the student notebooks and the index
    into ``staging``; returns the number of pages."""
    import nbformat

    from ..io import atomic_write_text
    from ..report import execute_notebook
    from .editions import summary

    for path in editions["student"]:
        shutil.copyfile(path, staging / "student" / path.name)
    groups = [("lessons", editions["instructor"]), ("tutorials", tutorial_files)]
    total = sum(len(files) for _, files in groups)
    run_dir = tmp / "run"
    run_dir.mkdir()
    sections, done = [], 0
    for folder, files in groups:
        entries = []
        for i, src in enumerate(files):
            done += 1
            t0 = time.perf_counter()
            executed = tmp / "executed" / folder / src.name
            executed.parent.mkdir(parents=True, exist_ok=True)
            execute_notebook(src, executed, {}, cwd=run_dir, timeout=timeout)
            seconds = time.perf_counter() - t0
            say(f"[{done}/{total}] {folder}/{src.stem}: executed in {seconds:.0f} s")
            nb = nbformat.read(str(executed), as_version=4)
            info = summary(nb)
            params = next((c.source for c in nb.cells if "parameters" in c.metadata.get("tags", [])), "")
            found = _MODEL.search(params)
            title = info["title"] or src.stem
            prev = (f"{files[i - 1].stem}.html", summary(nbformat.read(str(files[i - 1]), 4))["title"]) \
                if i > 0 else None
            nxt = (f"{files[i + 1].stem}.html", summary(nbformat.read(str(files[i + 1]), 4))["title"]) \
                if i + 1 < len(files) else None
            student = f"../student/{src.name}" if folder == "lessons" else None
            extra = f" · [student notebook (no solutions)]({student})" if student else ""
            page = notebook_html(page_notebook(nb, _nav(prev, nxt, extra)), title)
            atomic_write_text(staging / folder / f"{src.stem}.html", page)
            entries.append({"title": title, "learn": info["learn"], "href": f"{folder}/{src.stem}.html",
                            "student": student and student.removeprefix("../"),
                            "model": found.group(1) if found else "-", "seconds": seconds})
        if entries:
            intro = ("Each lesson ends on exercises that check themselves "
                     "(<code>coax_nb.course.check</code>); shown here with the solutions."
                     if folder == "lessons" else "The tutorial notebooks of <code>notebooks/</code>, executed.")
            sections.append((folder.capitalize(), intro, entries))
    atomic_write_text(staging / "index.html", index_html(sections, os.cpu_count() or 1))
    return done
