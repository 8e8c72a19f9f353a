"""report.html reads as a document: the report's title in the tab, a title block (model,
task, prompts, S and how it was chosen, ablation, versions), the finding in one sentence,
each figure once with a caption, no code, no papermill parameters, no "artifact written";
the .ipynb keeps the code. The figures name their ticks (L0, L1, ...; heads 0..H-1; whole
numbers of primaries) and label their colour bars."""
import json
import re
from html.parser import HTMLParser
from types import SimpleNamespace

import matplotlib
import nbformat
import numpy as np
import pytest

matplotlib.use("Agg")

from coax_nb import plots  # noqa: E402
from coax_nb import report as R  # noqa: E402
from coax_nb.results import Curves  # noqa: E402


class Page(HTMLParser):
    """What a reader sees of an exported page: title, headings, list items, paragraphs,
    images, figure captions, and all visible text (style and script left out)."""

    BLOCKS = ("h1", "h2", "h3", "li", "p", "figcaption", "pre", "td")

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.title, self.images, self.classes = "", [], []
        self.blocks = {b: [] for b in self.BLOCKS}
        self.visible = []
        self._open = []  # (tag, text parts) of the blocks being read
        self._skip = 0
        self._in_title = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.classes += (a.get("class") or "").split()
        if tag in ("style", "script"):
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag == "img":
            self.images.append(a.get("src", ""))
        if tag in self.BLOCKS:
            self._open.append((tag, []))

    def handle_endtag(self, tag):
        if tag in ("style", "script"):
            self._skip -= 1
        elif tag == "title":
            self._in_title = False
        if tag in self.BLOCKS and self._open and self._open[-1][0] == tag:
            t, parts = self._open.pop()
            # "¶": the anchor link nbconvert adds to headings
            self.blocks[t].append(re.sub(r"\s+", " ", "".join(parts)).replace("¶", "").strip())

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        if self._skip:
            return
        self.visible.append(data)
        for _, parts in self._open:
            parts.append(data)

    def text(self) -> str:
        return re.sub(r"\s+", " ", "".join(self.visible))


# ------------------------------------------------------------------ fast: the figures

def tick_texts(axis) -> list:
    return [t.get_text() for t in axis.get_ticklabels()]


@pytest.mark.parametrize("n_layers, n_heads", [(1, 2), (3, 4), (12, 12)])
def test_head_map_names_layers_and_heads_and_labels_its_colour_bar(n_layers, n_heads):
    grid = np.arange(n_layers * n_heads, dtype=float).reshape(n_layers, n_heads) - 3
    fig = plots.head_map(grid, "comp", primaries=["L0H0"], truth=[(n_layers - 1, n_heads - 1)], units="Fisher energy")
    ax, bar = fig.axes
    # one tick per layer and per head, never -0.5, 0.0, 0.5
    assert tick_texts(ax.yaxis) == [f"L{i}" for i in range(n_layers)]
    assert list(ax.get_yticks()) == list(range(n_layers))
    assert tick_texts(ax.xaxis) == [str(h) for h in range(n_heads)]
    assert list(ax.get_xticks()) == list(range(n_heads))
    assert (ax.get_ylabel(), ax.get_xlabel()) == ("layer", "head")
    assert bar.get_ylabel() == "comp (Fisher energy)"
    matplotlib.pyplot.close(fig)
    # without units the colour bar still names its score
    fig = plots.head_map(grid, "ratio")
    assert fig.axes[1].get_ylabel() == "ratio"
    matplotlib.pyplot.close(fig)


def test_curves_over_counts_get_whole_number_ticks():
    wake = Curves("Wake-up: norm", "primaries ablated", "norm").add("selected", [0, 1, 2, 3], [1.0, 1.5, 2.2, 3.0])
    wake.add_band("random sets of 3 (mean ± sd)", [0, 1, 2, 3], [[1, 1, 1, 1], [1.2, 1.1, 1.0, 1.3]])
    fig = plots.curves(wake)
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    shown = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert shown == [0, 1, 2, 3]
    assert tick_texts(ax.xaxis)[:len(ax.get_xticks())] and all(float(t).is_integer() for t in shown)
    matplotlib.pyplot.close(fig)
    # a fractional x (fraction of heads pruned) keeps fractional ticks
    frac = Curves("pruning", "fraction of heads pruned", "loss").add("comp", [0, 0.1, 0.2, 0.3], [1, 2, 3, 4])
    fig = plots.curves(frac)
    ax = fig.axes[0]
    assert any(not float(t).is_integer() for t in ax.get_xticks())
    matplotlib.pyplot.close(fig)


def test_synergy_grid_labels_its_colour_bar():
    fig = plots.synergy_grid(np.array([[0, 1.0], [1.0, 0]]), ["L0H0", "L0H1"], "synergy S_uv")
    assert fig.axes[1].get_ylabel() == "synergy S_uv"
    matplotlib.pyplot.close(fig)


