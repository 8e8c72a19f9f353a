"""Kernel-free pages: components written to one self-contained, offline HTML file.

The page holds the built ES modules and stylesheets of ``static/`` inline, each
component's synced traitlets as JSON, and a small in-page model (``get`` / ``set`` /
``on`` / ``off`` / ``save_changes`` / ``send``) that stands in for the kernel, so the
modules run unchanged. Hover, sorting, score and order menus, legends, sliders and
selection work; the components of one page share their ``selected`` heads (as
:func:`coax_nb.widgets.link` does in a kernel). What needs the kernel is off and says so:
HeadMap's click-to-rescan (a click selects the head instead), and any ``model.send``.

A Content-Security-Policy in the page forbids every network request; nothing is loaded
from a CDN or from disk besides the file itself.
"""
from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import anywidget


# traits the page may not change: they only mean something to a kernel (a new primary set
# needs a rescan); the value the page shows is the one the kernel last computed
KERNEL_ONLY = {"headmap": ("primaries",)}
# what each kind's page shows instead (a visible line above the component)
KERNEL_NOTES = {"headmap": "static page: rescanning needs a kernel; a click selects or unselects the head"}
# state that makes sense only live: a static HeadMap selects on click and is never busy
STATIC_STATE = {"headmap": {"click_action": "select", "busy": False}}
SEND_NOTE = "static page: this action needs a kernel"

_BASE_TRAITS = frozenset(anywidget.AnyWidget.class_traits(sync=True))


def kind_of(component) -> str:
    """The bundle name of a component (``headmap`` for ``static/headmap.js``, its class's
    ``kind``): the in-page model gives each kind its kernel-only traits and note."""
    kind = getattr(type(component), "kind", None)
    if not isinstance(component, anywidget.AnyWidget) or not isinstance(kind, str):
        raise TypeError(f"{type(component).__name__} is not one of coax-nb's components; to_html writes HeadMap, "
                        "BlindSpot, SynergyGrid, Curves, RankingTable and SensitivityExplorer")
    return kind


def _finite(x):
    """JSON-safe copy: NaN and inf become null (the modules read null as 'no value')."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def component_state(component: anywidget.AnyWidget) -> dict:
    """The component's own synced traitlets (what its module reads), JSON-ready, with
    the static page's overrides (e.g. a HeadMap selects on click and is not busy)."""
    names = sorted(n for n in set(component.trait_names(sync=True)) - _BASE_TRAITS if not n.startswith("_"))
    return static_state(kind_of(component), component.get_state(key=names))


def static_state(kind: str, synced: dict) -> dict:
    """A component's page state from its synced traitlets (a live component's, or the
    widget state a notebook run saved): the component's own traits only, JSON-ready, with
    the static page's overrides."""
    own = {k: v for k, v in synced.items() if k not in _BASE_TRAITS and not k.startswith("_")}
    state = json.loads(json.dumps(_finite(own), default=_numpy_default))
    state.update(STATIC_STATE.get(kind, {}))
    return state


def _numpy_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return _finite(o.item())
    if isinstance(o, np.ndarray):
        return _finite(o.tolist())
    raise TypeError(f"cannot write {type(o).__name__} to the page")


