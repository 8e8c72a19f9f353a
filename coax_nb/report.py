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

import base64
import html
import io
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
from .tasks import check_prompt_seeds
from .variant import ablation_action

log = logging.getLogger(__name__)

REPORT_NOTEBOOK = Path(__file__).resolve().parent / "report.ipynb"
REPORT_FILES = ("report.ipynb", "report.html", "report.json")  # published together or not at all
LOCK_FILE = ".coax-report.lock"
JOURNAL_FILE = ".coax-report.publishing"  # names the staging folder while its files are moved in
STAGING_PREFIX = ".coax-report-staging-"
FAILED_DIR = ".failed"  # the last failed run's notebook, kept for debugging
TITLE_KEY = "coax_report_title"  # output metadata naming the report; export_html makes it the page title
HIDDEN_TAGS = {"parameters", "injected-parameters", "report-hidden"}  # cells left out of report.html

ABLATION_TEXT = {
    "zero": "zero ablation: a removed head's output is set to 0 at every position",
    "mean": "mean ablation: a removed head's output is replaced by its mean over the clean prompts and positions",
    "resample": "resample ablation: a removed head's output is replaced by its output on a paired corrupted prompt",
}
EFFECT_TEXT = {
    "fisher": "Fisher energy, the mean squared centred Fisher feature of the logit change (about 2 × KL, in nats)",
    "kl": "KL divergence from the reference distribution, in nats",
    "task": "drop of the task metric",
}
POSITION_TEXT = {"last": "at the last position (the answer slot)", "all": "at every next-token prediction",
                 "full": "at every position"}


@dataclass
class Section:
    """One figure of the report with its heading and caption."""

    title: str
    figure: object
    caption: str

    def html(self, number: int, dpi: int = 110) -> str:
        """The figure as an inline PNG in a ``<figure>`` with its caption (no file, no CDN)."""
        buf = io.BytesIO()
        self.figure.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        title = html.escape(self.title)
        return (f'<h2 id="figure-{number}">{title}</h2>\n'
                f'<figure class="coax-figure" style="margin: 0 0 2em 0">'
                f'<img src="data:image/png;base64,{data}" alt="Figure {number}: {title}" style="max-width: 100%">'
                f'<figcaption style="max-width: 60em; margin-top: 0.5em"><strong>Figure {number}.</strong> '
                f'{html.escape(self.caption)}</figcaption></figure>')

    def bundle(self, number: int) -> dict:
        """A display bundle for the notebook (``display(bundle, raw=True)``); the figure is
        closed, so the inline backend does not show it a second time at the cell's end."""
        import matplotlib.pyplot as plt

        try:
            return {"text/html": self.html(number), "text/plain": f"Figure {number}. {self.title}: {self.caption}"}
        finally:
            plt.close(self.figure)


def _and(names) -> str:
    names = [str(n) for n in names]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _md(text) -> str:
    """Free text (a prompt, a card's rule) escaped for Markdown, so it shows as written."""
    return "".join("\\" + ch if ch in "\\`*_[]<>|#" else ch for ch in str(text))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _seeds(prompt_seed=None, prompt_seeds=None) -> list:
    """The prompt seeds a report runs on: ``[prompt_seed]`` (default ``[0]``; checked with
    the other inputs) or ``prompt_seeds`` (several: mean ± std over them), never both."""
    if prompt_seeds is None:
        return [0 if prompt_seed is None else prompt_seed]
    if prompt_seed is not None:
        raise ValueError(f"give prompt_seed (one prompt set) or prompt_seeds (several, mean ± std over them), not "
                         f"both: got prompt_seed={prompt_seed!r} and prompt_seeds={prompt_seeds!r}")
    return check_prompt_seeds(prompt_seeds)


def _over_seeds(kind, results: list, seeds: list):
    """One prompt seed's result as it is; several seeds' as their mean (``kind.mean_over_seeds``)."""
    return results[0] if len(results) == 1 else kind.mean_over_seeds(results, seeds)


@dataclass
class SeedRun:
    """What a multi-seed report computed on one prompt seed's prompt set."""

    prompt_seed: int
    scores: object
    freezing: Optional[object]
    wakeup: Optional[object]


