"""The tutorials' exercise checks hold on every IOI organism, not only the default one.

Each notebook whose exercise answer depends on the organism runs under papermill with a
non-default organism for which the answer differs from ``ioi_dormant``'s, so the check
has to compute the answer from the results and the card rather than expect fixed heads.
"""
from pathlib import Path

import nbformat
import pytest

from coax_nb.report import execute_notebook

ROOT = Path(__file__).resolve().parent.parent
NB = ROOT / "notebooks"


def run(tmp_path, name: str, organism: str, n_prompts: int, output_dir: Path, tag: str = ""):
    """The executed notebook and everything its cells printed."""
    out = tmp_path / f"{name}_{organism}{tag}.ipynb"
    execute_notebook(NB / f"{name}.ipynb", out, {"model": f"organism:{organism}", "n_prompts": n_prompts,
                                                  "output_dir": str(output_dir)}, cwd=tmp_path)
    nb = nbformat.read(str(out), as_version=4)
    return nb, "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def charts(nb) -> list[dict]:
    """The data of every Curves widget, from the widget state papermill saves."""
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    return [m["state"]["data"] for m in state.values()
            if isinstance(m.get("state", {}).get("data"), dict) and "series" in m["state"]["data"]]


# (notebook, organism, n_prompts, a line the exercise prints there and not on ioi_dormant)
CASES = [
    # the top CoAx head of ioi_cofiring is a layer-0 head, not a backup
    ("00_quickstart", "ioi_cofiring", 16, "is not a backup"),
    # two of the eight redundant primaries of ioi_dormant_wide top the synergy grid (at 32 prompts)
    ("03_synergy", "ioi_dormant_wide", 32, "are primary and primary"),
    # freezing removes well under 90% of ioi_cofiring's repair, still more than any random set
    ("05_validation", "ioi_cofiring", 16, "yes: "),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,organism,n_prompts,expected", CASES, ids=[c[0] for c in CASES])
def test_exercise_checks_hold_on_another_organism(tmp_path, name, organism, n_prompts, expected):
    _, shown = run(tmp_path, name, organism, n_prompts, tmp_path / "outputs")
    assert "primaries S (organism card)" in shown
    assert expected in shown, shown[-2000:]


@pytest.mark.slow
def test_pruning_chart_is_drawn_again_from_the_checkpoint(tmp_path):
    """06 on handwired, twice in one output folder: the second run resumes the checkpoint
    (no step is recomputed, so the live callback never fires) and the notebook's own
    check asserts the chart still holds every recorded point from x = 0."""
    out = tmp_path / "outputs"
    runs = [run(tmp_path, "06_applications", "handwired", 16, out)]
    saved = sorted(p.name for p in out.glob("prune_*.json"))
    assert saved == ["prune_organism_handwired.json"], saved
    mtime = (out / saved[0]).stat().st_mtime_ns
    runs.append(run(tmp_path, "06_applications", "handwired", 16, out, tag="_again"))
    assert (out / saved[0]).stat().st_mtime_ns == mtime  # resumed: nothing new was written
    drawn = []
    for nb, shown in runs:
        assert "yes" in shown
        (live,) = [c for c in charts(nb) if c["title"].startswith("Repair-aware pruning")]
        assert live["xlabel"] == "heads pruned (%)" and live["ylabel"] == "held-out loss (nats)"
        # 3 x 4 heads, one per step: 13 points per order from x = 0 to 100 %
        assert [s["name"] for s in live["series"]] == ["single", "random", "repair_aware"]
        for s in live["series"]:
            assert len(s["x"]) == 13 and s["x"][0] == 0 and s["x"][-1] == pytest.approx(100), s
            assert s["y"][0] == live["series"][0]["y"][0]  # every order starts at the intact model's loss
        drawn.append(live["series"])
    assert drawn[0] == drawn[1]  # the resumed run draws the same chart
