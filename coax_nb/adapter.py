"""Every touch of TransformerLens's ``TransformerBridge`` internals, in one place.

Hook names, the block list, the final norm, the unembedding and the weight
matrices are read here and nowhere else, so a new architecture or a new
TransformerLens release is a change to this file alone.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Optional

import torch


class UnsupportedModelError(RuntimeError):
    """The model cannot be scored head by head; the message says why and what to use instead."""


@dataclass(frozen=True)
class PerRow:
    """A block input whose first dimension holds one slice per prompt row, folded in with
    something else (see :meth:`ModelAdapter.block_inputs`): tiled to the rows of each call."""

    tensor: torch.Tensor


class ModelAdapter:
    """What the engine and the methods need from a bridge, under stable names."""

    def __init__(self, model):
        self.check_scorable(model)
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
        self._keeps_logits: Optional[bool] = None  # whether the forward takes logits_to_keep (found on first use)
        self._attention_returns: Optional[int] = None  # see attention_from
        self._fusable: Optional[list] = None  # see fusable

    # ------------------------------------------------------------------ hook names
    @staticmethod
    def z_hook(layer: int) -> str:
        """Per-head outputs ``[batch, pos, head, d_head]``: the input of the output projection."""
        return f"blocks.{layer}.attn.hook_z"

    def mlp_hook(self, layer: int) -> Optional[str]:
        """A block's MLP output ``[batch, pos, d_model]``, read at the MLP's output projection
        (BLOOM's MLP module adds the residual itself, so its module output is not the MLP's
        write); None where the block has no such MLP (mixture-of-experts)."""
        names = getattr(self.model, "hook_dict", {})
        for name in (f"blocks.{layer}.mlp.out.hook_out", f"blocks.{layer}.hook_mlp_out"):
            if name in names:
                return name
        return None

    def mlp_in_hook(self, layer: int) -> Optional[str]:
        """A block's MLP input ``[batch, pos, d_model]`` (after its norm); None where the
        bridge has no such hook."""
        name = f"blocks.{layer}.mlp.hook_in"
        return name if name in getattr(self.model, "hook_dict", {}) else None

    @staticmethod
    def pattern_hook(layer: int) -> str:
        """Attention patterns ``[batch, head, query, key]`` (after the softmax)."""
        return f"blocks.{layer}.attn.hook_pattern"

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

    @classmethod
    def check_scorable(cls, model) -> None:
        """Refuse a model whose blocks do not all have attention heads (state-space,
        recurrent and convolutional hybrids): a score per head of every layer is what
        every method here assumes, and a layer without heads would be skipped silently."""
        names = getattr(model, "hook_dict", {})
        n_layers = model.cfg.n_layers
        missing = [layer for layer in range(n_layers) if cls.z_hook(layer) not in names]
        arch = getattr(model.cfg, "architecture", None) or type(model).__name__
        if len(missing) == n_layers:
            raise UnsupportedModelError(
                f"{arch} exposes no per-head attention outputs (blocks.L.attn.hook_z); CoAx scores attention "
                "heads, so it needs a transformer with multi-head attention in every block")
        if missing:
            raise UnsupportedModelError(
                f"{arch} is a hybrid: blocks {missing} of {n_layers} have no attention heads (a state-space, "
                "recurrent or convolution mixer instead); CoAx scores attention heads in every block and "
                "cannot score this model. Use a model whose every block is multi-head attention")

    # ------------------------------------------------------------------ running
    @contextmanager
    def hooks(self, fwd_hooks):
        with self.model.hooks(fwd_hooks=fwd_hooks):
            yield

    def forward(self, tokens: torch.Tensor, positions: Optional[list] = None) -> torch.Tensor:
        """The bridge's forward: logits ``[n, T, V]``, or ``[n, P, V]`` at ``positions`` only."""
        if positions is None:
            return self.model(tokens)
        return self._at_positions(self.model, tokens, positions)

    def _at_positions(self, forward, tokens: torch.Tensor, positions: list) -> torch.Tensor:
        """``forward``'s logits at ``positions``, unembedding those alone where the model
        takes Hugging Face's ``logits_to_keep`` (with a large vocabulary, unembedding every
        position is much of a short prompt's forward); otherwise sliced afterwards."""
        if self._keeps_logits is not False:
            try:
                logits = forward(tokens, logits_to_keep=torch.as_tensor(positions, device=tokens.device))
            except TypeError:  # a forward without the argument
                self._keeps_logits = False
            else:
                logits = getattr(logits, "logits", logits)
                if logits.shape[1] == len(positions):  # else the argument was ignored
                    self._keeps_logits = True
                    return logits
                self._keeps_logits = False
                return logits[:, positions]
        logits = forward(tokens)
        return getattr(logits, "logits", logits)[:, positions]

    def reference_forward(self, tokens: torch.Tensor, positions: list) -> Optional[torch.Tensor]:
        """The wrapped Hugging Face model's own forward (logits at ``positions``), bypassing
        the bridge; None when the bridge wraps no such model."""
        original = getattr(self.model, "original_model", None)
        if original is None:
            return None
        return self._at_positions(lambda t, **kw: original(input_ids=t, **kw), tokens, positions)

    def forward_from(self, resid: torch.Tensor, layer: int) -> torch.Tensor:
        """The bridge's own forward from the residual entering block ``layer`` (full logits)."""
        return self.model(resid, start_at_layer=layer)

    def block(self, resid: torch.Tensor, layer: int, inputs: Optional[tuple] = None) -> torch.Tensor:
        """Call block ``layer`` directly on the residual entering it (the fast path: the
        engine runs a variant block by block from a cached or shared residual), with
        ``inputs`` (:meth:`block_inputs`) when the block needs more than the residual."""
        args, kwargs = inputs or ((), {})
        x = self.model.blocks[layer](resid, *args, **kwargs)
        return x[0] if isinstance(x, tuple) else x

    @contextmanager
    def attention_from(self, layer: int, z: torch.Tensor):
        """Within: block ``layer``'s attention returns the output projection of ``z``
        (``[rows, positions, heads, d_head]``, per-head outputs known beforehand) without
        computing queries, keys, values or patterns. The engine uses it where a block's
        input is a cached run's, whose per-head outputs it has; the self-check keeps it only
        where it reproduces the bridge. What else the attention returns (its weights) is
        left None, in the form a real call returns, found on the first use."""
        attn = self.model.blocks[layer].attn
        project = attn.o.original_component

        def forward(*args, **kwargs):
            if self._attention_returns is None:  # 0: a bare tensor; else a tuple's length
                real = type(attn).forward(attn, *args, **kwargs)
                self._attention_returns = len(real) if isinstance(real, tuple) else 0
            out = project(z.flatten(-2))
            return (out,) + (None,) * (self._attention_returns - 1) if self._attention_returns else out

        # in the instance's __dict__: the bridge component forwards attribute writes to the
        # module it wraps, and nn.Module calls self.forward
        attn.__dict__["forward"] = forward
        try:
            yield
        finally:
            attn.__dict__.pop("forward", None)

    def fusable(self, layer: int) -> list[tuple[torch.nn.Module, Callable]]:
        """Block ``layer``'s modules that compute a formula as a string of elementwise Python
        operations, each with PyTorch's one fused kernel of the same formula
        (:meth:`fused_kernels`): on a CPU these passes over the activations cost a good part
        of what the matmuls do.

        - The tanh approximation of GELU (Hugging Face's ``gelu_new``: GPT-2, GPT-J,
          GPT-Neo, Phi, CodeGen; seven passes over the MLP's width, longer than its two
          matmuls on a CPU) becomes ``gelu(x, approximate="tanh")``. Exact types only, whose
          formula is known to be that one (BLOOM's GELU rounds its constant, so is left).
        - The bridge's norms become the wrapped model's own norm module where that computes
          the same: where the bridge computes its statistics on top of calling it (for
          ``hook_scale``; RMSNorm), or where it is PyTorch's ``LayerNorm`` and the bridge
          writes its formula out in Python. (Cohere's own LayerNorm rounds to float32, which the
          bridge does not, so it is left.)"""
        if self._fusable is None:
            from transformers.activations import AccurateGELUActivation, NewGELUActivation
            from transformer_lens.model_bridge.generalized_components.normalization import NormalizationBridge

            gelus = (NewGELUActivation, AccurateGELUActivation)
            self._fusable = []
            for blk in self.model.blocks:
                found = [(m, _gelu_tanh) for m in blk.modules() if type(m) in gelus]
                found += [(m, m.original_component) for m in blk.modules()
                          if isinstance(m, NormalizationBridge) and _computes_as_its_module(m)]
                self._fusable.append(found)
        return self._fusable[layer]

    @contextmanager
    def fused_kernels(self, layer: Optional[int] = None):
        """Within: block ``layer``'s :meth:`fusable` modules (every block's, without a layer)
        run as their fused kernels (which differ by rounding: ≤ 1e-15 in float64), a norm
        only while no hook is attached to it. The engine runs its blocks and its cached runs
        so; the self-check compares them with the model's own forward."""
        fusable = [f for blk in (range(self.n_layers) if layer is None else [layer]) for f in self.fusable(blk)]
        swapped = [m for m, _ in fusable if not _has_hooks(m)]
        replacement = dict(fusable)
        for m in swapped:  # in the instance's __dict__, as in attention_from
            m.__dict__["forward"] = replacement[m]
        try:
            yield
        finally:
            for m in swapped:
                m.__dict__.pop("forward", None)

    def block_inputs(self, tokens: torch.Tensor) -> list[tuple[tuple, dict]]:
        """Per block, what the model passes it besides the residual (the attention mask,
        rotary position embeddings, position ids, ALiBi biases, ...), captured from a forward
        of ``tokens`` (one prompt), so that batch-shaped inputs broadcast over any number of
        rows of that length. A tensor whose first dimension folds the batch in with
        something else (BLOOM's ALiBi, ``[batch * heads, 1, T]``) cannot broadcast; it is
        found by a second capture from two copies of the prompt, and marked
        :class:`PerRow` for :meth:`inputs_for_rows` to tile. The key-value cache is left out."""
        one, two = self._capture_block_inputs(tokens[:1]), self._capture_block_inputs(tokens[:1].repeat(2, 1))

        def mark(a, b):
            if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
                folded = a.ndim > 0 and a.shape[0] > 1 and b.shape[0] == 2 * a.shape[0]
                return PerRow(a) if folded else a
            if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
                return tuple(mark(x, y) for x, y in zip(a, b))
            return a

        return [(mark(args1, args2), {k: mark(v, kwargs2.get(k)) for k, v in kwargs1.items()})
                for (args1, kwargs1), (args2, kwargs2) in zip(one, two)]

    @staticmethod
    def inputs_for_rows(inputs: tuple[tuple, dict], rows: int) -> tuple[tuple, dict]:
        """One block's :meth:`block_inputs` for ``rows`` prompts of its length: each
        :class:`PerRow` tensor tiled ``rows`` times along its first dimension."""
        def tile(value):
            if isinstance(value, PerRow):
                t = value.tensor
                return t.repeat(rows, *[1] * (t.ndim - 1))
            if isinstance(value, tuple):
                return tuple(tile(v) for v in value)
            return value

        args, kwargs = inputs
        return tile(args), {k: tile(v) for k, v in kwargs.items()}

    def _capture_block_inputs(self, tokens: torch.Tensor) -> list[tuple[tuple, dict]]:
        from transformers.cache_utils import Cache

        def plain(key, value):
            return False if key == "use_cache" else None if isinstance(value, Cache) else value

        got: list = [None] * self.n_layers

        def capture(layer):
            def hook(module, args, kwargs):
                got[layer] = (tuple(plain(None, a) for a in args[1:]),
                              {k: plain(k, v) for k, v in kwargs.items() if k != "hidden_states"})
            return hook

        handles = [blk.register_forward_pre_hook(capture(layer), with_kwargs=True)
                   for layer, blk in enumerate(self.model.blocks)]
        try:
            with torch.no_grad():
                self.model(tokens)
        finally:
            for h in handles:
                h.remove()
        return got

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

    def final_norm_gain(self) -> torch.Tensor:
        """The final norm's elementwise gain ``[d_model]``, read off the norm itself rather
        than its ``weight`` (Gemma's RMSNorm multiplies by ``1 + weight``, OLMo's LayerNorm
        has no weight): for a probe ``p`` of zero mean and mean square ``c**2`` with ``c``
        large enough that eps does not count, ``norm(p) - norm(-p) = 2 * p / c * gain``
        (any bias cancels)."""
        d = self.d_model
        param = next(self.model.parameters())
        device = next(self.model.ln_final.parameters(), param).device  # its own device under device_map
        c = 1e3
        gains = []
        for shift in (0, 1):  # two probes, so that a zero entry of one (odd d) is covered by the other
            p = torch.ones(d, dtype=torch.float64)
            p[1::2] = -1
            if d % 2:
                p[-1] = 0
                p = p * (d / (d - 1)) ** 0.5
            p = torch.roll(p, shift) * c
            x = p.to(device, param.dtype)
            with torch.no_grad():
                diff = (self.model.ln_final(x[None, None]) - self.model.ln_final(-x[None, None]))[0, 0].double()
            gains.append((diff.cpu() * c / (2 * p), p != 0))
        (g0, ok0), (g1, _) = gains
        probed = torch.where(ok0, g0, g1)
        # the probe is as precise as the model's dtype; snap to the exact parameter when it is one
        weight = getattr(getattr(self.model.ln_final, "_original_component", None), "weight", None)
        exact = [torch.ones(d, dtype=torch.float64)]
        if weight is not None:
            w = weight.detach().double().cpu()
            exact = [w, 1 + w] + exact
        tol = 1e-3 * max(1.0, probed.abs().max().item())
        return next((g for g in exact if (g - probed).abs().max().item() <= tol), probed)

    def finish_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """What the Hugging Face model does to the unembedding's output before returning
        it: a scale (:meth:`logit_multiplier`) and Gemma 2's tanh soft cap."""
        scale = self.logit_multiplier()
        if scale != 1.0:
            logits = logits * scale
        config = getattr(getattr(self.model, "original_model", None), "config", None)
        cap = getattr(config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    def logit_multiplier(self) -> float:
        """Scalar the HF model applies to the unembedding's output (Cohere's ``logit_scale``,
        Granite's ``1 / logits_scaling``); 1 for most families."""
        config = getattr(getattr(self.model, "original_model", None), "config", None)
        scale = float(getattr(config, "logit_scale", None) or 1.0)
        return scale / float(getattr(config, "logits_scaling", None) or 1.0)

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


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.gelu(x, approximate="tanh")


def _computes_as_its_module(norm) -> bool:
    """Whether a norm bridge's output is its wrapped module's (its native path returns that
    module's output when no hook edits it), or the same formula (PyTorch's LayerNorm)."""
    module = getattr(norm, "original_component", None)
    if not isinstance(module, torch.nn.Module):
        return False
    native = norm.use_native_layernorm_autograd or getattr(norm.config, "layer_norm_folding", False)
    return bool(native) or type(module) is torch.nn.LayerNorm


def _has_hooks(module: torch.nn.Module) -> bool:
    """Whether a hook is attached to ``module``'s hook points (a norm then keeps the
    bridge's forward, which fires them)."""
    from transformer_lens.hook_points import HookPoint

    return any(m._forward_hooks or m._forward_pre_hooks for m in module.modules() if isinstance(m, HookPoint))


def restore_moved_buffers(model) -> None:
    """Put back what a newer transformers moved and the installed TransformerLens still
    reads. transformers 5.24 rewrote CodeGen's attention: the rotary table
    ``embed_positions`` moved from every attention module to one model-level
    ``rotary_emb``, and ``scale_attn`` (sqrt of the head size, divided by) became
    ``scaling`` (its inverse, multiplied by); TransformerLens 4.3's CodeGen attention still
    reads both from the attention module. Each attention module gets them back: the table
    as a non-persistent buffer (saving is unchanged, ``.to()`` moves and casts it with the
    model), the scale as the float32 tensor the old module held."""
    hf = getattr(model, "original_model", None)
    table = getattr(getattr(getattr(hf, "transformer", None), "rotary_emb", None), "embed_positions", None)
    if not isinstance(table, torch.Tensor):
        return
    for module in hf.modules():
        if type(module).__name__ != "CodeGenAttention":
            continue
        if not hasattr(module, "embed_positions"):
            module.register_buffer("embed_positions", table, persistent=False)
        if not hasattr(module, "scale_attn"):
            module.scale_attn = torch.sqrt(torch.tensor(float(module.head_dim), dtype=torch.float32))
