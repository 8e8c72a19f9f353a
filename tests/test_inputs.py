"""Bad input fails with a clear message."""
import math

import pytest
import torch

from coax_nb import Engine, ModelLoadError, coax_scan, evaluate, ioi_task, load_model
from coax_nb.toy import build_toy_model, ioi_vocabulary
from coax_nb.units import Unit, all_units, parse_units

from conftest import mixed_length_prompts


def test_unknown_and_out_of_range_heads(toy):
    e = Engine(toy, mixed_length_prompts(toy, 4), progress=False)
    with pytest.raises(ValueError, match="outside the model"):
        e.units(["3.0"])
    with pytest.raises(ValueError, match="outside the model"):
        e.units([(0, 4)])
    with pytest.raises(ValueError, match="cannot read unit"):
        e.units(["nine.nine"])
    with pytest.raises(ValueError, match="alone is not a head"):
        e.units([99])
    with pytest.raises(ValueError, match="9.10 becomes 9.1"):
        e.units([9.1])


def test_empty_prompt_set(toy):
    with pytest.raises(ValueError, match="empty"):
        Engine(toy, [], progress=False)


def test_every_head_spelling_names_the_same_head():
    import numpy as np

    spellings = ["9.10", "L9H10", "L9.H10", "a9.h10", "l9h10", "9:10", (9, 10), [9, 10],
                 (np.int64(9), np.int32(10)), Unit(9, 10)]
    for s in spellings:
        assert parse_units([s], 12, 12) == [Unit(9, 10)], s
    assert parse_units("L9H10, L10H0 11.2", 12, 12) == [Unit(9, 10), Unit(10, 0), Unit(11, 2)]
    assert parse_units((9, 10), 12, 12) == [Unit(9, 10)]  # a lone pair is one head
    assert str(Unit(9, 10)) == "L9H10" and Unit.from_flat(118, 12) == Unit(9, 10)
    for bad in (10, [10], 9.1, [9.10], True):
        with pytest.raises(ValueError, match="not a head"):
            parse_units(bad, 12, 12)


def test_primary_set_errors(toy):
    e = Engine(toy, mixed_length_prompts(toy, 4), progress=False)
    with pytest.raises(ValueError, match="primary set is empty"):
        coax_scan(e, primaries=[], progress=False)
    with pytest.raises(ValueError, match="covers every head"):
        coax_scan(e, primaries=all_units(3, 4), progress=False)


def test_prompt_longer_than_context(toy):
    with pytest.raises(ValueError, match="context"):
        Engine(toy, [[0] * (toy.cfg.n_ctx + 1)], progress=False)


def test_tokenizer_mismatch(toy, tmp_path):
    other = load_model(build_toy_model(tmp_path / "o", n_layers=1, n_heads=2, d_model=8,
                                       words=ioi_vocabulary(["zebra", "quokka"])), device="cpu")
    task = ioi_task(other, 4)
    with pytest.raises(ValueError, match="different tokenizer"):
        Engine(toy, task, progress=False)
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        Engine(toy, [[0, toy.cfg.d_vocab + 5]], progress=False)


def test_non_finite_logits(tmp_path):
    m = load_model(build_toy_model(tmp_path / "nan", n_layers=1, n_heads=2, d_model=8), device="cpu")
    with torch.no_grad():
        m.blocks[0].mlp.out.original_component.bias.fill_(math.nan)
    with pytest.raises(FloatingPointError, match="non-finite"):
        Engine(m, [[0, 3, 4]], progress=False)


def test_missing_model_and_offline_hub(tmp_path, monkeypatch):
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="local HF-format directory"):
        load_model("coax-nb-test/definitely-not-cached-model")
    with pytest.raises(ValueError, match="unknown organism"):
        load_model("organism:no-such-organism")


def test_model_without_attention_heads():
    from coax_nb.models import check_has_heads

    class NoHeads:
        hook_dict = {"blocks.0.mlp.hook_out": None}

    with pytest.raises(ModelLoadError, match="attention"):
        check_has_heads(NoHeads())


def test_evaluate_rejects_truth_in_primaries(toy):
    s = coax_scan(toy, mixed_length_prompts(toy, 4), primaries=["2.0"], progress=False)
    with pytest.raises(ValueError, match="in the primar"):
        evaluate(s, ["2.0", "1.1"])


def test_half_precision_refused_on_cpu(toy_dir):
    with pytest.raises(ValueError, match="CUDA"):
        load_model(toy_dir, device="cpu", dtype="fp16")


def test_device_map_loading_goes_through_the_bridge():
    """device_map / max_memory reach TransformerBridge (here all on the CPU)."""
    from coax_nb.organisms import task_for

    m = load_model("organism:handwired", device_map="cpu")
    assert {p.device.type for p in m.parameters()} == {"cpu"}
    s = coax_scan(m, task_for("organism:handwired", 8), primaries=["1.0", "1.1"], progress=False)
    assert sorted(str(u) for u, _ in s.top(2)) == ["L2H0", "L2H1"]


def test_encoder_only_model_is_refused(tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    from coax_nb.toy import word_tokenizer

    tok = word_tokenizer(ioi_vocabulary())
    BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                               intermediate_size=64)).save_pretrained(tmp_path / "bert")
    tok.save_pretrained(tmp_path / "bert")
    with pytest.raises(ModelLoadError, match="encoder-only .*decoder-only"):
        load_model(tmp_path / "bert", device="cpu")


def test_right_padded_token_tensor_is_refused(toy):
    from coax_nb.engine import check_not_right_padded

    pad = toy.tokenizer.pad_token_id
    assert pad is not None
    word = pad + 5
    with pytest.raises(ValueError, match="right-padded.*true lengths"):
        Engine(toy, torch.tensor([[0, word, word, word], [0, word, pad, pad]]), progress=False)
    check_not_right_padded(torch.tensor([[0, word], [0, word + 1]]), pad)  # equal lengths pass
    check_not_right_padded(torch.tensor([[0, word], [0, pad]]), None)  # no pad token: nothing to check
