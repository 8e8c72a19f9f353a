"""The family matrix: tiny random models of every decoder-only family we check, built here
from `transformers` configs, saved with a tokenizer to a temp folder and loaded through
`load_model` -- no downloads. Each is checked against an *independent* plain Hugging Face
computation in float64 that shares no code with the engine: one forward per variant, head
slices edited at the input of the attention output projection (`o_proj`, `out_proj`,
`dense`, `c_proj`), the final norm and the unembedding read from the HF modules.

Checked per family: single and conditional CoAx energies; mean, freeze and patch variants;
AtP against autograd; direct logit attribution (LayerNorm, RMSNorm, Gemma's 1 + w RMSNorm,
parallel attention/MLP blocks, scaled logits). Families the bridge cannot score are refused
in words (`test_refusals`). docs/models.md holds the table this file proves.
"""
from __future__ import annotations

import functools
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch

from coax_nb import Engine, Term, Variant, load_model
from coax_nb import metrics as M
from coax_nb.adapter import UnsupportedModelError
from coax_nb.baselines import attribution_scores
from coax_nb.dla import head_dla
from coax_nb.models import ModelLoadError
from coax_nb.tasks import Task
from coax_nb.toy import ioi_vocabulary, word_tokenizer

D, L, H = 32, 2, 4
BASE = dict(hidden_size=D, num_hidden_layers=L, num_attention_heads=H, intermediate_size=64,
            max_position_embeddings=64)


def _layers(path):
    """``model -> layer -> module`` from a dotted path with ``{}`` for the layer index."""
    def get(model, layer):
        obj = model
        for part in path.format(layer).split("."):
            obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
        return obj
    return get


@dataclass(frozen=True)
class Family:
    model_type: str
    config: dict
    out_proj: str   # the attention output projection of layer {}
    final_norm: str  # the final norm module
    norm: str       # "ln" (centres), "rms", "rms1p" (scales by 1 + w)
    logit_multiplier: Callable = lambda cfg: 1.0


