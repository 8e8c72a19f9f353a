"""The opt-in disk cache: a second call with the same inputs loads (and says so), any
other input computes anew, a damaged entry is recomputed, and nothing is cached unless
asked."""
import json
import warnings

import numpy as np
import pytest
import torch

import coax_nb
from coax_nb import (CacheNotice, Engine, attribution_scores, coax_scan, custom_task, load_model, synergy,
                     use_cache)
from coax_nb import cache as cache_module
from coax_nb import scores as scores_module
from coax_nb.organisms import task_for

ORG = "organism:handwired"
S = ["L1H0", "L1H1"]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.delenv("COAX_CACHE", raising=False)
    monkeypatch.setattr(cache_module, "_folder", None)
    monkeypatch.setattr(cache_module, "_off", False)
    return use_cache(tmp_path / "cache")


@pytest.fixture(scope="module")
def model():
    return load_model(ORG)


def _engine(model, n=12, seed=0):
    return Engine(model, task_for(ORG, n, prompt_seed=seed), progress=False)


def _scan(engine, primaries=S, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = coax_scan(engine, primaries=primaries, progress=False, **kw)
    return out, [w for w in caught if issubclass(w.category, CacheNotice)]


def test_off_unless_asked(tmp_path, monkeypatch, model):
    monkeypatch.delenv("COAX_CACHE", raising=False)
    monkeypatch.setattr(cache_module, "_folder", None)
    monkeypatch.setattr(cache_module, "_off", False)
    assert cache_module.cache_folder() is None
    _scan(_engine(model))
    monkeypatch.setenv("COAX_CACHE", str(tmp_path / "env"))  # a kernel started with COAX_CACHE
    assert cache_module.cache_folder() == tmp_path / "env"
    _, notes = _scan(_engine(model))
    assert not notes and len(list((tmp_path / "env" / "coax_scan").glob("*.json"))) == 1
    use_cache(False)  # off wins over the environment
    assert cache_module.cache_folder() is None


def test_a_second_scan_loads_and_says_so(folder, model, monkeypatch):
    engine = _engine(model)
    first, notes = _scan(engine)
    assert not notes
    files = list((folder / "coax_scan").glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["type"] == "UnitScores"

    def must_not_run(*a, **k):
        raise AssertionError("a cached scan was recomputed")
    monkeypatch.setattr(scores_module, "scan_samples", must_not_run)
    again, notes = _scan(_engine(model))  # a new engine, the same inputs: a notebook re-run
    assert len(notes) == 1 and "loaded from the cache" in str(notes[0].message) and str(files[0]) in str(
        notes[0].message)
    assert again.meta["cache"] == {"loaded_from": str(files[0])}
    for name in first.scores:
        np.testing.assert_array_equal(again.scores[name], first.scores[name])
    assert [str(u) for u in again.primaries] == S


def test_any_other_input_computes_anew(folder, model):
    engine = _engine(model)
    _scan(engine)
    for label, call in [
        ("other primaries", lambda: _scan(engine, ["L1H0"])),
        ("other prompts", lambda: _scan(_engine(model, seed=1))),
        ("more prompts", lambda: _scan(_engine(model, n=13))),
        ("other ablation", lambda: _scan(engine, ablation="mean")),
        ("other effect", lambda: _scan(engine, effect="kl")),
        ("top-r support", lambda: _scan(engine, top_r=5)),
    ]:
        _, notes = call()
        assert not notes, label
    assert len(list((folder / "coax_scan").glob("*.json"))) == 7


def test_weights_edited_in_place_are_another_model(folder):
    model = load_model(ORG)
    first, _ = _scan(_engine(model))
    weight = next(p for name, p in model.named_parameters() if ".h.2." in name and name.endswith("attn.o._original_component.weight"))
    with torch.no_grad():
        weight.mul_(0.5)  # a backup's weights halved in memory, after loading
    edited, notes = _scan(_engine(model))
    assert not notes and not np.allclose(edited.scores["single"], first.scores["single"])


def test_synergy_and_baselines_are_cached_too(folder, model):
    engine = _engine(model)
    heads = ["L1H0", "L1H1", "L2H0", "L2H1"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = synergy(engine, heads, progress=False)
        b = synergy(engine, heads, progress=False)
        g1 = synergy(engine, {"movers": heads[:2], "backups": heads[2:]}, progress=False)
        g2 = synergy(engine, {"movers": heads[:2], "backups": heads[2:3]}, progress=False)  # same names, other heads
        x = attribution_scores(engine, primaries=S, methods=["atp"], progress=False)
        y = attribution_scores(engine, primaries=S, methods=["atp"], progress=False)
    notes = [str(w.message) for w in caught if issubclass(w.category, CacheNotice)]
    assert len(notes) == 2 and notes[0].startswith("synergy:") and notes[1].startswith("attribution_scores:")
    np.testing.assert_array_equal(a["raw"], b["raw"])
    assert not np.allclose(g1["raw"], g2["raw"], equal_nan=True)
    np.testing.assert_array_equal(x.scores["atp"], y.scores["atp"])


def test_a_damaged_entry_is_recomputed_and_replaced(folder, model):
    first, _ = _scan(_engine(model))
    (path,) = (folder / "coax_scan").glob("*.json")
    path.write_text('{"type": "UnitScores", "schema')
    again, notes = _scan(_engine(model))
    assert len(notes) == 1 and "could not be read" in str(notes[0].message)
    np.testing.assert_allclose(again.scores["comp"], first.scores["comp"], equal_nan=True)
    assert json.loads(path.read_text())["type"] == "UnitScores"  # replaced by a good file
    _, notes = _scan(_engine(model))
    assert "loaded from the cache" in str(notes[0].message)


def test_a_custom_metric_is_never_cached(folder, model):
    base = task_for(ORG, 8)
    task = custom_task(model, base.texts, position_mode="last",
                       metric_fn=lambda logits, task: torch.stack([lg[-1, 0] for lg in logits]))
    engine = Engine(model, task, progress=False)
    assert engine.fingerprint() is None
    _scan(engine, effect="task")
    assert not (folder / "coax_scan").exists()


def test_bad_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "_folder", None)
    monkeypatch.setattr(cache_module, "_off", False)
    f = tmp_path / "a_file"
    f.write_text("x")
    with pytest.raises(ValueError, match="is a file; give a folder"):
        use_cache(f)
    assert coax_nb.cache.cache_folder() is None or coax_nb.cache.cache_folder() != f


@pytest.mark.slow
def test_a_notebook_rerun_loads_and_says_so(tmp_path, monkeypatch):
    """A kernel started with COAX_CACHE: the second run of the same notebook loads the scan
    and prints where from (a warning in the cell's output); the numbers are the same."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("COAX_CACHE", str(tmp_path / "cache"))
    src = ("from coax_nb import load_model, coax_scan\nfrom coax_nb.organisms import task_for\n"
           "s = coax_scan(load_model('organism:handwired'), task_for('organism:handwired', 12), "
           "primaries=['L1H0', 'L1H1'], progress=False)\nprint('COMP', repr(s.value('comp', 'L2H0')))")
    runs = []
    for _ in range(2):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
        runs.append({o.get("name"): o.get("text", "") for o in nb.cells[0].outputs if o.output_type == "stream"})
    assert "loaded from the cache" not in runs[0].get("stderr", "")
    assert "CacheNotice: coax_scan: loaded from the cache" in runs[1]["stderr"]
    comp = [r["stdout"].split("COMP ", 1)[1].strip() for r in runs]
    assert comp[0] == comp[1] and float(comp[0]) > 0


def test_task_fingerprint_reads_what_scores_and_losses_read(model):
    """One hash for the cache and pruning's checkpoints: other corrupted prompts (what
    resample ablation copies in) or other answers are another task; the same task is equal."""
    t = task_for(ORG, 8)
    assert t.fingerprint() == task_for(ORG, 8).fingerprint()
    assert t.fingerprint() != task_for(ORG, 8, prompt_seed=1).fingerprint()
    other = coax_nb.Task(t.name, t.prompts, t.position_mode, t.targets, t.distractors,
                         corrupted=[list(p) for p in reversed(t.corrupted)])
    assert other.fingerprint() != t.fingerprint()
    swapped = coax_nb.Task(t.name, t.prompts, t.position_mode, t.distractors, t.targets, corrupted=t.corrupted)
    assert swapped.fingerprint() != t.fingerprint()
