"""The paper's protocol as a preset: GPT-2 small's documented IOI circuit, the preset's
settings, and the same preset code run offline with an organism in GPT-2's place."""
import json
import subprocess
import sys

import numpy as np
import pytest

from coax_nb import ModelLoadError, known_circuit, reproduce
from coax_nb.organisms import card
from coax_nb.presets import PRESETS, preset
from coax_nb.results import load
from coax_nb.units import parse_name


def test_gpt2_ioi_circuit_is_the_documented_one():
    c = known_circuit("gpt2", "ioi")
    as_dots = lambda heads: [f"{parse_name(h).layer}.{parse_name(h).head}" for h in heads]  # noqa: E731
    assert as_dots(c["primaries"]) == ["9.9", "10.0", "9.6"]  # name movers (method.md section 6)
    assert as_dots(c["backups"]) == ["9.0", "9.7", "10.1", "10.2", "10.6", "10.10", "11.2", "11.9"]
    assert as_dots(c["roles"]["negative name movers"]) == ["10.7", "11.10"]
    assert as_dots(c["roles"]["S-inhibition"]) == ["7.3", "7.9", "8.6", "8.10"]
    assert "Wang et al. 2022" in c["source"]
    every = [h for heads in c["roles"].values() for h in heads]
    assert len(every) == len(set(every))  # no head in two roles


def test_organism_circuits_come_from_their_cards():
    c = known_circuit("organism:ioi_dormant", "ioi")
    assert c["primaries"] == [str(parse_name(h)) for h in card("ioi_dormant")["primaries"]]
    assert c["backups"] == [str(parse_name(h)) for h in card("ioi_dormant")["backups"]]
    with pytest.raises(ValueError, match="documents its circuit on induction, not ioi; use task='induction'"):
        known_circuit("organism:induction_gpt2", "ioi")
    with pytest.raises(ValueError, match="no documented circuit for gpt2-xl on ioi; documented: gpt2 on ioi"):
        known_circuit("gpt2-xl", "ioi")
    with pytest.raises(ValueError, match="no bundled organism 'nope'"):
        known_circuit("organism:nope", "ioi")


def test_the_preset_fixes_the_papers_settings():
    p = preset("ioi-gpt2")
    assert (p.model, p.task, p.n_prompts, p.prompt_seeds) == ("gpt2", "ioi", 96, (1, 15, 22, 8))
    assert (p.position_mode, p.top_r, p.ablation, p.prepend_bos) == ("last", 0, "zero", True)
    assert p.paper == {"single": 0.60, "atp": 0.65, "eap_ig": 0.58, "atp_gd": 0.67, "comp": 0.94, "ratio": 0.98}
    with pytest.raises(ValueError, match="no preset 'ioi-gpt3'; presets: ioi-gpt2"):
        preset("ioi-gpt3")


def test_the_preset_on_an_organism_in_gpt2s_place(tmp_path):
    r = reproduce("ioi-gpt2", model="organism:ioi_dormant", prompt_seeds=[1, 15], n_prompts=24, progress=False)
    assert r.meta["preset"] == "ioi-gpt2" and r.meta["prompt_seeds"] == [1, 15] and r.meta["repeats"] == 2
    assert [row["selector"] for row in r.rows] == list(PRESETS["ioi-gpt2"].selectors)
    assert [str(u) for u in r.primaries] == known_circuit("organism:ioi_dormant")["primaries"]
    # the scientific claim the paper's table makes holds here: CoAx ranks the dormant backups
    # above single ablation and the gradient baselines
    assert r.auc("comp") > max(r.auc("single"), r.auc("atp"), r.auc("atp_gd"), r.auc("eap_ig")) + 0.3
    assert len(r.scores) == 2 and r.scores[0].meta["n_prompts"] == 24
    table = r.table()
    assert "paper" in table.splitlines()[1] and " 0.94 " in table and "this run is on organism:ioi_dormant" in table
    path = tmp_path / "r.json"
    r.to_json(path)
    back = load(path)
    assert back.meta["paper"] == r.meta["paper"] and back.table() == table


def test_gpt2_offline_fails_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises((ModelLoadError, OSError), match="gpt2"):
        reproduce("ioi-gpt2", prompt_seeds=[1], n_prompts=4, progress=False)
    with pytest.raises(ValueError, match="prompt_seeds is empty"):
        reproduce("ioi-gpt2", model="organism:ioi_dormant", prompt_seeds=[], progress=False)


@pytest.mark.slow
def test_cli_reproduce_runs_the_full_preset_on_an_organism(tmp_path):
    """``coax-nb reproduce ioi-gpt2`` with the preset's own 96 prompts and four seeds, an
    organism standing in for GPT-2 (the hub is out of reach here)."""
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "coax_nb", "reproduce", "ioi-gpt2", "--model",
                           "organism:ioi_dormant", "--quiet", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "prompt seeds 1 15 22 8" in proc.stderr and "96 prompts per set" in proc.stderr
    r = load(out)
    assert r.meta["prompt_seeds"] == [1, 15, 22, 8] and r.meta["repeats"] == 4
    assert [s.meta["n_prompts"] for s in r.scores] == [96] * 4
    rows = {row["selector"]: row for row in r.rows}
    assert rows["comp"]["roc_auc"] > rows["single"]["roc_auc"] and np.isfinite(rows["comp"]["roc_auc_std"])
    assert "CoAx (conditional - single)" in proc.stdout and "0.94" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "coax_nb", "reproduce", "ioi-gpt3"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice: 'ioi-gpt3'" in bad.stderr
    json.loads(out.read_text())
