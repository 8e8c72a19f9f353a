"""`coax-nb report` publishes report.ipynb, report.html and report.json together or not at
all: a failed, interrupted (Ctrl-C), killed (SIGKILL at random points) or concurrent run
never leaves a partial or mixed report in --out. Written files get the user's normal
permissions. The end-to-end tests run the real command on the small bundled organism
(slow tier); the publish and lock mechanics are also tested directly (fast)."""
import json
import os
import random
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

from coax_nb import report as R
from coax_nb.io import atomic_write_text, current_umask

HW = "organism:handwired"
TRIO = R.REPORT_FILES


def normal_mode() -> int:
    return 0o666 & ~current_umask()


# ------------------------------------------------------------------ fast: the mechanics

def test_atomic_writes_get_the_umask_permissions_not_0600(tmp_path):
    old = os.umask(0o027)
    try:
        assert current_umask() == 0o027
        path = atomic_write_text(tmp_path / "a.json", "{}")
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        os.umask(0o002)
        assert stat.S_IMODE(atomic_write_text(tmp_path / "b.json", "{}").stat().st_mode) == 0o664
    finally:
        os.umask(old)
    assert current_umask() == old


def test_results_to_json_is_not_private(tmp_path):
    from coax_nb.results import UnitScores
    from coax_nb.units import Unit
    import numpy as np

    scores = UnitScores(1, 2, [Unit(0, 0)], {"comp": np.array([np.nan, 1.0])}, {})
    path = tmp_path / "scores.json"
    scores.to_json(path)
    assert stat.S_IMODE(path.stat().st_mode) == normal_mode() != 0o600


def test_a_symlinked_file_is_replaced_not_written_through(tmp_path):
    target = tmp_path / "elsewhere.json"
    target.write_text("precious")
    link = tmp_path / "report.json"
    link.symlink_to(target)
    atomic_write_text(link, "new")
    assert not link.is_symlink() and link.read_text() == "new" and target.read_text() == "precious"


def staged(out: Path, tag: str) -> Path:
    staging = out / f"{R.STAGING_PREFIX}{tag}"
    staging.mkdir(parents=True)
    for name in TRIO:
        (staging / name).write_text(f"{tag} {name}")
    return staging


def trio_text(out: Path) -> dict:
    return {n: (out / n).read_text() for n in TRIO}


def test_publish_moves_all_three_and_replaces_links(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "outside.html"
    outside.write_text("not ours")
    (out / "report.html").symlink_to(outside)
    R._publish(staged(out, "new"), out)
    assert trio_text(out) == {n: f"new {n}" for n in TRIO}
    assert outside.read_text() == "not ours" and not (out / "report.html").is_symlink()
    assert not (out / R.JOURNAL_FILE).exists()
    with pytest.raises(R.ReportError, match="did not write report.json"):
        staging = staged(out, "half")
        (staging / "report.json").unlink()
        R._publish(staging, out)
    assert trio_text(out) == {n: f"new {n}" for n in TRIO}


def test_a_publish_cut_short_is_completed_by_the_next_run(tmp_path):
    """What a SIGKILL between the renames leaves (journal written, one file moved) is
    rolled forward under the lock; leftover staging folders are removed."""
    out = tmp_path / "out"
    staged(out, "old")
    R._move_in(out / f"{R.STAGING_PREFIX}old", out)
    staging = staged(out, "new")
    atomic_write_text(out / R.JOURNAL_FILE, staging.name)
    os.replace(staging / "report.json", out / "report.json")  # killed here: a mix
    stray = staged(out, "killed-run")
    R._recover(out)
    assert trio_text(out) == {n: f"new {n}" for n in TRIO}
    assert not staging.exists() and not stray.exists() and not (out / R.JOURNAL_FILE).exists()
    # a journal naming anything but a staging folder is dropped, nothing moved
    atomic_write_text(out / R.JOURNAL_FILE, "../../etc")
    R._recover(out)
    assert trio_text(out) == {n: f"new {n}" for n in TRIO} and not (out / R.JOURNAL_FILE).exists()


def test_second_run_waits_for_the_lock_then_times_out(tmp_path):
    said = []
    with R._folder_lock(tmp_path, 1.0, said.append):
        t0 = time.monotonic()
        with pytest.raises(R.ReportError, match="another coax-nb report into .* still runs after 0.5 s"):
            with R._folder_lock(tmp_path, 0.5, said.append):
                pass
        assert time.monotonic() - t0 >= 0.5
    assert len(said) == 1 and said[0].startswith("waiting for another coax-nb report")
    # released: the next one gets it at once, and a waiter gets it when the holder lets go
    got = threading.Event()

    def wait_for_it():
        with R._folder_lock(tmp_path, 10, said.append):
            got.set()
    with R._folder_lock(tmp_path, 0.1, said.append):
        waiter = threading.Thread(target=wait_for_it)
        waiter.start()
        time.sleep(0.5)
        assert not got.is_set()
    waiter.join(5)
    assert got.is_set() and len(said) == 2


def test_the_lock_file_is_never_a_followed_link(tmp_path):
    (tmp_path / R.LOCK_FILE).symlink_to(tmp_path / "target")
    with pytest.raises(OSError):
        with R._folder_lock(tmp_path, 0.1, print):
            pass
    assert not (tmp_path / "target").exists()


# ------------------------------------------------------------------ slow: the real command

def cli(out: Path, *extra: str, **popen) -> subprocess.Popen:
    argv = [sys.executable, "-m", "coax_nb.cli", "report", "--model", HW, "--out", str(out), *extra]
    # SIGINT at its default in the child, even when the test runner ignores it
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **popen)