@dataclass
class Report:
    """Everything one report computed. With several prompt seeds ``scores``, ``freezing``
    and ``wakeup`` are the means over the seeds (their ``mean_over_seeds``), ``recovery``
    holds one repeat per seed, ``robustness`` is of the first seed, and ``per_seed`` keeps
    each seed's own results."""

    scores: object
    recovery: Optional[object]
    freezing: Optional[object]
    wakeup: Optional[object]
    robustness: Optional[object] = None
    meta: dict = field(default_factory=dict)
    per_seed: list = field(default_factory=list)

    @property
    def seeds(self) -> list:
        """The prompt seeds the report ran on (one, unless it is a multi-seed report)."""
        return self.meta.get("prompt_seeds") or [self.meta.get("prompt_seed")]

    @property
    def multi(self) -> bool:
        return len(self.seeds) > 1

    def _pm(self, value: float, std: Optional[float], spec: str) -> str:
        """A number as the report prints it: ``0.96``, or ``0.96 ± 0.05`` over several seeds."""
        return f"{value:{spec}}" + (f" ± {std:{spec}}" if self.multi else "")

    def _seed_text(self) -> str:
        """"4 prompt seeds (1, 15, 22 and 8)"."""
        return f"{_plural(len(self.seeds), 'prompt seed')} ({_and(self.seeds)})"

    def _prompts(self) -> str:
        """"12 prompts", or "12 prompts on each of 4 prompt seeds (1, 15, 22 and 8)"."""
        n = _plural(self.meta["n_prompts"], "prompt")
        return f"{n} on each of {self._seed_text()}" if self.multi else n

    def _freezing_std(self) -> Optional[float]:
        return (self.freezing.meta.get("over_prompt_seeds") or {}).get("removed_std") if self.multi else None

    def headline(self) -> str:
        """The table printed to the terminal."""
        seeds = f" on each of prompt seeds {_and(self.seeds)}" if self.multi else ""
        lines = [f"CoAx report: {self.meta['model']} on {self.meta['task']} ({self.meta['n_prompts']} prompts{seeds}), "
                 f"primaries S = {', '.join(self.meta['primaries'])}", "", self.scores.table(self.meta["top"])]
        if self.scores.meta.get("mlp_share", 0) > 0.5:
            lines += ["", f"warning: MLP layers carry {self.scores.meta['mlp_share']:.0%} of the first-order ablation "
                          "effect on this task; a head ranking says little about it (docs/method.md)"]
        if self.recovery is not None:
            lines += ["", "backup recovery (ground truth " + ", ".join(self.meta["truth"]) + "):"]
            for r in self.recovery.rows:
                lines.append(f"  {r['selector']:>12}: ROC-AUC {self._pm(r['roc_auc'], r.get('roc_auc_std'), '.3f')}  "
                             f"AP {self._pm(r['ap'], r.get('ap_std'), '.3f')}")
        if self.robustness is not None:
            lines += ["", f"robustness{f' (prompt seed {self.seeds[0]})' if self.multi else ''}:",
                      self.robustness.table()]
        if self.freezing is not None:
            lines.append(f"\nfreezing CoAx's top heads removes {self._pm(self.freezing.removed, self._freezing_std(), '.0%')}"
                         " of the self-repair "
                         f"(random sets: {sum(self.freezing.random_removed) / len(self.freezing.random_removed):.0%})")
        return "\n".join(lines)

    def title(self) -> str:
        """The report's title (the HTML page's too)."""
        return f"CoAx report: {self.meta['model']} on {self.meta['task']}"

    def effect_units(self) -> str:
        """What the scan's single / conditional / comp values are measured in."""
        effect = self.meta.get("effect", "fisher")
        if effect == "task":
            units = self.meta.get("metric_units")
            return f"drop of {self.meta.get('metric', 'the task metric')}" + (f", {units}" if units else "")
        return {"fisher": "Fisher energy", "kl": "KL, nats"}.get(effect, effect)

    def finding(self) -> str:
        """The headline finding in one sentence, computed from the results."""
        sel = self.meta["selected"]
        k = len(sel)
        parts = [f"CoAx ranks {_and(sel)} first among the heads outside S"]
        if self.multi:
            parts[0] = (f"Over {_plural(len(self.seeds), 'prompt seed')} ({_and(self.seeds)}; numbers are mean ± std), "
                        + parts[0])
        if self.recovery is not None:
            n = len(self.meta["truth"])
            comp, single = (next(r for r in self.recovery.rows if r["selector"] == s) for s in ("comp", "single"))
            clause = (f"its ranking recovers the {_plural(n, 'known backup')} with ROC-AUC "
                      f"{self._pm(comp['roc_auc'], comp.get('roc_auc_std'), '.2f')}, against "
                      f"{self._pm(single['roc_auc'], single.get('roc_auc_std'), '.2f')} for single ablation")
            best = max(self.recovery.rows, key=lambda r: r["roc_auc"])
            if best["selector"] != "comp" and best["roc_auc"] > comp["roc_auc"] + 0.005:
                from .results import SELECTOR_LABELS

                clause += (f" (best here: {SELECTOR_LABELS.get(best['selector'], best['selector'])}, "
                           f"{self._pm(best['roc_auc'], best.get('roc_auc_std'), '.2f')})")
            parts.append(clause)
        them = "it" if k == 1 else "them"
        if self.freezing is not None:
            fr, rnd = self.freezing, self.freezing.random_removed
            sets = f"{_plural(len(rnd), 'random set')} of {_plural(k, 'head')}"
            removed = self._pm(fr.removed, self._freezing_std(), ".0%")
            if rnd and fr.removed > max(rnd):
                parts.append(f"freezing {them} removes {removed} of the self-repair, more than any of "
                             f"{sets} (at most {max(rnd):.0%})")
            elif rnd:
                parts.append(f"freezing {them} removes {removed} of the self-repair, no more than {sets} "
                             f"do (mean {sum(rnd) / len(rnd):.0%}, up to {max(rnd):.0%})")
        else:
            where = self.meta.get("no_repair_seeds") if self.multi else None
            parts.append("the model shows no self-repair of S"
                         + (f" on {_plural(len(where), 'prompt seed')} ({_and(where)})" if where else "")
                         + f" for freezing {them} to remove")
        return (parts[0] if len(parts) == 1 else "; ".join(parts[:-1]) + ", and " + parts[-1]) + "."

    def title_block_markdown(self) -> str:
        """Title, what was run (model, task, prompts, S and how it was chosen, ablation,
        effect, versions) and the finding."""
        m = self.meta
        prov = m.get("provenance") or {}
        model = f"`{m['model']}`: {self.scores.n_layers} layers × {self.scores.n_heads} heads"
        if prov.get("weights_sha256"):
            model += f", weights sha256 {prov['weights_sha256'][:12]}…"
        if prov.get("commit"):
            model += f", commit {prov['commit'][:12]}"
        if prov.get("device"):
            model += f", run on {prov['device']}"
        task = m["task"]
        if m.get("metric"):
            task += f": behaviour metric {m['metric']}" + (f", in {m['metric_units']}" if m.get("metric_units") else "")
        if m.get("position_mode") in POSITION_TEXT:
            task += f"; effects read {POSITION_TEXT[m['position_mode']]}"
        prompts = f"{m['n_prompts']} (prompt seed {m['prompt_seed']})"
        if self.multi:
            prompts = (f"{m['n_prompts']} on each of {self._seed_text()}: one prompt set per seed, one engine each; "
                       f"every number below is the mean ± std (ddof 0) over the {len(self.seeds)} sets")
        if m.get("prompt_kind"):
            prompts += f", {m['prompt_kind']}"
        if m.get("example_prompt"):
            prompts += f", e.g. “{_md(m['example_prompt'])}”"
        source = m["primaries_source"]
        how = {"organism card": "from the organism's card, fixed when the organism was built (not by CoAx)",
               "given": "given by the user (--primaries)"}.get(source, f"discovered: {source}")
        if self.multi and source not in ("organism card", "given"):
            how += f" (on prompt seed {self.seeds[0]}, and kept for every seed, so that the scores average over one S)"
        if m.get("primaries_rule"):
            how += f": {_md(m['primaries_rule'])}"
        truth = (f"{', '.join(m['truth'])}, the backups known independently of CoAx" if m["truth"] else
                 "none given: the report cannot say whether the ranking finds real backups")
        ablation = m.get("ablation", "zero")
        effect = m.get("effect", "fisher")
        versions = " · ".join(f"{p} {v}" for p, v in (prov.get("packages") or {}).items() if v)
        if prov.get("python"):
            versions += f" · python {prov['python']}"
        if prov.get("created"):
            versions += f"; run {prov['created']}"
        lines = [f"# {self.title()}", "",
                 f"- **Model** {model}",
                 f"- **Task** {task}",
                 f"- **Calibration prompts** {prompts}",
                 f"- **Primaries S** {', '.join(m['primaries'])}, {how}",
                 f"- **Ground truth** {truth}",
                 f"- **Ablation** {ABLATION_TEXT.get(ablation, ablation)}",
                 f"- **Effect** {effect}: {EFFECT_TEXT.get(effect, effect)}"
                 + (f" ({m['metric']})" if effect == "task" and m.get("metric") else ""),
                 f"- **Versions** {versions}",
                 "", f"**Finding.** {self.finding()}", "",
                 "**What S is.** S, the primaries, are the heads that carry the behaviour in the intact model. "
                 "CoAx ablates S and asks which other heads take over: for every head u outside S, "
                 "comp(u | S) = conditional(u | S) − single(u), the effect of ablating u once S is gone minus its "
                 "effect in the intact model (both in " + self.effect_units() + "). A head with a large positive "
                 "score matters more once S is removed: a candidate backup (self-repair). Single ablation alone "
                 "misses such heads, since they do little while S works."]
        return "\n".join(lines)

    def summary_markdown(self) -> str:
        """The opening of the report: the title block and finding, then any warning and
        the stability paragraph."""
        text = self.title_block_markdown()
        share = self.scores.meta.get("mlp_share")
        if share is not None and share > 0.5:
            text += (f"\n\n**Warning:** MLP layers carry {share:.0%} of the first-order ablation effect on this task; "
                     "CoAx ranks heads, and says little about a behaviour that feed-forward layers dominate.")
        if self.robustness is not None:
            text += "\n\n" + self.stability_markdown()
        return text

    def ranking_markdown(self) -> str:
        """Table 1: the top heads by CoAx with every score, ground truth marked."""
        sc = self.scores
        cols = [c for c in ("comp", "ratio", "single", "conditional", "wakeup") if c in sc.scores]
        truth = set(self.meta["truth"])
        rows = ["| rank | head | " + " | ".join(cols) + " |", "|---:|:---|" + "---:|" * len(cols)]
        for r, (u, _) in enumerate(sc.top(self.meta["top"]), 1):
            i = u.flat(sc.n_heads)
            name = f"{u} ○" if str(u) in truth else str(u)
            rows.append(f"| {r} | {name} | " + " | ".join(sc.cell(c, i) for c in cols) + " |")
        units = self.effect_units()
        over = (f"; each cell is the mean ± std over the {_plural(len(self.seeds), 'prompt seed')}, ranked by the "
                "mean comp" if self.multi else "")
        return ("## Ranking\n\n" + "\n".join(rows) + "\n\n**Table 1.** The heads outside S ranked by CoAx "
                f"(comp), {self._prompts()}, {self.meta.get('ablation', 'zero')} ablation{over}"
                + ("; ○ marks ground truth" if truth else "") + ". single: the head's ablation effect in the intact model; conditional: its "
                "effect once S is ablated; comp = conditional − single (these three in " + units + "); ratio = "
                "conditional / single (no units); wakeup = the head's output norm with S ablated over its clean "
                "output norm.")

    def stability_markdown(self) -> str:
        """One paragraph on how far the ranking can be trusted (the robustness panel)."""
        r = self.robustness
        level = f"{r.meta['level']:.0%}"
        head = f"**Stability (prompt seed {self.seeds[0]}):**" if self.multi else "**Stability:**"
        if r.auc:
            a = r.auc_row("comp")
            text = (f"{head} CoAx ROC-AUC {a['auc']:.3f}, {level} bootstrap interval "
                    f"[{a['lo']:.3f}, {a['hi']:.3f}] over {r.meta['n_prompts']} prompts")
        else:
            half = [x for x in r.efficiency if x["selector"] == "comp" and x["n_prompts"] <= r.meta["n_prompts"] // 2]
            text = f"{head} no ground truth"
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

    def interactive_bundle(self) -> dict:
        """The scan as an interactive view inside the report: the head map, blind spot and
        ranking, linked (:func:`coax_nb.widgets.page_html`, the same offline page as
        ``coax-nb page``) in an ``<iframe srcdoc>``; the figures above remain the static
        fallback (PDF, text-only viewers: they get the plain-text line)."""
        from .widgets.export import embed_frame, page_html
        from .widgets.pages import result_components

        comps, captions, about = result_components(self.scores, truth=list(self.meta["truth"]))
        page = page_html(comps, title=self.title(), captions=captions,
                         about=about + " Hover a head for every score; click to select it in all three views.")
        frame = embed_frame(page, "interactive view", height=1150)
        text = ("<h2>Interactive view</h2><p>The same scan"
                + (f" (the mean over {html.escape(self._seed_text())})" if self.multi else "")
                + ", live in this page without a kernel: hover a head for "
                "all its scores, sort the table, select heads across the three views. Rescanning with another S "
                "needs a notebook (<code>HeadMap.live</code>).</p>")
        return {"text/html": text + frame,
                "text/plain": "Interactive view: open report.html in a browser (the figures above show the same scan)."}

    def sections(self) -> list:
        """The report's figures, each once, with a heading and a caption (:class:`Section`)."""
        import numpy as np

        from .plots import blind_spot, head_map, head_map_spread
        from .widgets import BlindSpot

        m, sc = self.meta, self.scores
        truth, ablation = m["truth"], m.get("ablation", "zero")
        units = self.effect_units()
        run = f"{ablation} ablation, {self._prompts()}"
        known = " White dots mark the ground-truth backups." if truth else ""
        if self.multi:
            picture = head_map_spread(sc.grid("comp"), sc.spread("comp").reshape(sc.n_layers, sc.n_heads), "comp",
                                      self.seeds, primaries=sc.primaries, truth=truth, units=units)
            spread = (f" Left: the mean over the {self._seed_text()}; right: its std over them (how far one prompt "
                      "set moves a head).")
        else:
            picture, spread = head_map(sc.grid("comp"), "comp", primaries=sc.primaries, truth=truth, units=units), ""
        out = [Section(
            "CoAx score of every head", picture,
            f"CoAx score comp(u | S) = conditional − single of every head, in {units} ({run}); rows are layers "
            f"L0–L{sc.n_layers - 1}, columns heads 0–{sc.n_heads - 1}. Black cells marked S are the primaries "
            "(not scored). The colour bar is diverging around 0 when scores have both signs: vermillion, the head "
            "matters more once S is gone (a backup candidate); blue, less." + known + spread)]
        if self.multi:  # each seed's percentiles, as the widget computes them: their mean ± std
            px, py, names = zip(*(BlindSpot(s.scores, truth=truth).percentiles() for s in self.per_seed))
            picture = blind_spot(np.mean(px, 0), np.mean(py, 0), names[0], "single", "comp", truth=truth,
                                 x_err=np.std(px, 0), y_err=np.std(py, 0))
            spread = (f" Each point is the head's mean percentile over the {self._seed_text()}, its bars ± std "
                      "over them.")
        else:
            picture, spread = BlindSpot(sc, truth=truth).figure(), ""
        out.append(Section(
            "What single ablation misses", picture,
            "Each head outside S placed by its percentile rank (0–100, among the heads outside S) under single ablation (x, the first-order "
            f"effect a one-at-a-time ablation study sees) and under CoAx (y), {run}. Heads in the shaded upper-left "
            "quadrant do little alone but much once S is gone: backups that single ablation misses."
            + (" Ground-truth backups in vermillion." if truth else "") + spread))
        if self.recovery is not None:
            out.append(Section(
                "Recovery of the known backups", self.recovery.plot(),
                f"How well each selector's ranking separates the {_plural(len(truth), 'known backup')} "
                f"({', '.join(truth)}) from the other heads outside S: ROC-AUC, 1 when every backup is ranked above "
                f"every other head, 0.5 (dashed) chance; {run}. CoAx scores in blue, the other selectors in grey; "
                + (f"bars are the mean ROC-AUC over the {self._seed_text()}, error bars ± std over them (each seed's "
                   "prompt set scored by every selector)." if self.multi else
                   "error bars are the spread over repeats where there are several.")))
        if self.wakeup is not None:
            w = self.wakeup
            order = (w.meta.get("orders") or [[str(u) for u in w.primaries]])[0]
            metric = m.get("metric") or "the task metric"
            out.append(Section(
                "Wake-up of CoAx's top heads", w.plot(),
                f"The primaries are removed one at a time ({ablation} ablation; x = how many, in the order "
                f"{', '.join(order)}); the lines follow CoAx's top {_plural(len(w.selected), 'head')} "
                f"({', '.join(map(str, w.selected))}) and {w.meta.get('n_random', 8)} random sets of as many other "
                "heads (mean ± sd band). Left: their summed output norm |z W_O| at the output positions (residual "
                f"stream units). Middle: how much {metric} drops when the set is ablated too. Right: their summed "
                "direct logit attribution to the answer (logits). A backup set rises as the primaries go, above the "
                f"random band; {self._prompts()}."
                + (f" Mean over the {self._seed_text()}: the selected set's band is ± std over the seeds, the "
                   f"random band the mean ± sd over the {w.meta.get('n_random', 8)} sets on every seed (the same sets "
                   "each time)." if self.multi else "")))
        if self.freezing is not None:
            fr = self.freezing
            out.append(Section(
                "Causal freezing", fr.plot(),
                f"With S removed ({ablation} ablation), the fraction of the self-repair that goes away when CoAx's "
                f"top {_plural(len(fr.selected), 'head')} ({', '.join(map(str, fr.selected))}) are frozen at their "
                "clean outputs: 1 = all of it, 0 = none. Self-repair = the metric with S ablated minus the metric "
                "with every other head frozen too. The grey bar is the mean of "
                f"{_plural(len(fr.random_removed), 'random set')} of as many heads (grey dots: each set); "
                f"{self._prompts()}."
                + (f" Mean over the {self._seed_text()}: error bars are ± std over the seeds (of the selected set's "
                   "fraction and of the random sets' mean), a grey dot each random set's mean over the seeds (the "
                   "same sets on every seed)." if self.multi else "")))
        if self.robustness is not None:
            r = self.robustness
            level = f"{r.meta.get('level', 0.95):.0%}"
            if r.truth:
                a = (f"(top left) recovery ROC-AUC per selector with its {level} bootstrap interval over "
                     f"{r.meta.get('n_boot')} resamples of the {r.meta.get('n_prompts')} prompts; (top right) mean ± sd "
                     f"ROC-AUC from {r.meta.get('draws')} random subsets of each size")
                c = "(bottom left) ROC-AUC under each feature mode of the Fisher geometry"
                d = ("(bottom right) ROC-AUC on held-out rewordings of the prompts, the grey band the calibration "
                     "interval" if r.held_out else "(bottom right) no held-out prompt sets for this task")
            else:
                a = (f"(top left) empty: without ground truth there is no recovery AUC; (top right) Spearman rho of "
                     f"the ranking from {r.meta.get('draws')} random subsets of each size to the full ranking")
                c = "(bottom left) rank agreement of each feature mode with the default (fisher_centered)"
                d = ("(bottom right) rank agreement on held-out rewordings of the prompts" if r.held_out else
                     "(bottom right) no held-out prompt sets for this task")
            out.append(Section(
                "How far the ranking can be trusted", r.plot(),
                "Whether the ranking survives resampling, fewer prompts, another feature geometry"
                + (" and reworded prompts" if r.held_out else "")
                + f": {a}; {c}; {d}. {ablation.capitalize()} ablation throughout."
                + (f" On prompt seed {self.seeds[0]} only, the first of the {self._seed_text()}: the bootstrap "
                   "resamples the prompts of one prompt set, while every ± elsewhere in this report is the spread "
                   "over prompt sets; pooling the two would mix them (and cost about nine more scans per seed)."
                   if self.multi else "")))
        return out

    def figures(self) -> list:
        """The report's figures in order (those of :meth:`sections`)."""
        return [s.figure for s in self.sections()]

    def to_dict(self) -> dict:
        """report.json's content; a multi-seed report adds ``prompt_seeds``
        (:meth:`seeds_dict`), and its other numbers are the means over the seeds."""
        d = {"type": "CoAxReport", "meta": self.meta, "headline": self.headline(), "finding": self.finding(),
             "scores": self.scores.to_dict(),
             "recovery": None if self.recovery is None else
             {"rows": self.recovery.rows, "truth": self.meta["truth"]},
             "freezing": None if self.freezing is None else self.freezing.to_dict(),
             "wakeup_margins": None if self.wakeup is None else self.wakeup.margins,
             "robustness": None if self.robustness is None else self.robustness.to_dict()}
        if self.multi:
            d["prompt_seeds"] = self.seeds_dict()
        return d

    def seeds_dict(self) -> dict:
        """The seeds of a multi-seed report, the std over them of every number the report
        shows as a mean, and each seed's own values (its scan and freezing as versioned
        results)."""
        rec = self.recovery
        per_repeat = rec.meta.get("per_repeat", {}) if rec is not None else {}
        metrics = ("roc_auc", "ap", "p_at_k")
        std = {"scores": self.scores.meta["over_prompt_seeds"]["std"],
               "recovery": None if rec is None else {r["selector"]: {k: r[k + "_std"] for k in metrics}
                                                     for r in rec.rows},
               "freezing_removed": self._freezing_std() if self.freezing is not None else None,
               "wakeup_margins": None if self.wakeup is None else self.wakeup.meta["over_prompt_seeds"]["margins_std"]}
        per_seed = [{"prompt_seed": run.prompt_seed, "scores": run.scores.to_dict(),
                     "recovery": None if rec is None else
                     {sel: {k: vals[k][i] for k in metrics} for sel, vals in per_repeat.items()},
                     "freezing": None if run.freezing is None else run.freezing.to_dict(),
                     "wakeup_margins": None if run.wakeup is None else run.wakeup.margins}
                    for i, run in enumerate(self.per_seed)]
        return {"seeds": list(self.seeds),
                "about": "every other number in this file is the mean over these prompt seeds' prompt sets (one "
                         "engine each); std: the standard deviation over them (ddof 0); per_seed: each seed's own "
                         "values. The robustness panel is of the first seed only.",
                "std": std, "per_seed": per_seed}

    def write_json(self, path) -> None:
        """Write ``report.json``: the only code that writes it (the report notebook calls it)."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1, default=float))


def run_report(model: str = "organism:ioi_dormant", task: str = "default", primaries=None, n_prompts: int = 64,
               prompt_seed: Optional[int] = None, device: Optional[str] = None, out_dir: str = "report", top: int = 10,
               ablation: str = "zero", effect: str = "fisher", robustness_panel: bool = True,
               prompt_seeds=None) -> Report:
    """The report's computation: CoAx scan; with ground truth, the recovery table; wake-up
    and freezing of CoAx's top heads against random sets; with ``robustness_panel``, the
    panel (bootstrap intervals, data efficiency, feature modes and, for IOI, held-out
    templates: about nine more scans). The parameters are the report
    notebook's, in its order; ``primaries`` is None (an organism's card) or head names,
    e.g. one string ``"L9H9 L9H6"``; ``out_dir`` is the folder the notebook writes
    ``report.json`` to (``coax-nb report`` runs it in its staging folder, as ".").

    ``prompt_seed`` (default 0) draws the prompts; ``prompt_seeds`` (instead, e.g. ``[1, 15,
    22, 8]``) runs every computation once per seed, each on its own prompt set and engine,
    and reports the mean ± std over the seeds: S is settled on the first seed (an "auto" S
    is discovered there), CoAx's top heads for wake-up and freezing are those of the mean
    ranking, and the robustness panel is the first seed's."""
    from transformers.utils import logging as hf_logging

    from .recover import recovery
    from .results import Freezing, UnitScores, WakeUp
    from .scores import coax_scan
    from .validate import freezing, wakeup

    seeds = _seeds(prompt_seed, prompt_seeds)
    hf_logging.disable_progress_bar()  # a progress widget would make the static HTML load a widget manager
    timings = {}
    t0 = time.perf_counter()
    run = resolve(model, task, n_prompts, primaries, seeds[0], device)
    primaries, truth = run.primaries, run.truth
    # one engine per further prompt set, on the model loaded once, with the S the first seed settled
    runs = [run] + [resolve(run.model, task, n_prompts, [str(u) for u in primaries], s, device) for s in seeds[1:]]
    engines = [r.engine for r in runs]
    timings["load"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    scans = [coax_scan(e, primaries=primaries, ablation=ablation, effect=effect, progress=False) for e in engines]
    scores = _over_seeds(UnitScores, scans, seeds)
    timings["scan"] = time.perf_counter() - t0
    rec = None
    if truth:
        t0 = time.perf_counter()
        rec = recovery(engines, None, primaries, truth,
                       selectors=("comp", "ratio", "single", "atp", "atp_gd", "cond_atp"), ablation=ablation,
                       progress=False)
        if len(seeds) > 1:
            rec.meta["prompt_seeds"] = seeds
        timings["recovery"] = time.perf_counter() - t0
    k = max(1, len(truth) or min(3, run.engine.n_layers * run.engine.n_heads - len(primaries) - 1))
    selected = [u for u, _ in scores.top(k)]  # with several seeds: the top of the mean ranking, the same set on each
    t0 = time.perf_counter()
    freezings, no_repair = [], []
    for e, s in zip(engines, seeds):
        try:
            freezings.append(freezing(e, None, primaries, selected, n_random=8, ablation=ablation))
        except ValueError:  # no repair at all: nothing to freeze away
            freezings.append(None)
            no_repair.append(s)
    fr = None if no_repair else _over_seeds(Freezing, freezings, seeds)
    wakeups = [wakeup(e, None, primaries, selected, n_random=8, ablation=ablation) for e in engines]
    wu = _over_seeds(WakeUp, wakeups, seeds)
    timings["validation"] = time.perf_counter() - t0
    rob = None
    if robustness_panel:
        t0 = time.perf_counter()
        rob = _robustness_panel(run, primaries, truth, ablation)
        timings["robustness"] = time.perf_counter() - t0
    meta = {"model": str(model), "task": run.task.name, "n_prompts": len(run.task),
            "prompt_seed": int(seeds[0]) if len(seeds) == 1 else None, "prompt_seeds": [int(s) for s in seeds],
            "primaries": [str(u) for u in primaries], "primaries_source": run.primaries_source,
            "truth": [str(u) for u in truth], "selected": [str(u) for u in selected],
            "top": int(top), "ablation": ablation, "effect": effect,
            "timings_seconds": {k: round(v, 3) for k, v in timings.items()},
            "provenance": provenance(model, run.model), "out_dir": str(out_dir)}
    if no_repair:
        meta["no_repair_seeds"] = no_repair
    meta.update(_task_meta(run))
    per_seed = [SeedRun(int(s), sc, f, w) for s, sc, f, w in zip(seeds, scans, freezings, wakeups)]
    return Report(scores, rec, fr, wu, rob, meta, per_seed)


def _task_meta(run) -> dict:
    """What the title block says about the task and S beyond the parameters: the metric,
    where effects are read, one prompt, and the rule an organism's card chose S by."""
    from . import organisms

    t = run.task
    if t.metric_fn is not None:
        metric, units = "the task's own metric", None
    elif t.distractors is not None:
        metric, units = "logit difference (correct − distractor)", "logits"
    elif t.targets is not None:
        metric, units = "log-probability of the correct token", "nats"
    else:
        metric, units = None, None
    rule = None
    name = organisms.organism_name(run.model_spec) if run.primaries_source == "organism card" else None
    if name is not None:
        rule = organisms.card(name).get("backup_criterion") or None
    example = t.texts[0] if t.texts and t.texts[0] else None
    kind = None
    if "half_length" in t.info:  # induction: no text to quote
        kind = f"random token sequences of {t.info['half_length']} tokens, each repeated once"
    return {"metric": metric, "metric_units": units, "position_mode": t.position_mode, "example_prompt": example,
            "prompt_kind": kind, "primaries_rule": rule}


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
    """Standalone HTML: images are inline data URIs; no script or font is fetched. A
    document, not a notebook: code is hidden (the .ipynb keeps it), cells tagged
    ``parameters``, ``injected-parameters`` (papermill's, with the run's paths) or
    ``report-hidden`` are left out, and the page is titled by the output that carries
    ``TITLE_KEY`` in its metadata (the report's title)."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(notebook), as_version=4)
    titles = [out.get("metadata", {}).get(TITLE_KEY) for cell in nb.cells for out in cell.get("outputs", [])]
    nb.metadata["title"] = next((t for t in titles if t), "CoAx report")
    nb.cells = [c for c in nb.cells if not HIDDEN_TAGS & set(c.metadata.get("tags", []))
                and not (c.cell_type == "code" and not c.get("outputs"))]  # no input shown: nothing left
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
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
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


def execute_report(model: str, task: str, out: Path, primaries=None, n_prompts: int = 64,
                   prompt_seed: Optional[int] = None, device: Optional[str] = None, top: int = 10,
                   ablation: str = "zero", effect: str = "fisher", robustness: bool = True,
                   lock_timeout: float = 3600.0, say: Callable[[str], None] = log.info, prompt_seeds=None) -> dict:
    """Run the report notebook and publish ``out/report.ipynb``, ``report.html`` and
    ``report.json`` together; returns the JSON artifact of this run. ``robustness=False``
    leaves out the robustness panel. ``prompt_seed`` (default 0) draws the prompts;
    ``prompt_seeds`` instead (e.g. ``[1, 15, 22, 8]``) gives every number as the mean ± std
    over one prompt set per seed (:func:`run_report`).

    The inputs and ``out`` are checked first (ValueError, before any kernel starts). A run
    into a folder another run is using waits up to ``lock_timeout`` seconds. ``say`` gets
    one line when the run waits and one when its notebook starts (the CLI prints them;
    default: logged). On failure (ReportError) or Ctrl-C (ReportInterrupted) the
    published report is left as it was.

    Head names go to papermill as one string (``"L9H9 L9H10"``), which it passes through
    unchanged; never as numbers (``9.10`` would arrive as ``9.1``)."""
    out = check_out(out)
    seeds = _seeds(prompt_seed, prompt_seeds)
    check_inputs(model, task, n_prompts, primaries, seeds[0])
    ablation_action(ablation)
    if effect not in EFFECTS:
        raise ValueError(f"effect must be one of {', '.join(EFFECTS)}, got {effect!r}")
    resolve_device(device)
    if not isinstance(top, numbers.Integral) or isinstance(top, bool) or top < 1:
        raise ValueError(f"top (rows of the ranking table) must be an integer >= 1, got {top!r}")
    params = {"model": str(model), "task": task, "primaries": heads_text(primaries), "n_prompts": int(n_prompts),
              "prompt_seed": None if prompt_seeds is not None else int(seeds[0]), "device": device, "out_dir": ".",
              "top": int(top), "ablation": ablation, "effect": effect, "robustness_panel": bool(robustness),
              "prompt_seeds": None if prompt_seeds is None else seeds}
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
