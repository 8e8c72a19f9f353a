"""The bundled organisms: rebuildable from recipes/, and their ground truth holds on
the shipped files."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from coax_nb import Engine, Variant, ablation_energy, coax_scan, evaluate, ioi_task, load_model, organisms

HW = "organism:handwired"
RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def recipe(name: str):
    """A script of recipes/ as a module (they are not part of the package)."""
    spec = importlib.util.spec_from_file_location(f"recipes_{name}", RECIPES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_handwired = recipe("build_handwired")
train_ioi = recipe("train_ioi")


@pytest.fixture(scope="module")
def hw():
    model = load_model(HW, device="cpu")
    task = organisms.task_for(HW, n_prompts=48, prompt_seed=123)  # prompts not used when the card was made
    return model, task, Engine(model, task, progress=False)


def test_listed_and_loadable():
    listing = organisms.list()
    assert "handwired" in listing and "backups" in listing["handwired"]
    card = organisms.card("handwired")
    assert card["primaries"] == [[1, 0], [1, 1]] and card["backups"] == [[2, 0], [2, 1]]


def test_rebuild_reproduces_shipped_weights_exactly(tmp_path):
    build_handwired.build(tmp_path)
    shipped = load_file(organisms.path("handwired") / "model.safetensors")
    rebuilt = load_file(tmp_path / "model.safetensors")
    assert shipped.keys() == rebuilt.keys()
    for k in shipped:
        assert torch.equal(shipped[k], rebuilt[k]), k
    for f in ("config.json", "tokenizer.json"):
        # the config records the transformers release that wrote it; everything else must match
        rebuilt, ship = (json.loads(p.read_text()) for p in (tmp_path / f, organisms.path("handwired") / f))
        rebuilt.pop("transformers_version", None), ship.pop("transformers_version", None)
        assert rebuilt == ship


def test_handwired_ground_truth(hw):
    model, task, e = hw
    u = e.units
    assert task.accuracy(e.clean_logits()) == 1.0
    s = coax_scan(e, primaries=["1.0", "1.1"], progress=False)
    # the backup is dormant: its single ablation is < 1% of the primary-plus-backup joint ablation
    joint = ablation_energy(e, Variant.zero(u(["1.0", "2.0"])))
    assert s.value("single", "2.0") < 0.01 * joint
    # the primary's single ablation is repaired: logit difference keeps >= 99% of what the backup restores
    ld = lambda v: task.metric(e.logits([v])[0]).mean().item()  # noqa: E731
    clean = task.metric(e.clean_logits()).mean().item()
    repaired = 1 - (clean - ld(Variant.zero(u(["1.0"])))) / (clean - ld(Variant.zero(u(["1.0", "2.0"]))))
    assert repaired > 0.99
    # CoAx ranks every backup above every other non-seed head; single ablation does not
    assert evaluate(s, ["2.0", "2.1"], by="comp")["roc_auc"] == 1.0
    assert evaluate(s, ["2.0", "2.1"], by="single")["roc_auc"] <= 0.6
    # the co-firing redundant head is active (large single effect) but not conditional
    assert s.value("single", "1.2") > 0.1 and abs(s.value("comp", "1.2")) < 1e-3
    assert s.value("wakeup", "2.0") > 10 and abs(s.value("wakeup", "1.2") - 1) < 1e-3


def test_card_numbers_reproduce():
    card = organisms.card("handwired")["measured"]
    now = build_handwired.measure(organisms.path("handwired"))
    assert now["accuracy"] == card["accuracy"]
    assert now["roc_auc"] == card["roc_auc"]
    for k, v in card["logit_diff"].items():
        assert now["logit_diff"][k] == pytest.approx(v, rel=1e-4, abs=1e-5)
    for head, vals in card["scores"].items():
        for name, v in vals.items():
            # a silent backup's single energy (1.7e-7) comes from logit changes of ~4e-4, which the
            # float32 rounding of the logits (~1e-6) moves by up to ~0.5%: its ratio moves with it
            rel = 1e-2 if name == "ratio" and vals["single"] < 1e-5 else 1e-3
            assert now["scores"][head][name] == pytest.approx(v, rel=rel, abs=1e-5), (head, name)


def test_cli_main_job_prints_top_heads():
    out = subprocess.run([sys.executable, "-m", "coax_nb.cli", "scan", "--model", "organism:handwired", "--prompts", "16",
                          "--quiet", "--top", "3"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    ranks = [ln.split() for ln in lines if ln.strip().startswith(("1 ", "2 ", "3 "))]
    assert sorted(r[1] for r in ranks[:2]) == ["L2H0", "L2H1"]
    assert "ROC-AUC 1.000" in out.stdout
    help_out = subprocess.run([sys.executable, "-m", "coax_nb.cli", "--help"], capture_output=True, text=True)
    assert help_out.returncode == 0 and "scan" in help_out.stdout


# ---------------------------------------------------------------- trained organisms
TRAINED = [n for n in organisms.names(kind="ioi") if "training" in organisms.card(n)]


def test_there_are_trained_organisms_with_both_kinds_of_backup():
    assert len(TRAINED) >= 2
    dormancy = {n: organisms.card(n)["dormancy_ratio"] for n in TRAINED}
    assert any(d is not None and d <= 0.3 for d in dormancy.values()), dormancy
    assert any(d is not None and d > 0.3 for d in dormancy.values()), dormancy  # co-firing compensators
    assert max(len(organisms.card(n)["backups"]) for n in TRAINED) >= 3


@pytest.mark.slow
def test_retraining_reproduces_the_card(tmp_path):
    """Retraining ioi_dormant from its recipe and seed gives a model that behaves as its
    card says. Weights are not compared: float training does not give the same bits on
    another CPU (weights differed by ~4e-3 on one fresh machine, by up to 0.25 on
    another), but the behaviour holds, within the tolerances below."""
    card = organisms.card("ioi_dormant")
    shipped = card["measured"]
    train_ioi.train(card["recipe"], tmp_path, verbose=False, rng_seed=card["training"]["settings"]["seed"])
    m = train_ioi.measure(tmp_path, shipped["criterion"]["n_primaries"])
    assert sorted(m["primaries"]) == sorted(shipped["primaries"])
    # backups: DLA rises above a threshold (10% of the primaries' DLA); the card's sit just
    # above it (0.67 and 0.68 logits for 0.66), and a retrained one falls under it on another
    # CPU (0.64 and 0.53 on an Intel Xeon, with transformers 5.24 and 5.25 alike). What must hold:
    # the card's backups are the heads that wake up -- the largest rises outside the
    # primaries, each at least half the threshold and 5x any other head's rise -- and no
    # other head crosses the threshold.
    H = card["architecture"]["n_heads"]
    rise = {(u // H, u % H): a - c for u, (a, c) in enumerate(zip(m["ablated_dla"], m["clean_dla"]))}
    backups = [tuple(b) for b in shipped["backups"]]
    others = [u for u in rise if list(u) not in shipped["primaries"] and u not in backups]
    largest_other = max(rise[u] for u in others)
    for b in backups:
        assert rise[b] >= 0.5 * m["criterion"]["threshold_logits"], (b, rise[b])
        assert rise[b] >= 5 * max(largest_other, 0.0), (b, rise[b], largest_other)
    assert m["backups"] and all(b in shipped["backups"] for b in m["backups"])
    assert m["accuracy"] == pytest.approx(shipped["accuracy"], abs=0.02)  # 2 of 128 prompts
    for k in ("clean", "primaries_ablated"):
        assert m["logit_diff"][k] == pytest.approx(shipped["logit_diff"][k], rel=0.1), k
    assert m["repair_fraction"] == pytest.approx(shipped["repair_fraction"], abs=0.05)
    # recovery of the card's backups on the same held-out prompts: ratio and single ablation
    # within 2 of the 3 x 6 backup/other pairs (1.0 and a blind ~0.2); comp, a difference of
    # two energies, moves most with the CPU (1.0 on the card's machine, 0.78 on an Intel Xeon,
    # where two layer-0 heads with large single energies get a small positive comp), so it
    # must keep the paper's claim: far above single ablation
    model = load_model(tmp_path, device="cpu")
    task = ioi_task(model, shipped["criterion"]["n_prompts"], prompt_seed=train_ioi.HELD_OUT_SEED,
                    names=train_ioi.NAMES, prepend_bos=True)
    s = coax_scan(model, task, primaries=card["primaries"], progress=False)
    auc = {by: evaluate(s, card["backups"], by=by)["roc_auc"] for by in ("comp", "ratio", "single")}
    for by in ("ratio", "single"):
        assert auc[by] == pytest.approx(shipped["selectors"][by]["roc_auc"], abs=2 / 18 + 1e-9), (by, auc)
    assert auc["comp"] >= auc["single"] + 0.5, auc


@pytest.fixture(scope="module", params=TRAINED)
def trained(request):
    measure = train_ioi.measure
    name = request.param
    card = organisms.card(name)
    return name, card, measure(organisms.path(name), card["measured"]["criterion"]["n_primaries"])


def test_trained_card_numbers_are_reproduced(trained):
    name, card, m = trained
    shipped = card["measured"]
    assert m["primaries"] == shipped["primaries"] and m["backups"] == shipped["backups"]
    assert m["accuracy"] == pytest.approx(shipped["accuracy"], abs=1e-6)
    for k, v in shipped["logit_diff"].items():
        assert m["logit_diff"][k] == pytest.approx(v, abs=1e-3), k
    assert m["repair_fraction"] == pytest.approx(shipped["repair_fraction"], abs=1e-3)
    for sel, row in shipped.get("selectors", {}).items():
        assert m["selectors"][sel]["roc_auc"] == pytest.approx(row["roc_auc"], abs=1e-6), sel


def test_trained_organism_self_repairs_and_coax_finds_the_backups(trained):
    """On held-out prompts (the ground truth came from another prompt set)."""
    name, card, m = trained
    assert m["accuracy"] >= 0.95
    assert m["backups"], f"{name}: the DLA criterion finds no backups"
    ld = m["logit_diff"]
    # ablating the primaries loses less than half of what primaries + backups lose
    assert ld["clean"] - ld["primaries_ablated"] < 0.5 * (ld["clean"] - ld["primaries_and_backups_ablated"])
    sel = m["selectors"]
    assert sel["single"]["roc_auc"] <= 0.6  # single ablation is blind to the backups
    if card["dormancy_ratio"] <= 0.3:
        assert sel["comp"]["roc_auc"] >= 0.85
        assert sel["comp"]["roc_auc"] - sel["single"]["roc_auc"] >= 0.3
    else:
        # co-firing compensators: the fourth mover 1.1, left out of the top-3 seed, gains
        # conditional importance (comp) without its DLA rising, so comp's AUC is lower
        # (0.67 on the card); the amplification ratio still ranks the compensators first
        assert sel["ratio"]["roc_auc"] >= 0.85
