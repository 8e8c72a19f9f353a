"""What the side-by-side benchmarks share: the model shape on the command line, a
random-weight GPT-2 of that shape saved to a folder (loaded from there, as users load
theirs), random prompts that start with BOS, and a primary set in the late layers."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch


def add_shape_arguments(ap: argparse.ArgumentParser) -> None:
    """GPT-2-small's shape by default, 16 prompts x 16 tokens, on the CPU."""
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--length", type=int, default=16)
    ap.add_argument("--device", default="cpu")


def random_prompts(args) -> torch.Tensor:
    """``[prompts, length]`` token ids, BOS (0) first, the same for every run of a script."""
    g = torch.Generator().manual_seed(1)
    prompts = torch.randint(2, args.vocab, (args.prompts, args.length), generator=g)
    prompts[:, 0] = 0
    return prompts


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
