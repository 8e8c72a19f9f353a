"""Pruning checkpoints know the run they belong to: the same run resumes exactly; a
checkpoint of another model, other prompts or other options is refused, naming what
differs; a checkpoint written before fingerprints existed is refused too."""
import json

import numpy as np
import pytest
import torch

from coax_nb import ioi_task, load_model
from coax_nb.applications import prune
from coax_nb.applications.pruning import weights_fingerprint
from coax_nb.toy import build_toy_model

ORDERS = ["repair_aware", "single"]


@pytest.fixture(scope="module")
def run(toy):
    cal, ev = ioi_task(toy, 8, prompt_seed=1), ioi_task(toy, 8, prompt_seed=2)
    return toy, cal, ev, prune(toy, cal, ev, orders=ORDERS, progress=False)


@pytest.fixture(scope="module")
def other_model(tmp_path_factory):
    """Same shape and tokenizer as the `toy` fixture (3 layers x 4 heads, IOI words), other weights."""
    path = build_toy_model(tmp_path_factory.mktemp("toy_other") / "m", n_layers=3, n_heads=4, d_model=32, rng_seed=1)
    return load_model(path, device="cpu")


def _interrupted(tmp_path, model, cal, ev, **kw):
    ck = tmp_path / "prune.json"
    part = prune(model, cal, ev, orders=ORDERS, checkpoint=ck, stop_after=3, progress=False, **kw)
    assert part.meta["stopped"] and len(part.orders["repair_aware"]["loss"]) == 4
    return ck


def test_the_same_run_resumes_with_the_uninterrupted_curves(run, tmp_path):
    model, cal, ev, full = run
    ra = np.array(full.orders["repair_aware"]["loss"])
    assert len(ra) == 13 and np.all(np.isfinite(ra)) and ra.max() - ra.min() > 0.1  # a real curve, not a constant
    ck = _interrupted(tmp_path, model, cal, ev)
    saved = json.loads(ck.read_text())
    assert set(saved["fingerprint"]) == {"model", "tokenizer", "prompts", "options"}
    assert saved["fingerprint"]["model"] == weights_fingerprint(model)
    assert saved["orders"]["repair_aware"]["loss"] == full.orders["repair_aware"]["loss"][:4]
    done = prune(model, cal, ev, orders=ORDERS, checkpoint=ck, progress=False)
    assert not done.meta["stopped"]
    assert done.orders == full.orders  # exact, float for float
    assert [s["step"] for s in done.steps] == list(range(1, 13))


def test_another_model_of_the_same_shape_is_refused(run, other_model, tmp_path):
    model, cal, ev, _ = run
    assert weights_fingerprint(other_model) != weights_fingerprint(model)
    ck = _interrupted(tmp_path, model, cal, ev)
    before = ck.read_bytes()
    with pytest.raises(ValueError, match=r"another run; what differs: model \(weights hash") as e:
        prune(other_model, cal, ev, orders=ORDERS, checkpoint=ck, progress=False)
    msg = str(e.value)
    assert "prompts" not in msg.split("Resuming")[0] and "delete the file or pass a new checkpoint path" in msg
    assert ck.read_bytes() == before  # the refused call wrote nothing


def test_a_model_edited_in_memory_is_another_model(run, toy_dir, tmp_path):
    model, cal, ev, _ = run
    ck = _interrupted(tmp_path, model, cal, ev)
    edited = load_model(toy_dir, device="cpu")
    assert weights_fingerprint(edited) == weights_fingerprint(model)  # the same weights loaded twice
    with torch.no_grad():
        next(edited.parameters()).view(-1)[0] += 1e-3  # the files on disk are unchanged
    with pytest.raises(ValueError, match="what differs: model"):
        prune(edited, cal, ev, orders=ORDERS, checkpoint=ck, progress=False)


@pytest.mark.parametrize("which", ["calibration", "evaluation"])
def test_other_prompts_of_the_same_count_are_refused(run, tmp_path, which):
    model, cal, ev, _ = run
    ck = _interrupted(tmp_path, model, cal, ev)
    other = ioi_task(model, 8, prompt_seed=9)
    assert len(other) == len(cal) and other.prompts != cal.prompts
    args = (other, ev) if which == "calibration" else (cal, other)
    with pytest.raises(ValueError, match=rf"what differs: {which} prompts \(hash") as e:
        prune(model, *args, orders=ORDERS, checkpoint=ck, progress=False)
    assert "model (" not in str(e.value)


def test_other_targets_on_the_same_prompts_are_refused(run, tmp_path):
    model, cal, ev, _ = run
    ck = _interrupted(tmp_path, model, cal, ev)
    swapped = ev.subset(range(len(ev)))
    swapped.targets, swapped.distractors = swapped.distractors, swapped.targets  # same token ids, other answers
    with pytest.raises(ValueError, match="what differs: evaluation prompts"):
        prune(model, cal, swapped, orders=ORDERS, checkpoint=ck, progress=False)


def test_other_options_are_refused_naming_them(run, tmp_path):
    model, cal, ev, _ = run
    ck = _interrupted(tmp_path, model, cal, ev)
    with pytest.raises(ValueError, match=r"other settings \(primaries: None in the checkpoint, \['L0H0'\] now\)"):
        prune(model, cal, ev, orders=ORDERS, primaries=["L0H0"], checkpoint=ck, progress=False)
    with pytest.raises(ValueError, match=r"rng_seed: 0 in the checkpoint, 3 now"):
        prune(model, cal, ev, orders=ORDERS, rng_seed=3, checkpoint=ck, progress=False)


def test_a_checkpoint_from_before_fingerprints_is_refused(run, tmp_path):
    model, cal, ev, _ = run
    ck = _interrupted(tmp_path, model, cal, ev)
    old = json.loads(ck.read_text())
    del old["fingerprint"]  # what earlier versions wrote: settings, orders, steps
    ck.write_text(json.dumps(old))
    with pytest.raises(ValueError, match="predates fingerprints.*delete the file or pass a new checkpoint path"):
        prune(model, cal, ev, orders=ORDERS, checkpoint=ck, progress=False)


@pytest.mark.parametrize("content, message", [
    ("not json {", r"not a pruning checkpoint \(not JSON"),
    ("[1, 2, 3]", "not a pruning checkpoint; delete"),
    (None, "is a folder; pass a file path"),
])
def test_a_file_that_is_no_checkpoint_is_refused(run, tmp_path, content, message):
    model, cal, ev, _ = run
    ck = tmp_path / "prune.json"
    if content is None:
        ck.mkdir()
    else:
        ck.write_text(content)
    with pytest.raises(ValueError, match=message):
        prune(model, cal, ev, orders=ORDERS, checkpoint=ck, progress=False)


def test_the_weights_fingerprint_reads_every_dtype():
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3)
    fp32 = weights_fingerprint(lin)
    assert weights_fingerprint(lin) == fp32  # stable
    half = lin.to(torch.bfloat16)  # numpy has no bfloat16: the bytes are read as they are
    assert weights_fingerprint(half) != fp32 and weights_fingerprint(half) == weights_fingerprint(half)