LLAMA_LIKE = dict(out_proj="model.layers.{}.self_attn.o_proj", final_norm="model.norm")
FAMILIES = {
    "gpt2": Family("gpt2", dict(n_embd=D, n_layer=L, n_head=H, n_positions=64),
                   "transformer.h.{}.attn.c_proj", "transformer.ln_f", "ln"),
    "gpt_neo": Family("gpt_neo", dict(hidden_size=D, num_layers=L, num_heads=H, intermediate_size=64,
                                      attention_types=[[["global", "local"], 1]], window_size=4,
                                      max_position_embeddings=64),
                      "transformer.h.{}.attn.attention.out_proj", "transformer.ln_f", "ln"),
    "gptj": Family("gptj", dict(n_embd=D, n_layer=L, n_head=H, rotary_dim=4, n_positions=64),
                   "transformer.h.{}.attn.out_proj", "transformer.ln_f", "ln"),
    "gpt_neox": Family("gpt_neox", dict(BASE, rotary_pct=0.25),
                       "gpt_neox.layers.{}.attention.dense", "gpt_neox.final_layer_norm", "ln"),
    "opt": Family("opt", dict(hidden_size=D, num_hidden_layers=L, num_attention_heads=H, ffn_dim=64,
                              word_embed_proj_dim=D, max_position_embeddings=64),
                  "model.decoder.layers.{}.self_attn.out_proj", "model.decoder.final_layer_norm", "ln"),
    "bloom": Family("bloom", dict(hidden_size=D, n_layer=L, n_head=H),
                    "transformer.h.{}.self_attention.dense", "transformer.ln_f", "ln"),
    "llama": Family("llama", dict(BASE, num_key_value_heads=2), **LLAMA_LIKE, norm="rms"),
    "mistral": Family("mistral", dict(BASE, num_key_value_heads=2, sliding_window=4), **LLAMA_LIKE,
                      norm="rms"),
    "qwen2": Family("qwen2", dict(BASE, num_key_value_heads=2), **LLAMA_LIKE, norm="rms"),
    "qwen3": Family("qwen3", dict(BASE, num_key_value_heads=2, head_dim=8), **LLAMA_LIKE, norm="rms"),
    "gemma": Family("gemma", dict(BASE, num_key_value_heads=1, head_dim=8), **LLAMA_LIKE, norm="rms1p"),
    "gemma2": Family("gemma2", dict(BASE, num_key_value_heads=2, head_dim=8, sliding_window=4), **LLAMA_LIKE,
                     norm="rms1p"),
    "gemma3": Family("gemma3_text", dict(BASE, num_key_value_heads=2, head_dim=8), **LLAMA_LIKE, norm="rms1p"),
    "phi": Family("phi", dict(BASE, partial_rotary_factor=0.5),
                  "model.layers.{}.self_attn.dense", "model.final_layernorm", "ln"),
    "phi3": Family("phi3", dict(BASE, num_key_value_heads=2, pad_token_id=None, bos_token_id=0, eos_token_id=1),
                   **LLAMA_LIKE, norm="rms"),
    "stablelm": Family("stablelm", dict(BASE, num_key_value_heads=4, partial_rotary_factor=0.25), **LLAMA_LIKE,
                       norm="ln"),
    "olmo": Family("olmo", dict(BASE), **LLAMA_LIKE, norm="ln"),  # LayerNorm without weights
    "olmo2": Family("olmo2", dict(BASE), **LLAMA_LIKE, norm="rms"),
    "falcon": Family("falcon", dict(hidden_size=D, num_hidden_layers=L, num_attention_heads=H, multi_query=True,
                                    parallel_attn=True, new_decoder_architecture=False, alibi=False),
                     "transformer.h.{}.self_attention.dense", "transformer.ln_f", "ln"),
    "gpt_bigcode": Family("gpt_bigcode", dict(n_embd=D, n_layer=L, n_head=H, n_positions=64),
                          "transformer.h.{}.attn.c_proj", "transformer.ln_f", "ln"),
    "codegen": Family("codegen", dict(n_embd=D, n_layer=L, n_head=H, rotary_dim=4, n_positions=64, n_ctx=64),
                      "transformer.h.{}.attn.out_proj", "transformer.ln_f", "ln"),
    "starcoder2": Family("starcoder2", dict(BASE, num_key_value_heads=2), **LLAMA_LIKE, norm="ln"),
    "granite": Family("granite", dict(BASE, num_key_value_heads=2, logits_scaling=4.0), **LLAMA_LIKE, norm="rms", logit_multiplier=lambda cfg: 1.0 / cfg.logits_scaling),
    "cohere": Family("cohere", dict(BASE, num_key_value_heads=2, logit_scale=0.5), **LLAMA_LIKE, norm="ln", logit_multiplier=lambda cfg: cfg.logit_scale),
    "mpt": Family("mpt", dict(d_model=D, n_layers=L, n_heads=H, expansion_ratio=2),
                  "transformer.blocks.{}.attn.out_proj", "transformer.norm_f", "ln"),
}


@functools.lru_cache(maxsize=None)
def family_model(name: str):
    """(folder, config, plain-HF float64 model, engine over a small IOI-word task)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    fam = FAMILIES[name]
    torch.manual_seed(0)
    tok = word_tokenizer(ioi_vocabulary())
    cfg = AutoConfig.for_model(fam.model_type, vocab_size=len(tok), **fam.config)
    folder = Path(tempfile.mkdtemp()) / name
    AutoModelForCausalLM.from_config(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    ref = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64).eval()
    g = torch.Generator().manual_seed(1)
    prompts = [[0] + torch.randint(2, len(tok), (9,), generator=g).tolist() for _ in range(4)]
    targets = [[int(t)] for t in torch.randint(2, len(tok), (4,), generator=g)]
    distractors = [[int(t)] for t in torch.randint(2, len(tok), (4,), generator=g)]
    task = Task(name, prompts, targets=targets, distractors=distractors)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine = Engine(load_model(folder, device="cpu", dtype="fp64"), task, progress=False)
    fallbacks = [str(w.message) for w in caught if "disagreed" in str(w.message)]
    return folder, cfg, ref, engine, fallbacks


class PlainHF:
    """The independent reference: the HF model itself, head slices of the attention output
    projection's input edited by forward pre-hooks."""

    def __init__(self, name):
        self.fam = FAMILIES[name]
        _, self.cfg, self.model, engine, _ = family_model(name)
        self.tokens = torch.tensor(engine.task.prompts)
        self.dh = getattr(self.cfg, "head_dim", None) or D // H
        self.proj = _layers(self.fam.out_proj)

    def run(self, edits=(), tokens=None, capture=False, grad=False):
        """Last-position logits; ``edits`` are (layer, head, fn(slice) -> new slice)."""
        hooks, captured = [], {}
        for layer in range(L):
            def pre(mod, args, layer=layer):
                x = args[0]
                if capture or grad:
                    captured[layer] = x
                mine = [(h, fn) for lay, h, fn in edits if lay == layer]
                if not mine:
                    return None
                x = x.clone()
                for h, fn in mine:
                    s = slice(h * self.dh, (h + 1) * self.dh)
                    x[..., s] = fn(x[..., s])
                if grad:
                    captured[layer] = x
                return (x,)
            hooks.append(self.proj(self.model, layer).register_forward_pre_hook(pre))
        try:
            with torch.set_grad_enabled(grad):
                out = self.model(self.tokens if tokens is None else tokens).logits
        finally:
            for h in hooks:
                h.remove()
        return (out[:, -1], captured) if (capture or grad) else out[:, -1]