def _json_in_script(obj) -> str:
    """JSON for a ``<script type="application/json">`` element: ``<``, ``>`` and ``&``
    escaped (they occur only inside JSON strings), so no text can close the element."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# The in-page model and the loader. Each bundle is imported from a blob: URL made from its
# text, as anywidget does; the CSP below allows blob: scripts and nothing from outside.
_BOOT = r"""
const data = JSON.parse(document.getElementById("coax-data").textContent);
const peers = [];
function makeModel(item, noteEl) {
  const state = item.state, handlers = {}, locked = data.kernel_only[item.kind] || [];
  const say = (text) => { noteEl.textContent = text; noteEl.hidden = false; };
  const fire = (evt) => (handlers[evt] || []).slice().forEach((f) => f());
  const model = {
    get(k) { return state[k]; },
    set(k, v) {
      if (locked.includes(k)) { say(data.notes[item.kind] || data.send_note); fire("change:" + k); return; }
      if (JSON.stringify(state[k]) === JSON.stringify(v)) return;
      state[k] = v;
      fire("change:" + k); fire("change");
      // the shared selection, as link() does in a kernel
      if (k === "selected" && data.linked) {
        for (const p of peers) if (p !== model) p.set("selected", Array.isArray(v) ? [...v] : v);
      }
    },
    on(evt, f) { (handlers[evt] = handlers[evt] || []).push(f); },
    off(evt, f) {
      if (evt === undefined) { for (const k in handlers) delete handlers[k]; return; }
      handlers[evt] = f ? (handlers[evt] || []).filter((g) => g !== f) : [];
    },
    save_changes() {},
    send() { say(data.send_note); },
  };
  return model;
}
const modules = {};
for (const [kind, src] of Object.entries(data.modules)) {
  const url = URL.createObjectURL(new Blob([src], { type: "text/javascript" }));
  modules[kind] = (await import(url)).default;
  URL.revokeObjectURL(url);
}
if (data.linked) {  // one selection for the page: the first non-empty one
  const first = data.components.find((c) => (c.state.selected || []).length > 0);
  if (first) for (const c of data.components) if ("selected" in c.state) c.state.selected = [...first.state.selected];
}
const models = [];
for (const [i, item] of data.components.entries()) {
  const box = document.getElementById("coax-item-" + i);
  const model = makeModel(item, box.querySelector(".coax-export-note"));
  models.push(model);
  if ("selected" in item.state) peers.push(model);
  const mod = modules[item.kind];
  if (mod.initialize) await mod.initialize({ model });
  await mod.render({ model, el: box.querySelector(".coax-export-mount") });
}
window.coaxPage = { models };  // for a console (and the tests): each component's in-page model
document.body.dataset.ready = "1";
"""

_PAGE_CSS = """
body { margin: 16px 24px; font-family: system-ui, sans-serif; color: #1f1f1f; background: #ffffff; }
h1 { font-size: 18px; margin: 0 0 4px; }
.coax-export-about { color: #616161; font-size: 12px; margin: 0 0 12px; }
.coax-export-item { margin: 0 0 20px; }
.coax-export-item h2 { font-size: 14px; margin: 0 0 4px; }
.coax-export-note { font-size: 12px; color: #8a4b00; background: #fff4e0; border: 1px solid #e8c48a;
  border-radius: 3px; padding: 2px 6px; margin: 0 0 4px; display: inline-block; }
.coax-export-note[hidden] { display: none; }
@media (prefers-color-scheme: dark) {
  body { color: #e6e6e6; background: #111111; --jp-ui-font-color1: #e6e6e6; --jp-ui-font-color2: #bebebe;
    --jp-layout-color1: #111111; --jp-layout-color3: #555555; --jp-border-color1: #777777; }
  .coax-export-about { color: #bebebe; }
  .coax-export-note { color: #ffd9a0; background: #3a2a10; border-color: #7a5a20; }
}
"""

_CSP = ("default-src 'none'; script-src 'unsafe-inline' blob:; style-src 'unsafe-inline'; img-src data:; "
        "font-src 'none'; connect-src 'none'; form-action 'none'; base-uri 'none'")


def page_html(components: Union[anywidget.AnyWidget, Sequence[anywidget.AnyWidget]], title: str = "coax-nb", *,
              captions: Optional[Sequence[str]] = None, linked: bool = True, about: str = "") -> str:
    """The page as a string (see :func:`to_html`)."""
    comps = _components(components)
    if captions is not None and len(captions) != len(comps):
        raise ValueError(f"captions: {len(captions)} given for {len(comps)} components; give one per component")
    # the module text anywidget itself would load (the built static/ file)
    items = [PageItem(kind_of(c), str(c._esm), str(c._css or ""), component_state(c),
                      captions[i] if captions is not None else type(c).__name__) for i, c in enumerate(comps)]
    return items_page(items, title, linked=linked, about=about)


@dataclass
class PageItem:
    """One component of a page: its bundle name, module and stylesheet text, page state
    (:func:`static_state`) and heading."""

    kind: str
    esm: str
    css: str
    state: dict
    caption: str


def items_page(items: Sequence[PageItem], title: str = "coax-nb", *, linked: bool = True, about: str = "") -> str:
    """The page of :func:`page_html` from its parts; also builds pages of components a
    notebook run saved as widget state (the course site), with no live component. An
    empty ``title`` leaves out the page's heading (a page embedded in another)."""
    if not items:
        raise ValueError("a page needs at least one component")
    modules, styles = {}, {}
    for item in items:
        modules.setdefault(item.kind, item.esm)
        styles.setdefault(item.kind, item.css)
    data = {"modules": modules, "components": [{"kind": i.kind, "state": i.state} for i in items],
            "linked": bool(linked and len(items) > 1),
            "kernel_only": {k: list(v) for k, v in KERNEL_ONLY.items()}, "notes": KERNEL_NOTES, "send_note": SEND_NOTE}
    from .. import __version__

    shared = " Selecting a head in one view selects it in the others." if data["linked"] else ""
    about = (about + " " if about else "") + (
        f"Static page written by coax-nb {__version__}: hover, sort, menus and selection work without a kernel."
        + shared)
    sections = []
    for i, item in enumerate(items):
        kind, note = item.kind, KERNEL_NOTES.get(item.kind)
        sections.append(
            f'<section class="coax-export-item" id="coax-item-{i}" data-kind="{kind}">'
            f"<h2>{html.escape(item.caption)}</h2>"
            f'<div class="coax-export-note" role="note"{"" if note else " hidden"}>{html.escape(note or "")}</div>'
            f'<div class="coax-export-mount"></div></section>')
    css = "\n".join(_style_text(s) for s in [_PAGE_CSS, *styles.values()])
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title or 'coax-nb')}</title>\n<style>\n{css}\n</style>\n</head>\n<body>\n"
        + (f"<h1>{html.escape(title)}</h1>\n" if title else "")
        + f"<p class=\"coax-export-about\">{html.escape(about)}</p>\n"
        + "\n".join(sections)
        + f'\n<script type="application/json" id="coax-data">{_json_in_script(data)}</script>\n'
        f'<script type="module">{_BOOT}</script>\n</body>\n</html>\n')


def _style_text(css: str) -> str:
    # "</" could close the <style> element; "\/" is the same character to CSS
    return css.replace("</", "<\\/")


def _components(components) -> list:
    comps = [components] if isinstance(components, anywidget.AnyWidget) else list(components)
    if not comps:
        raise ValueError("to_html needs at least one component")
    odd = [type(c).__name__ for c in comps if not isinstance(getattr(type(c), "kind", None), str)
           or not isinstance(c, anywidget.AnyWidget)]
    if odd:
        raise TypeError(f"to_html takes coax-nb components (HeadMap, BlindSpot, ...), got {odd[0]}")
    return comps


def to_html(components: Union[anywidget.AnyWidget, Iterable[anywidget.AnyWidget]], path: os.PathLike, title: str = "coax-nb", *,
            captions: Optional[Sequence[str]] = None, linked: bool = True, about: str = "") -> Path:
    """Write ``components`` (one, or several for one page) to ``path`` as one offline HTML file.

    The page runs each component's ES module with its current state and no kernel. With
    ``linked`` (the default) the components share their selected heads, as :func:`link`
    does. ``captions``: one heading per component (default: the class names); ``about``:
    a line under the title. The file is replaced atomically; returns its path."""
    from ..io import atomic_write_text

    text = page_html(components, title, captions=captions, linked=linked, about=about)
    return atomic_write_text(path, text)


# the frame fits its page once rendered (a srcdoc frame shares its parent's origin, so the
# parent may read its height); where it cannot, the given height stays
_FIT = ("try{const f=this,d=f.contentDocument;const fit=()=>{f.style.height=Math.ceil(d.body.getBoundingClientRect()"
        ".bottom+24)+'px'};new ResizeObserver(fit).observe(d.body);fit()}catch(e){}")


def embed_frame(page: str, title: str, height: int = 600) -> str:
    """An ``<iframe srcdoc>`` holding ``page`` (a page of :func:`page_html` /
    :func:`items_page`) for another HTML document: the page keeps its own CSP, and the
    frame grows to the page's height."""
    return (f'<iframe class="coax-frame" title="{html.escape(title, quote=True)}" '
            f'srcdoc="{html.escape(page, quote=True)}" onload="{html.escape(_FIT, quote=True)}" '
            f'style="width:100%;height:{int(height)}px;border:1px solid #ddd" loading="lazy"></iframe>')
