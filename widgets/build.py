"""Build the widgets' front end: one self-contained ES module and one stylesheet per
component, written to ``coax_nb/widgets/static/`` (committed and shipped in the wheel).

    python widgets/build.py           # rebuild
    python widgets/build.py --check   # exit 1 when a committed bundle is stale
    python widgets/build.py --watch   # rebuild on every save (with ANYWIDGET_HMR=1 the page reloads)

The sources are plain ES modules that import each other by relative path
(``import { fmt } from "./common.js"``, ``import PALETTE from "./palette.json" with { type: "json" }``).
anywidget loads one module string per widget, so this script inlines those local imports
(each file once, ``export`` dropped) — nothing else, and nothing from the network: any
other import is an error. The output depends only on the sources, byte for byte.
"""
from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parent
OUT = SRC.parent / "coax_nb" / "widgets" / "static"
# bundle name -> (ES module, stylesheet); base.css goes first in every stylesheet
COMPONENTS = {
    "headmap": ("headmap.js", "headmap.css"),
    "blindspot": ("blindspot.js", "blindspot.css"),
    "synergy": ("synergy.js", "synergy.css"),
    "curves": ("curves.js", "curves.css"),
    "ranking": ("ranking.js", "ranking.css"),
    "sensitivity": ("sensitivity.js", "sensitivity.css"),
}
IMPORT = re.compile(r'^import\s+(?:\{([^}]*)\}|(\w+))\s+from\s+"([^"]+)"(?:\s+with\s*\{[^}]*\})?;[ \t]*\n', re.M)
EXPORT = re.compile(r"^export\s+(?=(?:function|const|let|class)\s)", re.M)
EXPORTED = re.compile(r"^export\s+(?:function|const|let|class)\s+(\w+)", re.M)


def _header(names: list[str]) -> str:
    return f"/* Built by widgets/build.py from {', '.join(names)}: edit those, then rebuild. */\n"


def _bundle_js(entry: str) -> str:
    """The entry module with its local imports inlined, dependencies first."""
    done: list[str] = []
    parts: list[str] = []

    def visit(name: str, default_as: str | None = None) -> None:
        if name.endswith(".json"):
            data = json.loads((SRC / name).read_text(encoding="utf-8"))
            parts.append(f"const {default_as} = {json.dumps(data, separators=(', ', ': '))};\n")
            done.append(name)
            return
        text = (SRC / name).read_text(encoding="utf-8")
        for m in IMPORT.finditer(text):
            names, default, target = m.groups()
            if not re.fullmatch(r"\./[\w-]+\.(js|json)", target):
                raise SystemExit(f"{name}: only local imports (./x.js, ./x.json) are allowed, not {target!r}")
            if names:
                exported = set(EXPORTED.findall((SRC / target[2:]).read_text(encoding="utf-8")))
                missing = {n.strip() for n in names.split(",") if n.strip()} - exported
                if missing:
                    raise SystemExit(f"{name}: {target} does not export {', '.join(sorted(missing))}")
            if target[2:] not in done:
                visit(target[2:], default)
        parts.append(EXPORT.sub("", IMPORT.sub("", text)) if name != entry else IMPORT.sub("", text))
        done.append(name)

    visit(entry)
    return _header(done) + "\n".join(p.rstrip("\n") + "\n" for p in parts)


def _palette_css(palette: dict) -> str:
    return (".coax-root {\n"
            f"  --coax-primary: {palette['primary']};\n"
            f"  --coax-truth: {palette['truth']};\n"
            f"  --coax-point: {palette['point']};\n"
            f"  --coax-nan-fallback: {palette['nan']};\n"
            "}\n")


def _bundle_css(sheet: str) -> str:
    palette = json.loads((SRC / "palette.json").read_text(encoding="utf-8"))
    base, own = (SRC / "base.css").read_text(encoding="utf-8"), (SRC / sheet).read_text(encoding="utf-8")
    return _header(["palette.json", "base.css", sheet]) + _palette_css(palette) + base + own


def outputs() -> dict[str, str]:
    """Every built file's name and text."""
    out = {}
    for name, (module, sheet) in COMPONENTS.items():
        out[f"{name}.js"] = _bundle_js(module)
        out[f"{name}.css"] = _bundle_css(sheet)
    # the Python side (coax_nb.plots) draws the static pictures with the same palette
    out["palette.json"] = (SRC / "palette.json").read_text(encoding="utf-8")
    return out


def stale() -> list[str]:
    """Built files missing from, or different in, ``coax_nb/widgets/static/``."""
    return [n for n, text in outputs().items()
            if not (OUT / n).exists() or (OUT / n).read_text(encoding="utf-8") != text]


def build() -> list[str]:
    OUT.mkdir(parents=True, exist_ok=True)
    changed = stale()
    for name, text in outputs().items():
        if name in changed:
            (OUT / name).write_text(text, encoding="utf-8")
    return changed


def main(argv: list[str]) -> int:
    if "--check" in argv:
        names = stale()
        if names:
            print("stale widget bundles (run python widgets/build.py):", ", ".join(names))
            return 1
        return 0
    print("built:", ", ".join(build()) or "nothing changed")
    if "--watch" in argv:
        while True:  # polling keeps this free of dependencies
            time.sleep(0.5)
            changed = build()
            if changed:
                print("rebuilt:", ", ".join(changed), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
