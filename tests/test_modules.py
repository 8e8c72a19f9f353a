"""Synergy modules: heads that interact strongly, extracted as head groups, drawn as the
grid's blocks, and collapsed by re-running synergy with each module as one unit."""
import numpy as np
import pytest

from coax_nb import Engine, load_model, organisms, synergy
from coax_nb.organisms import task_for
from coax_nb.results import PairScores
from coax_nb.units import all_units
from coax_nb.widgets import SynergyGrid


def block_matrix(sizes, seed=0):
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    m = rng.random((n, n)) * 0.1
    start = 0
    for s in sizes:
        m[start:start + s, start:start + s] += 1
        start += s
    m = (m + m.T) / 2
    np.fill_diagonal(m, np.nan)
    return m


def test_planted_blocks_are_found():
    units = all_units(3, 3)
    mods = PairScores(units, {"n": block_matrix([4, 3, 2])}).modules()
    assert [[str(u) for u in v] for v in mods.values()] == [[str(u) for u in units[:4]], [str(u) for u in units[4:7]],
                                                            [str(u) for u in units[7:]]]
    assert list(PairScores(units, {"n": block_matrix([4, 3, 2])}).modules(n=2)) == ["M1", "M2"]
    with pytest.raises(ValueError, match="n must be a whole number of modules from 1 to 9"):
        PairScores(units, {"n": block_matrix([4, 5])}).modules(n=0)


@pytest.fixture(scope="module")
def handwired_synergy():
    e = Engine(load_model("organism:handwired"), task_for("handwired", 16), progress=False)
    return e, synergy(e, all_units(e.n_layers, e.n_heads), progress=False)


def test_each_backup_shares_a_module_with_a_primary(handwired_synergy):
    """The hand-wired organism: each backup copies one name mover, and the modules of the
    normalized synergy pair them."""
    e, pairs = handwired_synergy
    card = organisms.card("handwired")
    prim = {f"L{a}H{b}" for a, b in card["primaries"]}
    for b in (f"L{a}H{h}" for a, h in card["backups"]):
        module = next(v for v in pairs.modules("normalized").values() if b in map(str, v))
        assert prim & set(map(str, module)), (b, module)


def test_modules_collapse_the_grid_and_label_its_blocks(handwired_synergy):
    e, pairs = handwired_synergy
    mods = pairs.modules("normalized")
    collapsed = synergy(e, mods, progress=False)
    assert [u.name for u in collapsed.units] == list(mods)
    assert collapsed["normalized"].shape == (len(mods), len(mods))
    grid = SynergyGrid(pairs, "normalized", groups="modules")
    multi = {name for name, v in mods.items() if len(v) > 1}
    assert set(grid.groups) == multi | ({"other"} if len(multi) < len(mods) else set())
    assert "group" in grid.orders and grid.order == "group"
