"""Sharded scans over several CPU processes (gloo) equal the single-process scan."""
import numpy as np
import pytest

from coax_nb import Engine, coax_scan, load_model, synergy
from coax_nb.distributed import run_local, scan_distributed, shard
from coax_nb.resources import check_scan_fits, estimate_scan, estimate_synergy
from coax_nb.organisms import task_for
from coax_nb.units import all_units


@pytest.mark.parametrize("world", [2, 3])
def test_sharded_scan_equals_single_process(world):
    task = task_for("organism:ioi_dormant", 24, seed=5)
    seed = ["1.1", "1.0", "1.2"]
    single = coax_scan(load_model("organism:ioi_dormant"), task, primaries=seed, progress=False)
    sharded = run_local("organism:ioi_dormant", task, seed, world_size=world)
    assert sharded.meta["world_size"] == world
    for k, v in single.scores.items():
        assert np.allclose(sharded[k], v, rtol=1e-6, atol=1e-9, equal_nan=True), k
    assert sharded.top(3) == single.top(3)


def test_shards_cover_every_head_once():
    units = all_units(3, 8)
    parts = [shard(units, r, 5) for r in range(5)]
    assert sorted(u for p in parts for u in p) == sorted(units)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_partial_scan_and_estimates():
    model = load_model("organism:handwired")
    e = Engine(model, task_for("organism:handwired", 16), progress=False)
    part = coax_scan(e, primaries=["1.0", "1.1"], heads=["2.0", "0.3"], progress=False)
    full = coax_scan(e, primaries=["1.0", "1.1"], progress=False)
    for u in ("2.0", "0.3"):
        assert part.value("comp", u) == pytest.approx(full.value("comp", u))
    assert np.isnan(part.value("single", "2.1"))
    est = estimate_scan(e)
    assert est["parameters"] == sum(p.numel() for p in model.parameters())
    assert est["forward_pass_equivalents"] == pytest.approx(2 * 4 * (3 + 2 + 1) / 3)
    # with S in block 1, each layer-0 head's conditional ablation shares its single's block 0
    shared = estimate_scan(e, primaries=e.units(["1.0", "1.1"]))["forward_pass_equivalents"]
    assert shared == pytest.approx(4 * ((3 + 2 + 1) + (2 + 2 + 1)) / 3)
    fresh = Engine(model, task_for("organism:handwired", 16), progress=False)
    before = fresh.stats.block_rows
    coax_scan(fresh, primaries=["1.0", "1.1"], progress=False)
    # per prompt: singles 4 x (3 + 2 + 1); conditionals of the 10 heads outside S: layer 0 blocks 1-2,
    # layer 1 from the S run, layer 2 one block; the S run 3; the MLP-share diagnostic 3 + 2 + 1
    assert fresh.stats.block_rows - before == 16 * (24 + (4 * 2 + 2 * 2 + 4 * 1) + 3 + 6)
    assert check_scan_fits(e)["cache_bytes"] > 0
    import coax_nb.resources as R
    real = R.available_bytes
    R.available_bytes = lambda device: 1000
    try:
        with pytest.raises(MemoryError, match="top_r=256"):
            coax_scan(e, primaries=["1.0"], progress=False)
    finally:
        R.available_bytes = real
    with pytest.raises(RuntimeError, match="not initialised"):
        scan_distributed(e, ["1.0"])


def test_synergy_plan_before_it_starts(caplog, monkeypatch):
    """The synergy matrix's work is known before it runs: each single from its head's layer
    on, each pair from the later of its two layers on (below that it shares the single's
    blocks). Counted exactly against the engine; a rough time from the clean run's speed;
    the plan logged when it would take over a minute; a MemoryError that says what to
    change when it cannot fit."""
    import logging

    import coax_nb.resources as R

    model = load_model("organism:handwired")
    units = ["0.1", "1.2", "2.3", "0.3"]  # layers 0, 1, 2, 0 of 3
    e = Engine(model, task_for("organism:handwired", 16), progress=False)
    est = estimate_synergy(e, e.units(units))
    singles, pairs = 3 + 2 + 1 + 3, 2 + 1 + 3 + 1 + 2 + 1
    assert est["variants"] == 4 + 6
    assert est["forward_pass_equivalents"] == pytest.approx((singles + pairs) / 3)
    assert est["seconds"] == pytest.approx(16 * (singles + pairs) * e.block_row_seconds) and est["seconds"] > 0
    before = e.stats.block_rows
    synergy(e, units, progress=False)
    assert e.stats.block_rows - before == 16 * (singles + pairs)  # one energy group: the floor is met

    e.block_row_seconds = 10.0  # as if each block-row took 10 s: a long run, announced
    with caplog.at_level(logging.WARNING, logger="coax_nb"):
        synergy(e, units[:3], progress=True)
    # 16 prompts x 10 blocks at 10 s
    assert "synergy over 3 units (6 variants)" in caplog.text and "roughly 26.7 min" in caplog.text
    monkeypatch.setattr(R, "available_bytes", lambda device: 1000)
    with pytest.raises(MemoryError, match=r"the synergy over 2 units \(3 variants\) needs .*top_r=256"):
        synergy(e, units[:2], progress=False)
