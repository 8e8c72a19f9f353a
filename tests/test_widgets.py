"""Widget classes on the kernel side: traitlets, recompute on seed change, static fallbacks."""
import base64

import numpy as np
import pytest

from coax_nb import Engine, load_model, synergy, wakeup
from coax_nb.organisms import task_for
from coax_nb.widgets import BlindSpot, Curves, HeadMap, RankingTable, SynergyGrid, link


@pytest.fixture(scope="module")
def engine():
    return Engine(load_model("organism:handwired"), task_for("organism:handwired", 16), progress=False)


@pytest.fixture(scope="module")
def hm(engine):
    return HeadMap.live(engine, seed=["1.0", "1.1"], truth=["2.0", "2.1"])


def test_headmap_recomputes_when_the_page_changes_the_seed(engine, hm):
    assert hm.n_layers == 3 and hm.n_heads == 4 and hm.seed == ["1.0", "1.1"]
    assert hm.scores["comp"][4] is None  # NaN (seed) travels as null
    before = hm.result.value("comp", "2.1")
    hm.seed = ["1.0"]  # what a click on 1.1 does
    assert hm.version == 1 and not hm.busy and hm.error == ""
    assert [str(u) for u in hm.result.seed] == ["1.0"]
    # with only 1.0 removed, backup 2.1 (which watches 1.1) stays dormant
    assert hm.result.value("comp", "2.1") < 1e-3 * before
    assert hm.scores["comp"][9] == pytest.approx(hm.result.value("comp", "2.1"))
    hm.seed = ["1.0", "9.9"]  # a head outside the model: the error is shown, the old scores stay
    assert "outside the model" in hm.error and [str(u) for u in hm.result.seed] == ["1.0"]
    hm.seed = ["1.0", "1.1"]
    assert hm.error == "" and hm.version == 3


def test_every_component_has_a_static_picture(engine, hm):
    comps = [hm, BlindSpot(hm.result, truth=["2.0"]),
             SynergyGrid(synergy(engine, ["1.0", "1.1", "2.0", "2.1"], progress=False), name="normalized",
                         groups={"2.0": "backup", "2.1": "backup"}),
             Curves(wakeup(engine, None, ["1.0", "1.1"], ["2.0"], n_random=2).curves["dla"]),
             RankingTable(hm.result)]
    for c in comps:
        data, _ = c._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in data
        png = base64.b64decode(data["image/png"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000, type(c).__name__


def test_curves_append_and_ranking_order(hm):
    cv = Curves()
    for k in range(3):
        cv.append("loss", k, 10.0 / (k + 1))
    cv.append("band", 0, 1.0, lo=0.5, hi=1.5)
    assert cv.data["series"][0]["y"] == [10.0, 5.0, 10.0 / 3]
    assert cv.curves().get("band")["lo"] == [0.5]
    rt = RankingTable(hm.result, sort_by="comp")
    order = rt.rows()
    assert order[:2] in (["2.0", "2.1"], ["2.1", "2.0"])
    assert order[-2:] == ["1.0", "1.1"]  # NaN (seed) last
    rt.descending = False
    assert rt.rows()[0] not in ("2.0", "2.1")


def test_widget_bad_input(hm):
    with pytest.raises(ValueError, match="no score 'atp'"):
        HeadMap(hm.result, score="atp")
    with pytest.raises(ValueError, match="no score"):
        BlindSpot(hm.result, x="atp")
    with pytest.raises(ValueError, match="at least two"):
        link(hm)
    assert len(link(hm, BlindSpot(hm.result), RankingTable(hm.result))) == 2
    assert np.isfinite(BlindSpot(hm.result).percentiles()[0]).all()
