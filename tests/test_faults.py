"""Fault tests: ``prune(checkpoint=...)`` killed with SIGKILL at random points (several
seeds), then resumed in a fresh process. While it runs, the checkpoint is read over and
over: it is always whole JSON and only ever grows (no step once written is lost); after a
kill it still holds every step written before; and the resumed run ends with exactly the
curves of an uninterrupted run, float for float. (``coax-nb report`` has its own fault
tests in tests/test_report_transaction.py.)"""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from coax_nb import load

ORDERS = ["repair_aware", "single", "random"]
SCRIPT = r"""
import os, sys
os.environ["HF_HUB_OFFLINE"] = "1"
import torch
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
from coax_nb import ioi_task, load_model, prune
model_dir, checkpoint, out = sys.argv[1:4]
model = load_model(model_dir, device="cpu")
cal, ev = ioi_task(model, 32, prompt_seed=1), ioi_task(model, 32, prompt_seed=2)
print("ready", flush=True)
result = prune(model, cal, ev, orders=%r, checkpoint=checkpoint, progress=False)
result.to_json(out)
""" % (ORDERS,)
TIMING = ("wall_seconds", "seconds", "forward_passes", "backward_passes")


def _steps(steps):
    """The steps without their timings, which differ from run to run."""
    return [{k: v for k, v in s.items() if k not in TIMING} for s in steps]


def _prune_process(model_dir, checkpoint, out, kill_after=None):
    """Run the pruning script; after it reports ready, read the checkpoint every few ms
    (each read must be whole JSON) and SIGKILL it ``kill_after`` seconds later. Returns
    the exit code, the seconds from ready to exit, and every distinct checkpoint read."""
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(model_dir), str(checkpoint), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"))
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        t0, seen = time.monotonic(), []
        while True:
            finished = proc.poll() is not None
            if checkpoint.exists():
                state = json.loads(checkpoint.read_text())  # never half-written: a JSONDecodeError fails the test
                if not seen or state != seen[-1]:
                    seen.append(state)
            if finished:
                break
            if kill_after is not None and time.monotonic() - t0 >= kill_after:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                break
            time.sleep(0.002)
        elapsed = time.monotonic() - t0
        stderr = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, -signal.SIGKILL), stderr
    return proc.returncode, elapsed, seen


def _check_prefix(state, reference):
    """A checkpoint holds nothing but what the uninterrupted run computed, in order."""
    ra = state["orders"].get("repair_aware", {"loss": [], "removed": []})
    full = reference.orders["repair_aware"]
    assert ra["loss"] == full["loss"][:len(ra["loss"])]
    assert ra["removed"] == full["removed"][:len(ra["removed"])]
    for name, o in state["orders"].items():
        if name != "repair_aware":  # a static order is written whole, once
            assert o["done"] and o["loss"] == reference.orders[name]["loss"]
    assert _steps(state["steps"]) == _steps(reference.steps)[:len(state["steps"])]


def _progress(state) -> int:
    """How much of the run a checkpoint holds: repair-aware points plus finished orders."""
    return len(state["orders"].get("repair_aware", {}).get("loss", [])) + sum(
        bool(o.get("done")) for o in state["orders"].values())


@pytest.fixture(scope="module")
def reference(toy_dir, tmp_path_factory):
    """An uninterrupted run (with its own checkpoint) and how long its pruning took."""
    folder = tmp_path_factory.mktemp("prune_reference")
    rc, seconds, seen = _prune_process(toy_dir, folder / "prune.json", folder / "result.json")
    assert rc == 0
    result = load(folder / "result.json")
    assert len(result.orders["repair_aware"]["loss"]) == 13 and len(result.steps) == 12
    assert len(seen) >= 3  # the watcher saw the checkpoint grow step by step
    return result, seconds


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prune_killed_at_random_points_resumes_exactly(toy_dir, tmp_path, reference, seed):
    full, seconds = reference
    rng = random.Random(seed)
    checkpoint, out = tmp_path / "prune.json", tmp_path / "result.json"
    killed = 0
    for _ in range(2):  # kill, resume and kill again, each at a random point of the run
        before = json.loads(checkpoint.read_text()) if checkpoint.exists() else None
        rc, _, seen = _prune_process(toy_dir, checkpoint, out, kill_after=rng.uniform(0.0, 0.9 * seconds))
        killed += rc == -signal.SIGKILL
        states = ([before] if before else []) + seen
        for earlier, later in zip(states, states[1:]):  # it only grows: nothing once written is lost
            assert _progress(later) >= _progress(earlier)
        for state in states:
            _check_prefix(state, full)
            assert state["fingerprint"] == states[0]["fingerprint"]
        if checkpoint.exists():  # the file after the kill holds at least the last state read
            after = json.loads(checkpoint.read_text())
            assert not seen or _progress(after) >= _progress(seen[-1])
        if rc == 0:
            break
    assert killed >= 1 or out.exists()
    rc, _, _ = _prune_process(toy_dir, checkpoint, out)  # resume in a fresh process, to the end
    assert rc == 0
    done = load(out)
    assert not done.meta["stopped"]
    assert done.orders == full.orders  # exact, float for float
    assert _steps(done.steps) == _steps(full.steps)
    assert done.primaries == full.primaries