def identity(out: Path) -> set:
    """(n_prompts, prompt_seed) as each of the three files records it: one element when
    the three come from the same run."""
    meta = json.loads((out / "report.json").read_text())["meta"]
    params = json.loads((out / "report.ipynb").read_text())["metadata"]["papermill"]["parameters"]
    shown = re.search(r"prompts</strong> (\d+) \(prompt seed (\d+)\)", (out / "report.html").read_text())
    return {(meta["n_prompts"], meta["prompt_seed"]), (params["n_prompts"], params["prompt_seed"]),
            (int(shown[1]), int(shown[2]))}


def snapshot(out: Path) -> dict:
    return {n: (out / n).read_bytes() for n in TRIO}


def visible(out: Path) -> set:
    return {p.name for p in out.iterdir() if not p.name.startswith(".")}


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A good report (6 prompts, prompt seed 0) in a fresh --out, and how long it took."""
    out = tmp_path_factory.mktemp("tx") / "out"
    t0 = time.perf_counter()
    p = cli(out, "--prompts", "6")
    stdout, stderr = p.communicate(timeout=600)
    assert p.returncode == 0, stderr[-3000:]
    return out, time.perf_counter() - t0, stdout


@pytest.mark.slow
def test_a_good_report_publishes_a_consistent_trio_with_normal_permissions(published):
    out, seconds, stdout = published
    assert visible(out) == set(TRIO) and identity(out) == {(6, 0)}
    assert all(stat.S_IMODE((out / n).stat().st_mode) == normal_mode() for n in TRIO)
    assert "(6 prompts)" in stdout and "rank    head" in stdout
    assert not list(out.glob(R.STAGING_PREFIX + "*")) and not (out / R.JOURNAL_FILE).exists()
    print(f"one report: {seconds:.1f} s")


def tiny_notebook(path: Path, body: str) -> Path:
    """A notebook with the report's parameters and a body of our choosing."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("model = task = primaries = device = None\nn_prompts = prompt_seed = top = 0\n"
                                       "out_dir = '.'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params] + [nbformat.v4.new_code_cell(src) for src in body.split("\n# --\n")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


@pytest.mark.slow
def test_a_failing_run_leaves_the_published_report_byte_identical(published, tmp_path, monkeypatch):
    out = published[0]
    before = snapshot(out)
    # a cell fails late, after the notebook wrote its own (partial) report.json
    monkeypatch.setattr(R, "REPORT_NOTEBOOK", tiny_notebook(tmp_path / "late.ipynb", (
        "import os\nopen(os.path.join(out_dir, 'report.json'), 'w').write('{partial')\n# --\n"
        "raise RuntimeError('late failure')\n# --\nprint('never runs')")))
    with pytest.raises(R.ReportError) as info:
        R.execute_report(HW, "default", out, n_prompts=6)
    message = str(info.value)
    assert re.search(r"cell \d+ \(execution count \d+\): RuntimeError: late failure", message)
    assert f"the report in {out} is unchanged" in message and str(out / ".failed" / "report.ipynb") in message
    assert snapshot(out) == before and visible(out) == set(TRIO)
    kept = nbformat.read(str(out / ".failed" / "report.ipynb"), as_version=4)
    statuses = [c.metadata.papermill["status"] for c in kept.cells if c.get("cell_type") == "code"]
    assert statuses[-2:] == ["failed", "pending"], statuses
    # the notebook ran, then exporting the HTML failed
    monkeypatch.setattr(R, "REPORT_NOTEBOOK", tiny_notebook(tmp_path / "ok.ipynb", (
        "import json, os\njson.dump({'headline': 'fake'}, open(os.path.join(out_dir, 'report.json'), 'w'))")))

    def broken_export(notebook, dest):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(R, "export_html", broken_export)
    with pytest.raises(R.ReportError, match="exporting report.html failed with OSError: .*No space left"):
        R.execute_report(HW, "default", out, n_prompts=6)
    assert snapshot(out) == before and not list(out.glob(R.STAGING_PREFIX + "*"))


