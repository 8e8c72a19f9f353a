"""Every touch of TransformerLens's ``TransformerBridge`` internals, in one place.

Hook names, the block list, the final norm, the unembedding and the weight
matrices are read here and nowhere else, so a new architecture or a new
TransformerLens release is a change to this file alone.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Optional

import torch


class ModelAdapter:
    """What the engine and the methods need from a bridge, under stable names."""

    def __init__(self, model):
        self.model = model
        cfg = model.cfg
        self.n_layers, self.n_heads = cfg.n_layers, cfg.n_heads
        self.d_head, self.d_model, self.d_vocab = cfg.d_head, cfg.d_model, cfg.d_vocab
        self.n_ctx = cfg.n_ctx
        archs = getattr(cfg, "architecture", None) or getattr(getattr(model, "original_model", None), "config", None)
        self.name = archs if isinstance(archs, str) else type(model).__name__
        self.d_mlp = getattr(cfg, "d_mlp", None) or 4 * self.d_model
        # LayerNorm centres its input before scaling; RMSNorm does not
        self.final_norm_centers = str(getattr(cfg, "normalization_type", "LN") or "LN").upper().startswith("LN")

    # ------------------------------------------------------------------ hook names
    @staticmethod
    def z_hook(layer: int) -> str:
        """Per-head outputs ``[batch, pos, head, d_head]``: the input of the output projection."""
        return f"blocks.{layer}.attn.hook_z"

    @staticmethod
    def block_in_hook(layer: int) -> str:
        return f"blocks.{layer}.hook_in"

    @staticmethod
    def block_out_hook(layer: int) -> str:
        return f"blocks.{layer}.hook_out"

    FINAL_SCALE_HOOK = "ln_final.hook_scale"

    @staticmethod
    def exposes_head_outputs(model) -> bool:
        """Whether the bridge has per-head attention outputs to ablate."""
        names = getattr(model, "hook_dict", {})
        return any(n.endswith("attn.hook_z") for n in names)

    # ------------------------------------------------------------------ running
    @contextmanager
    def hooks(self, fwd_hooks):
        with self.model.hooks(fwd_hooks=fwd_hooks):
            yield

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(tokens)

    def forward_from(self, resid: torch.Tensor, layer: int) -> torch.Tensor:
        """The bridge's own forward from the residual entering block ``layer`` (full logits)."""
        return self.model(resid, start_at_layer=layer)

    def blocks_from(self, resid: torch.Tensor, layer: int) -> torch.Tensor:
        """Call blocks ``layer..`` directly on the residual (the fast prefix-skipping path)."""
        x = resid
        for blk in self.model.blocks[layer:]:
            x = blk(x)
            if isinstance(x, tuple):
                x = x[0]
        return x

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.ln_final(x)

    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.unembed(x)

    # ------------------------------------------------------------------ weights
    @property
    def W_U(self) -> torch.Tensor:  # [d_model, vocab]
        return self.model.W_U

    @property
    def b_U(self) -> torch.Tensor:  # [vocab]
        return self.model.b_U

    @property
    def W_O(self) -> torch.Tensor:  # [layers, heads, d_head, d_model]
        return self.model.W_O

    @property
    def W_V(self) -> torch.Tensor:  # [layers, heads, d_model, d_head]
        return self.model.W_V

    @property
    def final_norm_weight(self) -> torch.Tensor:
        return self.model.ln_final._original_component.weight

    def input_device(self, requested: Optional[torch.device]) -> torch.device:
        """Where token inputs go: the embedding's device when the model is spread over
        several devices (``device_map``), else the requested or the model's device."""
        devices = {p.device for p in self.model.parameters()}
        if len(devices) > 1:
            embed = getattr(self.model, "embed", None)
            return embed.W_E.device if hasattr(embed, "W_E") else next(self.model.parameters()).device
        return requested if requested is not None else next(self.model.parameters()).device

    def spread_over_devices(self) -> bool:
        return len({p.device for p in self.model.parameters()}) > 1