def zero(_):
    return 0.0


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_energies_equal_plain_hf_float64(name):
    """Single and conditional energies (S = {L0H0}) of every head, within 1e-5 relative."""
    _, _, _, e, _ = family_model(name)
    hf = PlainHF(name)

    def energy(z_ref, z, p):
        return M.sq_norm(M.features(z_ref, z, p)).mean().item()

    z0, zS = hf.run(), hf.run([(0, 0, zero)])
    p0 = torch.softmax(z0, -1)
    S = Variant.zero(e.units([(0, 0)]))
    heads = [(layer, head) for layer in range(L) for head in range(H)]
    combos = [[(1.0, Term(Variant.zero(e.units([u]))))] for u in heads]
    combos += [[(1.0, Term(S | Variant.zero(e.units([u])), S))] for u in heads if u != (0, 0)]
    got = e.energies(combos)
    want = [energy(z0, hf.run([(*u, zero)]), p0) for u in heads]
    want += [energy(zS, hf.run([(0, 0, zero), (*u, zero)]), p0) for u in heads if u != (0, 0)]
    assert min(want) > 1e-8  # the check has something to see
    for g, w in zip(got, want):
        assert g == pytest.approx(w, rel=1e-5, abs=1e-12), (name, e.self_check)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_self_check_settles_on_the_expected_path(name):
    """The direct block path runs every family, its blocks given what the model passes
    them (rotary position embeddings, masks, BLOOM's batch-folded ALiBi tiled to the rows;
    ``block_inputs``), without a fallback to announce. The last block is narrowed to the
    output position except in OPT (its decoder layer flattens batch and positions before
    the MLP), a block entered from a cached run takes that run's head outputs except in
    BLOOM (its attention module adds the residual itself), and the blocks run fused kernels
    (a GELU, the norms) except in Cohere (its own LayerNorm rounds to float32; nothing else
    there to fuse)."""
    _, _, _, e, fallbacks = family_model(name)
    assert e.self_check["path"] == "direct", e.self_check
    assert e.self_check["bridge_vs_hf"] is not None and e.self_check["bridge_vs_hf"] < 1e-8
    assert not fallbacks
    assert e.self_check["block_inputs"]
    assert e.self_check["narrowed_last_block"] == (name != "opt")
    assert e.self_check["reused_head_outputs"] == (name != "bloom")
    assert e.self_check["fused_kernels"] == (name != "cohere")
    assert e.self_check["max_error"] < 1e-12  # float64: rounding only


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_mean_freeze_and_patch_equal_plain_hf(name):
    _, _, _, e, _ = family_model(name)
    hf = PlainHF(name)
    g = torch.Generator().manual_seed(2)
    source = torch.cat([hf.tokens[:, :1], torch.randint(2, e.d_vocab, (len(hf.tokens), hf.tokens.shape[1] - 1),
                                                          generator=g)], 1)
    e.add_source("other", source.tolist())
    _, clean_in = hf.run(capture=True)
    _, source_in = hf.run(tokens=source, capture=True)
    dh = hf.dh
    head = slice(1 * dh, 2 * dh)
    mean_out = clean_in[1][..., head].reshape(-1, dh).mean(0)
    zeroed_first = Variant.zero(e.units(["L0H0"]))
    cases = [
        (Variant.mean(e.units(["L1H1"])), Variant(), [(1, 1, lambda s: mean_out.expand_as(s))]),
        # freezing L1H1 at its clean output while L0H0 is gone
        (zeroed_first | Variant.freeze(e.units(["L1H1"])), zeroed_first,
         [(0, 0, zero), (1, 1, lambda s: clean_in[1][..., head])]),
        (Variant.patch(e.units(["L0H1"]), "other"), Variant(),
         [(0, 1, lambda s: source_in[0][..., head])]),
    ]
    for variant, base, edits in cases:
        got = torch.stack([lg[-1] for lg in e.logits([variant], base=base)[0]])
        want = hf.run(edits)
        assert (got - want).abs().max().item() < 1e-7 * max(1.0, want.abs().max().item()), (name, str(variant))
        assert (want - hf.run()).abs().max().item() > 1e-6  # the edit changes something


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_atp_equals_autograd_on_plain_hf(name):
    """AtP: per prompt sum over positions and d_head of z * d(logit diff)/dz, mean |.|."""
    _, _, _, e, _ = family_model(name)
    hf = PlainHF(name)
    logits, z = hf.run(grad=True)
    tgt = torch.tensor([t[0] for t in e.task.targets])
    dis = torch.tensor([d[0] for d in e.task.distractors])
    rows = torch.arange(len(tgt))
    metric = (logits[rows, tgt] - logits[rows, dis]).sum()
    grads = torch.autograd.grad(metric, [z[layer] for layer in range(L)])
    want = torch.stack([(z[layer] * gr).reshape(*gr.shape[:2], H, hf.dh).sum((1, 3))
                        for layer, gr in enumerate(grads)], 1).abs().mean(0).flatten()
    got = attribution_scores(e, methods=["atp"], progress=False)["atp"]
    assert want.max() > 1e-6
    assert torch.tensor(got) == pytest.approx(want.detach(), rel=1e-6, abs=1e-12), name


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_dla_equals_plain_hf(name):
    """Each head's write (its slice of the output projection), through the final norm
    with its scale held at the run's own, read along W_U[target] - W_U[distractor]."""
    fam = FAMILIES[name]
    _, cfg, ref, e, _ = family_model(name)
    hf = PlainHF(name)
    norm = functools.reduce(getattr, fam.final_norm.split("."), ref)
    resid = {}
    handle = norm.register_forward_pre_hook(lambda mod, args: resid.update(x=args[0][:, -1]))
    _, z = hf.run(capture=True)
    handle.remove()
    x = resid["x"]  # [n, d] entering the final norm
    eps = next((getattr(norm, a) for a in ("eps", "variance_epsilon", "epsilon") if hasattr(norm, a)),
               1e-5)  # OLMo's weightless LayerNorm hard-codes it
    weight = norm.weight if getattr(norm, "weight", None) is not None else torch.ones(D, dtype=x.dtype)
    if fam.norm == "ln":
        scale = (x.var(-1, unbiased=False, keepdim=True) + eps).sqrt()
    else:
        scale = (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    gain = 1 + weight if fam.norm == "rms1p" else weight
    lm_head = ref.get_output_embeddings().weight  # [V, d]
    tgt = torch.tensor([t[0] for t in e.task.targets])
    dis = torch.tensor([d[0] for d in e.task.distractors])
    direction = (lm_head[tgt] - lm_head[dis]) * fam.logit_multiplier(cfg)  # [n, d]
    want = []
    for layer in range(L):
        proj = hf.proj(ref, layer)
        W = proj.weight.T if type(proj).__name__ == "Conv1D" else proj.weight  # [d, H*dh]
        for h in range(H):
            s = slice(h * hf.dh, (h + 1) * hf.dh)
            write = z[layer][:, -1, s] @ W[:, s].T  # [n, d]
            if fam.norm == "ln":
                write = write - write.mean(-1, keepdim=True)
            want.append(((write / scale * gain) * direction).sum(-1).mean())
    want = torch.stack(want).detach()
    got = torch.tensor(head_dla(e))
    assert want.abs().max() > 1e-4
    # HF's RMSNorms compute in float32 even in a float64 model: their rounding (~1e-7 of the
    # scale) is relative to the largest write, not to a head's small, cancelling sum
    assert got == pytest.approx(want, rel=1e-6, abs=1e-6 * want.abs().max().item()), name


# ---------------------------------------------------------------- refusals
REFUSED = {
    # state-space / recurrent models: no attention heads at all
    "mamba": ("mamba", dict(hidden_size=D, num_hidden_layers=L), "fp64", ModelLoadError, r"no per-head attention"),
    # hybrids: some blocks have a Mamba or convolution mixer instead of heads
    "jamba": ("jamba", dict(BASE, num_key_value_heads=2, attn_layer_period=2, attn_layer_offset=1,
                            expert_layer_period=4, num_experts=1, use_mamba_kernels=False),
              "fp64", UnsupportedModelError, r"hybrid: blocks \[0\] of 2 have no attention heads"),
    "lfm2": ("lfm2", dict(BASE, num_key_value_heads=2, layer_types=["conv", "full_attention"]),
             "fp64", UnsupportedModelError, r"hybrid: blocks \[0\] of 2"),
    # expert layers whose HF kernels have no float64 version: named, with the fix
    "mixtral": ("mixtral", dict(BASE, num_key_value_heads=2, num_local_experts=4),
                "fp64", UnsupportedModelError, r"MixtralForCausalLM.*failed to run.*dtype='fp32'"),
    # the bridge itself cannot build Falcon's new decoder architecture (grouped KV)
    "falcon_new": ("falcon", dict(hidden_size=D, num_hidden_layers=L, num_attention_heads=H,
                                  new_decoder_architecture=True, num_kv_heads=2),
                   "fp64", (ModelLoadError, UnsupportedModelError), r"(?s)TransformerLens.*cannot.*Falcon"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refusals(name, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    model_type, kw, dtype, error, pattern = REFUSED[name]
    tok = word_tokenizer(ioi_vocabulary())
    cfg = AutoConfig.for_model(model_type, vocab_size=len(tok), **kw)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    with pytest.raises(error, match=pattern), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Engine(load_model(tmp_path, device="cpu", dtype=dtype), [[0, 5, 6, 7]], progress=False)


def test_mixture_of_experts_scores_in_fp32():
    """The fix the refusal names works: Mixtral in fp32 equals plain HF in fp32."""
    from transformers import AutoConfig, AutoModelForCausalLM

    tok = word_tokenizer(ioi_vocabulary())
    cfg = AutoConfig.for_model("mixtral", vocab_size=len(tok), **dict(BASE, num_key_value_heads=2, num_local_experts=4))
    torch.manual_seed(0)
    folder = Path(tempfile.mkdtemp())
    AutoModelForCausalLM.from_config(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    ref = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()  # no fp64 kernels either
    prompts = [[0, 5, 9, 12, 7, 30, 4, 8]] * 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e = Engine(load_model(folder, device="cpu", dtype="fp32"), prompts, progress=False)
    proj = _layers(LLAMA_LIKE["out_proj"])
    handle = proj(ref, 1).register_forward_pre_hook(lambda m, a: (torch.cat([a[0][..., :8] * 0, a[0][..., 8:]], -1),))
    with torch.no_grad():
        want = ref(torch.tensor(prompts)).logits[:, -1]
    handle.remove()
    got = torch.stack([lg[-1] for lg in e.logits([Variant.zero(e.units(["L1H0"]))])[0]])
    assert (got - want).abs().max().item() < 1e-5


def test_heads_that_are_not_separable_are_refused(monkeypatch):
    """A bridge whose per-head hook gives the attention output already mixed ([batch, pos,
    d_model], as some fused attention implementations expose it) has no head to ablate."""
    from coax_nb.adapter import ModelAdapter

    folder = family_model("gpt2")[0]
    model = load_model(folder, device="cpu", dtype="fp64")
    monkeypatch.setattr(ModelAdapter, "z_hook", staticmethod(lambda layer: f"blocks.{layer}.attn.hook_out"))
    monkeypatch.setattr(ModelAdapter, "check_scorable", classmethod(lambda cls, m: None))
    with pytest.raises(UnsupportedModelError, match=r"shape \(4, 10, 32\), not \[batch, position, 4 heads, 8\]"
                                                     r".*not separable"):
        Engine(model, [[0] + list(range(5, 14))] * 4, progress=False)
