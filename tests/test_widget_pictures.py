"""The static picture kept beside each view follows the view's state in a real kernel.

A notebook's saved PNG is what nbconvert, GitHub and a reader without a kernel see; drawn
only at display time it would show the state before the reader's clicks. Run by nbclient
(the kernel messages JupyterLab gets: display_data with a display id, then
update_display_data when a cell ends), the views' outputs must end as the final state's
pictures. The click path (a front end's message) is checked in test_widgets_jupyterlab.py.
"""
import hashlib
import json

import nbformat
import pytest
from nbclient import NotebookClient

SETUP = """import hashlib, json, warnings; warnings.filterwarnings("ignore")
from coax_nb import load_model, Engine, synergy
from coax_nb.organisms import task_for
from coax_nb.widgets import HeadMap, SynergyGrid, Curves
from coax_nb.widgets.base import png_base64
engine = Engine(load_model("organism:handwired"), task_for("organism:handwired", 8), progress=False)
hm = HeadMap.live(engine, primaries=["L1H0", "L1H1"])
sg = SynergyGrid(synergy(engine, ["L1H0", "L1H1", "L2H0", "L2H1"], progress=False), name="normalized")
cv = Curves()
cv.append("drop", 0, 0.0)
def digest(w):
    return hashlib.sha1(png_base64(w.figure()).encode()).hexdigest()
print("FIRST " + json.dumps({"hm": digest(hm), "sg": digest(sg), "cv": digest(cv)}))"""

CHANGES = """hm.primaries = ["L1H0", "L1H1", "L2H1"]  # what a click on L2H1 does: a rescan
sg.order = "cluster"                      # what the order menu does
for i in range(1, 6):                     # a live run's points
    cv.append("drop", i, i * 0.5)"""

FINAL = """print("FINAL " + json.dumps({"hm": digest(hm), "sg": digest(sg), "cv": digest(cv)}))"""


def _cells():
    return [nbformat.v4.new_code_cell(src) for src in
            (SETUP, "hm", "sg", "cv", CHANGES, FINAL)]


def _printed(cell, key):
    text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    return json.loads(text.split(key + " ", 1)[1].splitlines()[0])


def _png_digest(cell):
    pngs = [o for o in cell.outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 1, f"expected one picture in the cell, got {len(pngs)}"
    return hashlib.sha1(pngs[0].data["image/png"].encode()).hexdigest()


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    nb = nbformat.v4.new_notebook(cells=_cells())
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path_factory.mktemp("pic"))}}).execute()
    return nb


def test_saved_pictures_are_the_final_state(executed):
    first, final = _printed(executed.cells[0], "FIRST"), _printed(executed.cells[-1], "FINAL")
    for i, name in ((1, "hm"), (2, "sg"), (3, "cv")):
        cell = executed.cells[i]
        assert first[name] != final[name], f"{name}: the change did not change the picture"
        assert _png_digest(cell) == final[name], f"{name}: the saved picture is not the final state"
        view = [o for o in cell.outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
        assert len(view) == 1  # redrawn in place: still one output, still the live view


def test_only_drawn_state_redraws(tmp_path):
    # the selection is not in the picture: clicking around must not re-render the view
    # (each redraw re-creates the view in JupyterLab); a drawn change redraws once
    count = "print('SENT', len(sent))"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in (
        SETUP, "sg",
        "import IPython.display as d\nsent, orig = [], d.DisplayHandle.update\n"
        "d.DisplayHandle.update = lambda self, *a, **k: (sent.append(1), orig(self, *a, **k))\n"
        "sg.selected = ['L2H0']\nsg.selected_pair = ['L2H0', 'L1H0']", count,
        "sg.order = 'cluster'\nsg.order = 'given'\nsg.order = 'cluster'", count)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    said = ["".join(o.get("text", "") for o in nb.cells[i].outputs) for i in (3, 5)]
    assert said == ["SENT 0\n", "SENT 1\n"]  # three order changes in one cell: one redraw