# ------------------------------------------------------------------ fast: the finding

def fake_report(removed, random_removed, rows=None, truth=("L2H1", "L2H0")):
    rows = rows or [{"selector": "comp", "roc_auc": 0.9}, {"selector": "single", "roc_auc": 0.25}]
    recovery = SimpleNamespace(rows=rows, auc=lambda s: next(r["roc_auc"] for r in rows if r["selector"] == s))
    freezing = None if removed is None else SimpleNamespace(removed=removed, random_removed=random_removed)
    return R.Report(scores=None, recovery=recovery if truth else None, freezing=freezing, wakeup=None,
                    meta={"selected": ["L2H1", "L2H0"], "truth": list(truth)})


def test_the_finding_is_one_sentence_from_the_numbers():
    f = fake_report(0.8, [0.1, 0.3, 0.2]).finding()
    assert f == ("CoAx ranks L2H1 and L2H0 first among the heads outside S; its ranking recovers the 2 known backups "
                 "with ROC-AUC 0.90, against 0.25 for single ablation, and freezing them removes 80% of the "
                 "self-repair, more than any of 3 random sets of 2 heads (at most 30%).")
    assert f.count(".") == 3 and f.endswith(".")  # the decimals and the one full stop
    # not above every random set: said plainly
    f = fake_report(0.27, [0.1, 0.4, 0.3]).finding()
    assert "removes 27% of the self-repair, no more than 3 random sets of 2 heads do (mean 27%, up to 40%)" in f
    # a better selector is named; no ground truth, no recovery clause; no repair, said so
    rows = [{"selector": "comp", "roc_auc": 0.47}, {"selector": "ratio", "roc_auc": 1.0},
            {"selector": "single", "roc_auc": 0.0}]
    assert "ROC-AUC 0.47, against 0.00 for single ablation (best here: CoAx ratio, 1.00)" in \
        fake_report(0.5, [0.1], rows).finding()
    f = fake_report(None, [], truth=()).finding()
    assert f == ("CoAx ranks L2H1 and L2H0 first among the heads outside S, and the model shows no self-repair of S "
                 "for freezing them to remove.")


# ------------------------------------------------------------------ fast: the export

def test_export_hides_code_and_parameters_and_takes_the_title(tmp_path):
    nb = nbformat.v4.new_notebook()
    note = nbformat.v4.new_markdown_cell("Notes for whoever opens the notebook")
    note.metadata["tags"] = ["report-hidden"]
    params = nbformat.v4.new_code_cell("model = 'x'")
    params.metadata["tags"] = ["parameters"]
    injected = nbformat.v4.new_code_cell(f"out_dir = {str(tmp_path / 'secret')!r}")
    injected.metadata["tags"] = ["injected-parameters"]
    body = nbformat.v4.new_code_cell("display(Markdown('# Hello'), metadata=...)")
    body.outputs = [nbformat.v4.new_output("display_data", data={"text/markdown": "# Hello\n\nbody text"},
                                           metadata={R.TITLE_KEY: "CoAx report: m on t"})]
    silent = nbformat.v4.new_code_cell("report.write_json('report.json')")
    nb.cells = [note, params, injected, body, silent]
    src = tmp_path / "n.ipynb"
    nbformat.write(nb, str(src))
    R.export_html(src, tmp_path / "n.html")
    html = (tmp_path / "n.html").read_text()
    page = Page(html)
    assert page.title == "CoAx report: m on t"
    assert page.blocks["h1"] == ["Hello"] and "body text" in page.text()
    for hidden in ("secret", "out_dir", "display(", "write_json", "model = ", "Notes for whoever"):
        assert hidden not in html, hidden
    assert not {"jp-InputArea", "jp-InputPrompt", "jp-OutputPrompt"} & set(page.classes)
    # the notebook itself is untouched
    assert [c.source for c in nbformat.read(str(src), as_version=4).cells] == [c.source for c in nb.cells]
    # no output names a title: a generic one, never "Notebook"
    body.outputs[0].metadata = {}
    nbformat.write(nb, str(src))
    R.export_html(src, tmp_path / "n.html")
    assert Page((tmp_path / "n.html").read_text()).title == "CoAx report"


# ------------------------------------------------------------------ slow: a real report

@pytest.fixture(scope="module")
def small_report(tmp_path_factory):
    import logging

    logging.getLogger("papermill").setLevel(logging.CRITICAL)
    out = tmp_path_factory.mktemp("doc") / "r"
    art = R.execute_report("organism:ioi_dormant", "default", out, n_prompts=12, robustness=False)
    return out, art


