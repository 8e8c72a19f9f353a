"""What the side-by-side benchmarks share: the model shape on the command line, a
random-weight GPT-2 of that shape saved to a folder (loaded from there, as users load
theirs), random prompts that start with BOS, and a primary set in the late layers."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch


def add_shape_arguments(ap: argparse.ArgumentParser, *, layers: int = 12, heads: int = 12, d_model: int = 768,
                        prompts: int = 16, device: str = "cpu") -> None:
    """GPT-2-small's shape by default, 16 prompts x 16 tokens, on the CPU; a script
    passes its own defaults."""
    ap.add_argument("--layers", type=int, default=layers)
    ap.add_argument("--heads", type=int, default=heads)
    ap.add_argument("--d-model", type=int, default=d_model)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--prompts", type=int, default=prompts)
    ap.add_argument("--length", type=int, default=16)
    ap.add_argument("--device", default=device)


def random_prompts(args) -> torch.Tensor:
    """``[prompts, length]`` token ids, BOS (0) first, the same for every run of a script."""
    g = torch.Generator().manual_seed(1)
    prompts = torch.randint(2, args.vocab, (args.prompts, args.length), generator=g)
    prompts[:, 0] = 0
    return prompts


def build_random_llama(folder: Path, args) -> Path:
    """A Llama of the requested shape (rotary, RMSNorm, SwiGLU MLP of width 8/3 d_model:
    the same multiply-adds per token as GPT-2's 4 d_model MLP), seeded random weights (std
    0.02), saved to ``folder`` with a word tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    return _save_random(folder, args, lambda tok: LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=args.d_model, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, num_key_value_heads=args.heads, intermediate_size=8 * args.d_model // 3,
        max_position_embeddings=max(64, args.length), bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, initializer_range=0.02, tie_word_embeddings=False)))


def build_random_bloom(folder: Path, args) -> Path:
    """A BLOOM of the requested shape (ALiBi positions, MLP of width 4 d_model), seeded
    random weights (std 0.02), saved to ``folder`` with a word tokenizer."""
    from transformers import BloomConfig, BloomForCausalLM

    return _save_random(folder, args, lambda tok: BloomForCausalLM(BloomConfig(
        vocab_size=len(tok), hidden_size=args.d_model, n_layer=args.layers, n_head=args.heads,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, initializer_range=0.02)))


def _save_random(folder: Path, args, make) -> Path:
    """``make(tokenizer)``'s model, seeded, saved to ``folder/m`` with a word tokenizer of
    ``args.vocab`` tokens."""
    from coax_nb.toy import SPECIALS, word_tokenizer

    tok = word_tokenizer(list(SPECIALS) + [f"w{i}" for i in range(args.vocab - len(SPECIALS))])
    torch.manual_seed(0)
    path = Path(folder) / "m"
    make(tok).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return path


def build_random_gpt2(folder: Path, args) -> Path:
    """A GPT-2 of the requested shape with seeded random weights (std 0.02), saved to ``folder``."""
    from coax_nb.toy import build_toy_model

    torch.manual_seed(0)
    return build_toy_model(Path(folder) / "m", n_layers=args.layers, n_heads=args.heads, d_model=args.d_model,
                           vocab_size=args.vocab, n_ctx=max(64, args.length), init_std=0.02)


def late_primaries(n_layers: int) -> list[tuple[int, int]]:
    """S = two heads three layers from the top and one two from the top (L9H0, L9H1, L10H0
    on 12 layers), where IOI's name movers sit in GPT-2 small."""
    return [(n_layers - 3, 0), (n_layers - 3, 1), (n_layers - 2, 0)] if n_layers >= 3 else [(0, 0)]


# the random models a script can build, by the --family name
BUILDERS = {"gpt2": build_random_gpt2, "llama": build_random_llama, "bloom": build_random_bloom}