def running_cell(out: Path):
    """The source of the code cell papermill marks "running" in a staged notebook, if any."""
    for path in out.glob(R.STAGING_PREFIX + "*/report.ipynb"):
        try:
            cells = json.loads(path.read_text())["cells"]
        except (OSError, ValueError):  # being rewritten
            continue
        for c in cells:
            if c["cell_type"] == "code" and c["metadata"].get("papermill", {}).get("status") == "running":
                return "".join(c["source"])
    return None


@pytest.mark.slow
def test_ctrl_c_is_one_line_and_keeps_the_report(published):
    out = published[0]
    before = snapshot(out)
    p = cli(out, "--prompts", "6", "--prompt-seed", "9")
    while "run_report(" not in (running_cell(out) or "") and p.poll() is None:
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)  # Ctrl-C while the cell that runs the scans is running
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 130, stderr
    assert stderr.splitlines() == [stderr.strip()] and stderr.startswith("coax-nb: interrupted: ")
    assert f"the report in {out} is unchanged" in stderr and "Traceback" not in stderr
    assert snapshot(out) == before and not list(out.glob(R.STAGING_PREFIX + "*"))
    kept = out / ".failed" / "report.ipynb"
    assert str(kept) in stderr
    nb = nbformat.read(str(kept), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    statuses = [c.metadata.papermill["status"] for c in code]
    # the cell running at Ctrl-C is "failed"; none after it is "completed"
    assert statuses.count("failed") == 1 and "run_report(" in code[statuses.index("failed")].source, statuses
    assert set(statuses[statuses.index("failed") + 1:]) == {"pending"}, statuses
    assert "stopped in cell" in nb.cells[0].source


# where the random delay starts: the launch; the notebook's report.json in the staging
# folder (HTML export next); the staged report.html (the renames next)
PHASES = {"any": None, "export": "report.json", "publish": "report.html"}


@pytest.mark.slow
@pytest.mark.parametrize("seed, phase", [(1, "any"), (2, "export"), (3, "publish")])
def test_sigkill_at_a_random_point_leaves_the_old_or_the_new_trio(published, seed, phase):
    out, seconds, _ = published
    before, old_id = snapshot(out), identity(out)
    rng = random.Random(seed)
    p = cli(out, "--prompts", "6", "--prompt-seed", str(10 + seed), start_new_session=True)
    if PHASES[phase]:
        while not list(out.glob(f"{R.STAGING_PREFIX}*/{PHASES[phase]}")) and p.poll() is None:
            time.sleep(0.005)
    delay = {"any": rng.uniform(0.5, 1.1 * seconds), "export": rng.uniform(0.0, 5.0),
             "publish": rng.uniform(0.0, 0.05)}[phase]
    try:
        p.wait(timeout=delay)
        what = "finished before"
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        what = "killed"
    if (out / R.JOURNAL_FILE).exists():  # killed between the renames: the next run completes them
        R._recover(out)
    assert visible(out) == set(TRIO)  # staging, journal and lock are hidden, never taken for a report
    now = identity(out)
    assert now in ({(6, 10 + seed)}, old_id), now
    if now == old_id:
        assert snapshot(out) == before
    print(f"seed {seed} ({phase}): {what} {delay:.3f} s (a report takes {seconds:.1f} s); "
          f"{'new' if now != old_id else 'old'} trio")


@pytest.mark.slow
def test_two_runs_into_one_out_wait_for_each_other(published):
    out = published[0]
    first = cli(out, "--prompts", "4", "--prompt-seed", "21")
    started = first.stdout.readline()  # printed once the first holds the lock
    assert started.startswith("running the report notebook"), started
    second = cli(out, "--prompts", "6", "--prompt-seed", "22")
    (out1, err1), (out2, err2) = first.communicate(timeout=600), second.communicate(timeout=600)
    out1 = started + out1
    assert first.returncode == 0 and second.returncode == 0, (err1, err2)
    # each prints its own table; the second said once that it waits
    assert "(4 prompts)" in out1 and "(6 prompts)" not in out1
    assert "(6 prompts)" in out2 and "(4 prompts)" not in out2
    assert out2.count("waiting for another coax-nb report") == 1 and "waiting" not in out1
    assert identity(out) == {(6, 22)} and visible(out) == set(TRIO)
    assert not list(out.glob(R.STAGING_PREFIX + "*")) and not (out / R.JOURNAL_FILE).exists()
