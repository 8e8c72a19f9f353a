"""Other architecture families: tiny random models built here from `transformers` configs,
loaded through `load_model` from a local folder, scored by the engine and compared with an
independent plain-HF float64 computation (one forward per variant, head slices zeroed at
the input of the attention output projection). The engine's self-check must pick an exact
path on each (the direct block path is wrong on rotary models and OPT in TransformerLens
4.3, and the check falls back to the bridge's own path).

A start of the family matrix (issue 14); more families, ablation types, AtP and DLA to come.
"""
import tempfile
import warnings
from pathlib import Path

import pytest
import torch

from coax_nb import Engine, Term, Variant, load_model
from coax_nb import metrics as M
from coax_nb.toy import ioi_vocabulary, word_tokenizer


FAMILIES = {
    "gpt_neox": (dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                      rotary_pct=0.25), lambda m, l: m.gpt_neox.layers[l].attention.dense),
    "llama": (dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                   intermediate_size=64), lambda m, l: m.model.layers[l].self_attn.o_proj),
    "opt": (dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, ffn_dim=64, word_embed_proj_dim=32),
            lambda m, l: m.model.decoder.layers[l].self_attn.out_proj),
    "gemma": (dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
                   intermediate_size=64, head_dim=8), lambda m, l: m.model.layers[l].self_attn.o_proj),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_single_and_conditional_energies_equal_plain_hf_float64(family):
    from transformers import AutoConfig, AutoModelForCausalLM

    kw, out_proj = FAMILIES[family]
    torch.manual_seed(0)
    tok = word_tokenizer(ioi_vocabulary())
    cfg = AutoConfig.for_model(family, vocab_size=len(tok), max_position_embeddings=64, **kw)
    folder = Path(tempfile.mkdtemp()) / family
    AutoModelForCausalLM.from_config(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    ref = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64).eval()
    prompts = [[0] + torch.randint(2, len(tok), (9,)).tolist() for _ in range(4)]
    H = cfg.num_attention_heads
    Dh = getattr(cfg, "head_dim", None) or cfg.hidden_size // H

    def hf_logits(zeroed=()):
        hooks = []
        for layer, head in zeroed:
            def pre(mod, args, head=head):
                x = args[0].clone()
                x[..., head * Dh:(head + 1) * Dh] = 0
                return (x,)
            hooks.append(out_proj(ref, layer).register_forward_pre_hook(pre))
        with torch.no_grad():
            out = ref(torch.tensor(prompts)).logits[:, -1]
        for h in hooks:
            h.remove()
        return out

    def energy(z_ref, z, p):
        return M.sq_norm(M.features(z_ref, z, p)).mean().item()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e = Engine(load_model(folder, device="cpu", dtype="fp64"), prompts, progress=False)
    z0, zS = hf_logits(), hf_logits([(0, 0)])
    p0 = torch.softmax(z0, -1)
    S = Variant.zero(e.units([(0, 0)]))
    heads = [(layer, head) for layer in range(cfg.num_hidden_layers) for head in range(H)]
    combos = [[(1.0, Term(Variant.zero(e.units([u]))))] for u in heads]
    combos += [[(1.0, Term(S | Variant.zero(e.units([u])), S))] for u in heads if u != (0, 0)]
    got = e.energies(combos)
    want = [energy(z0, hf_logits([u]), p0) for u in heads]
    want += [energy(zS, hf_logits([(0, 0), u]), p0) for u in heads if u != (0, 0)]
    for g, w in zip(got, want):
        assert g == pytest.approx(w, rel=1e-5, abs=1e-12), (family, e.self_check)
