"""Small GPT-2-architecture models with a word-level tokenizer, saved as HF-format
directories and loaded back through ``load_model`` (the same local-path code users
take). Tests, benchmarks and the organism builders use them; nothing is downloaded.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import torch

from .compat import renamed
from .tasks import IOI_NAMES, IOI_OBJECTS, IOI_PLACES, IOI_TEMPLATES

SPECIALS = ("<bos>", "<unk>")


def ioi_vocabulary(extra: Sequence[str] = ()) -> list[str]:
    """Every word the default IOI templates use, plus ``extra``."""
    words = set(IOI_NAMES) | set(IOI_PLACES) | set(IOI_OBJECTS) | set(extra)
    for t in IOI_TEMPLATES:
        for w in t.replace(",", " , ").replace(".", " . ").split():
            if not w.startswith("{"):
                words.add(w)
    return list(SPECIALS) + sorted(words)


def word_tokenizer(words: Sequence[str]):
    """A ``PreTrainedTokenizerFast`` over ``words`` (whitespace split, punctuation split off)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = list(words)
    for s in SPECIALS:
        if s not in words:
            words.insert(SPECIALS.index(s), s)
    vocab = {w: i for i, w in enumerate(words)}
    if len(vocab) != len(words):
        raise ValueError("the vocabulary has repeated words")
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<bos>",
                                   unk_token="<unk>", pad_token="<bos>")


@renamed(seed="rng_seed")
def build_toy_model(
    path: os.PathLike,
    n_layers: int = 2,
    n_heads: int = 4,
    d_model: int = 32,
    words: Optional[Sequence[str]] = None,
    vocab_size: Optional[int] = None,
    n_ctx: int = 64,
    rng_seed: int = 0,
    d_mlp: Optional[int] = None,
    init_std: float = 0.2,
) -> Path:
    """Save a randomly initialised GPT-2-architecture model to ``path``.

    ``words`` gives the tokenizer's vocabulary (default: the IOI vocabulary);
    ``vocab_size`` instead makes ``w0 .. wN`` words (e.g. 50257 for GPT-2's size).
    ``init_std`` is larger than GPT-2's 0.02 so that a random model's heads matter;
    ``rng_seed`` seeds the initialisation.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    if words is None:
        words = ioi_vocabulary() if vocab_size is None else list(SPECIALS) + [f"w{i}" for i in range(vocab_size - 2)]
    tok = word_tokenizer(words)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=n_ctx, n_embd=d_model, n_layer=n_layers, n_head=n_heads,
                     n_inner=d_mlp, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                     initializer_range=init_std, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(rng_seed)
    model = GPT2LMHeadModel(cfg).eval()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