@pytest.mark.slow
def test_report_html_is_a_document(small_report):
    import torch

    import coax_nb

    out, art = small_report
    html = (out / "report.html").read_text()
    page = Page(html)
    meta = art["meta"]
    title = "CoAx report: organism:ioi_dormant on ioi"
    assert page.title == title and page.blocks["h1"] == [title]
    text = page.text()
    # no code, no papermill parameters, no paths of the run, no "artifact written"
    assert not {"jp-InputArea", "jp-InputPrompt", "jp-OutputPrompt"} & set(page.classes)
    for hidden in ("injected-parameters", "# Parameters", "run_report(", "import ", "write_json", "out_dir",
                   "artifact written", str(out)):
        assert hidden not in html, hidden
    # the title block: one item per field, in order
    items = {li.split(" ", 1)[0]: li for li in page.blocks["li"]}
    block = page.blocks["li"][:8]
    assert [li.split(" ")[0] for li in block] == ["Model", "Task", "Calibration", "Primaries", "Ground", "Ablation",
                                                   "Effect", "Versions"]
    assert "organism:ioi_dormant" in items["Model"] and "3 layers × 4 heads" in items["Model"]
    assert meta["provenance"]["weights_sha256"][:12] in items["Model"]
    assert items["Task"].startswith("Task ioi: behaviour metric logit difference")
    assert items["Calibration"].startswith("Calibration prompts 12 (prompt seed 0), e.g. “")
    assert items["Primaries"].startswith(f"Primaries S {', '.join(meta['primaries'])}, from the organism's card")
    assert meta["primaries_rule"] and meta["primaries_rule"][:40] in items["Primaries"]
    assert items["Ground"].startswith(f"Ground truth {', '.join(meta['truth'])}")
    assert items["Ablation"].startswith("Ablation zero ablation")
    assert items["Effect"].startswith("Effect fisher: Fisher energy")
    assert f"coax-nb {coax_nb.__version__}" in items["Versions"] and f"torch {torch.__version__}" in items["Versions"]
    # the identity other tests read from the page
    shown = re.search(r"prompts</strong> (\d+) \(prompt seed (\d+)\)", html)
    assert (int(shown[1]), int(shown[2])) == (12, 0)
    # the finding: one sentence, from this run's numbers
    finding = next(p for p in page.blocks["p"] if p.startswith("Finding."))
    rows = {r["selector"]: r["roc_auc"] for r in art["recovery"]["rows"]}
    assert finding == "Finding. " + art["finding"]
    assert finding.startswith(f"Finding. CoAx ranks {R._and(meta['selected'])} first among the heads outside S")
    assert f"ROC-AUC {rows['comp']:.2f}, against {rows['single']:.2f} for single ablation" in finding
    assert f"removes {art['freezing']['removed']:.0%} of the self-repair" in finding
    assert "What S is." in text and "comp(u | S) = conditional(u | S) − single(u)" in text
    # each figure once, each with one numbered caption saying what it shows
    figures = [s for s in page.images if s.startswith("data:image/png;base64,")]
    expected = 2 + sum(art[k] is not None for k in ("recovery", "wakeup_margins", "freezing", "robustness"))
    assert len(figures) == len(page.images) == expected == 5
    assert len(set(figures)) == len(figures)  # none shown twice
    captions = page.blocks["figcaption"]
    assert [c.split(" ", 2)[:2] for c in captions] == [["Figure", f"{i}."] for i in range(1, expected + 1)]
    assert all(len(c) > 120 and "zero ablation" in c for c in captions)
    assert "in Fisher energy" in captions[0] and "rows are layers L0–L2, columns heads 0–3" in captions[0]
    assert "ROC-AUC" in captions[2] and "primaries are removed one at a time" in captions[3]
    assert "fraction of the self-repair" in captions[4]
    assert page.blocks["h2"] == [
        "Ranking", "CoAx score of every head", "What single ablation misses", "Recovery of the known backups",
        "Wake-up of CoAx's top heads", "Causal freezing", "Interactive view"]
    assert "Table 1." in text and len(page.blocks["td"]) > 0
    # the interactive view: the offline page of the scan (coax-nb page) in an iframe, after the figures
    frame = re.search(r'<iframe[^>]*srcdoc="([^"]*)"', html)
    inner = __import__("html").unescape(frame[1])
    assert "default-src 'none'" in inner and all(f'data-kind="{k}"' in inner for k in ("headmap", "ranking"))
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=|https?://(?!www\.w3\.org/2000/svg)", inner)


@pytest.mark.slow
def test_the_notebook_keeps_the_code_and_the_json_its_keys(small_report):
    out, art = small_report
    nb = nbformat.read(str(out / "report.ipynb"), as_version=4)
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    assert ["injected-parameters"] in tags and ["parameters"] in tags
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "run_report(" in code and "write_json(" in code
    assert not any(o.get("name") == "stdout" and "artifact written" in o.get("text", "")
                   for c in nb.cells for o in c.get("outputs", []))
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == art
    assert set(on_disk) == {"type", "meta", "headline", "finding", "scores", "recovery", "freezing",
                            "wakeup_margins", "robustness"}
    assert on_disk["robustness"] is None and on_disk["meta"]["n_prompts"] == 12
