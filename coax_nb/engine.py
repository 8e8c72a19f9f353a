"""The batched ablation engine: the only place that runs a model.

A :class:`Variant` says, per head, keep / zero / replace-with-mean /
replace-with-cached (the clean run's output: *freeze*; a counterfactual run's
output: *patch*). The engine runs many variants in one batched forward (rows =
variants x prompts) with a per-row mask applied by one hook per layer on
``blocks.L.attn.hook_z``.

Five savings over the naive one-forward-per-variant loop, none of which changes
the numbers:

* **prefix reuse** -- a variant that agrees with a cached *base* run below its
  first touched layer ``l`` starts from that run's residual entering block ``l``
  (single ablations start from the clean run; ``S + {u}`` from the ``S`` run);
* **shared prefixes** -- variants run together go block by block, and the blocks
  below the layer where two variants part are computed once: ``{u}`` and
  ``S + {u}`` share every block below S; the pairs ``{u, v}`` of one ``u`` share
  ``{u}``'s blocks below ``v``;
* **output-position unembedding** -- only the positions the metric reads go
  through ``ln_final`` and the unembedding, and with one output position the last
  block computes its head outputs and MLP there alone (keys and values everywhere);
* **batching** -- variants share one forward, in chunks sized to memory that halve
  on out-of-memory and carry on.

Prompts of different lengths are bucketed by length (no padding), so results do
not depend on how prompts are grouped.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence, Union

import numpy as np
import torch

from . import metrics as M
from .adapter import ModelAdapter, UnsupportedModelError
from .models import resolve_device, weights_fingerprint
from .resources import plan_batch
from .tasks import Task, check_count, output_positions, tokenizer_fingerprint
from .units import MLP, Unit, parse_units
from .variant import CLEAN, MEAN, RESAMPLE_SOURCE, ZERO, Variant, ablation_action


@dataclass(frozen=True)
class Term:
    """One measured change: ``variant`` run from ``base`` (which it shares the layers
    below its first edit with) and compared with ``base``'s logits,
    ``d = z_base - z_variant``. ``metric`` is the distribution of the Fisher metric:
    ``"clean"`` (p0, the paper's default) or ``"base"`` (the base run's own)."""

    variant: Variant
    base: Variant = CLEAN
    metric: str = "clean"


@dataclass
class Bucket:
    """Prompts of one length: their indices in the prompt set and token tensor."""

    length: int
    index: list[int]
    tokens: torch.Tensor  # [n, length]
    positions: list[int]  # output positions read in this bucket


@dataclass(frozen=True)
class BatchView:
    """What a per-batch computation may know: an id for the engine's per-batch methods,
    the number of prompts, the output positions and the prompts' sub-task."""

    id: int
    size: int
    positions: list
    task: Optional[Task]


@dataclass
class BaseRun:
    """A cached run: per bucket the residual entering each block, per-head outputs
    ``z`` and the output-position logits."""

    variant: Variant
    resid: list[list[torch.Tensor]] = field(default_factory=list)  # [bucket][layer] -> [n, T, d]
    z: list[list[torch.Tensor]] = field(default_factory=list)  # [bucket][layer] -> [n, T, H, Dh]
    logits: list[torch.Tensor] = field(default_factory=list)  # [bucket] -> [n, P, V]
    scale: list[torch.Tensor] = field(default_factory=list)  # [bucket] -> [n, P, 1] ln_final scale
    mlp: list[list[torch.Tensor]] = field(default_factory=list)  # [bucket][layer] -> [n, T, d]; sources only


_FALLBACKS_SAID: set = set()  # (architecture, paths) whose fallback was already announced


@dataclass
class EngineStats:
    forward_rows: int = 0  # prompt-rows pushed through (part of) the model
    block_rows: int = 0  # prompt-rows x blocks actually computed
    variants: int = 0
    chunks: int = 0
    oom_halvings: int = 0
    seconds: float = 0.0
    backward_rows: int = 0  # prompt-rows of backward passes (gradient baselines)
    attention_reused_rows: int = 0  # block_rows whose attention came from a cached run's head outputs
    narrowed_rows: int = 0  # block_rows of last blocks computed at the output position alone


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


class Engine:
    """Runs ablation variants of one model over one prompt set.

    ``Engine(model, task_or_prompts, position_mode=None, device=None, max_chunk_rows=None,
    progress=True)``. ``position_mode`` defaults to the task's. The clean run is cached
    on construction (and checked for finite logits).
    """

    def __init__(
        self,
        model,
        prompts: Union[Task, Sequence[Sequence[int]]],
        position_mode: Optional[str] = None,
        device=None,
        max_chunk_rows: Optional[int] = None,
        max_bucket_prompts: int = 256,
        progress: bool = True,
    ):
        max_bucket_prompts = check_count(max_bucket_prompts, "max_bucket_prompts",
                                         why="the most prompts of one length run together")
        if max_chunk_rows is not None:
            max_chunk_rows = check_count(max_chunk_rows, "max_chunk_rows", why="rows of one forward pass")
        if not (hasattr(model, "cfg") and hasattr(model, "hook_dict")):
            hint = (" (the arguments look swapped: the model comes first, the task second)"
                    if isinstance(model, Task) else "")
            raise TypeError(f"Engine needs a TransformerLens model loaded with coax_nb.load_model(...), got "
                            f"{type(model).__name__}{hint}")
        if isinstance(prompts, (str, bytes)):
            raise TypeError("prompts must be a Task or a list of token-id lists, got text; build a task from text "
                            "with custom_task(model, [text, ...]) or ioi_task(model)")
        self.model = model
        self.arch = arch = ModelAdapter(model)
        self.n_layers, self.n_heads = arch.n_layers, arch.n_heads
        self.d_head, self.d_model, self.d_vocab = arch.d_head, arch.d_model, arch.d_vocab
        if arch.spread_over_devices():  # device_map: inputs go where the embedding is, placement stays
            self.device = arch.input_device(None)
        else:
            self.device = arch.input_device(resolve_device(device) if device is not None else None)
            if next(model.parameters()).device != self.device:
                model.to(self.device)
        self.dtype = next(model.parameters()).dtype
        self.progress = progress
        self.task = prompts if isinstance(prompts, Task) else None
        if isinstance(prompts, Task):
            fp = tokenizer_fingerprint(getattr(model, "tokenizer", None))
            if prompts.tokenizer_fingerprint and fp and prompts.tokenizer_fingerprint != fp:
                raise ValueError(
                    f"task {prompts.name!r} was tokenized with a different tokenizer than this model's; "
                    "rebuild the task from this model (e.g. ioi_task(model))"
                )
            self.position_mode = position_mode or prompts.position_mode
            token_lists = prompts.prompts
        else:
            if isinstance(prompts, torch.Tensor):
                check_not_right_padded(prompts, getattr(getattr(model, "tokenizer", None), "pad_token_id", None))
                prompts = prompts.tolist()
            token_lists = [_token_ids(p, i) for i, p in enumerate(prompts)]
            self.position_mode = position_mode or "last"
        output_positions(2, self.position_mode)
        if len(token_lists) == 0:
            raise ValueError("the prompt set is empty; give at least one prompt")
        self.n_prompts = len(token_lists)
        self._check_tokens(token_lists)
        self._prompts_hash = hashlib.sha256(json.dumps(token_lists, separators=(",", ":")).encode()).hexdigest()[:16]
        if self.task is not None:
            self._check_answers(self.task)
        self.buckets = self._bucket(token_lists, max_bucket_prompts)
        self.stats = EngineStats()
        self._max_chunk_rows = max_chunk_rows
        self._bases: dict[Variant, BaseRun] = {}
        self._sources: dict[str, BaseRun] = {}  # runs whose unit outputs variants copy in
        self._hook_names = [arch.z_hook(layer) for layer in range(self.n_layers)]
        self._mlp_hooks = [arch.mlp_hook(layer) for layer in range(self.n_layers)]  # None: no MLP to ablate
        self._geometries: dict = {}
        self._path = "direct"
        # the last block's head outputs and MLP at the output position only (self-checked)
        self._narrow = self.arch.mlp_in_hook(self.n_layers - 1) is not None
        # blocks called with what the model passes them besides the residual (rotary
        # position embeddings, attention masks), captured once per prompt length
        self._with_inputs = False
        self._block_inputs: dict = {}  # length -> captured; (length, rows) -> for that many rows
        # a block entered straight from a cached run takes that run's per-head outputs
        # rather than computing its attention again (self-checked)
        self._reuse = False
        # a block's elementwise Python formulas (a GELU, the bridge's norms) run as PyTorch's
        # fused kernels of the same formulas (self-checked; see ModelAdapter.fusable): the
        # clean run too, run again without them if the self-check drops them
        self._fuse = any(arch.fusable(layer) for layer in range(self.n_layers))
        with torch.no_grad():
            self._set_clean_run()
            clean_fused = self._fuse
            self.self_check = self._check_fast_paths()
            if self._fuse != clean_fused:  # the self-check dropped the fused kernels
                self._bases.pop(CLEAN)
                self._set_clean_run()
            self.block_row_seconds = self._time_a_block()

    # ------------------------------------------------------------------ setup
    def _set_clean_run(self) -> None:
        """The clean run, the source ``"clean"`` and the mean outputs mean ablation copies in."""
        self.clean = self._sources["clean"] = self._clean_run()
        self._check_finite(self.clean.logits, "the clean model")
        self._mean_out = {"attn": self._pooled_mean(self.clean.z), "mlp": self._pooled_mean(self.clean.mlp)}

    def _clean_run(self) -> BaseRun:
        """The clean run, with a model the bridge cannot run, or whose head outputs are not
        separate per head, refused in words rather than a tensor-shape traceback."""
        try:
            run = self.base(CLEAN, keep_mlp=True)
        except Exception as exc:
            if _is_oom(exc) or isinstance(exc, (KeyboardInterrupt, ValueError)):
                raise
            hint = (" Some Hugging Face kernels (grouped expert matmuls, a few attention masks) have no "
                    "float64 version: try dtype='fp32'." if self.dtype == torch.float64 else "")
            raise UnsupportedModelError(
                f"{self.arch.name}: the TransformerLens bridge failed to run this model's clean forward "
                f"({type(exc).__name__}: {str(exc)[:300]}).{hint} If the model runs in plain Hugging Face, "
                "this architecture or configuration is not supported by the installed TransformerLens; "
                "see docs/models.md for the families checked here") from exc
        z = run.z[0][0]
        if z.ndim != 4 or z.shape[2:] != (self.n_heads, self.d_head):
            raise UnsupportedModelError(
                f"{self.arch.name}: the attention output before the output projection has shape "
                f"{tuple(z.shape)}, not [batch, position, {self.n_heads} heads, {self.d_head}]; its heads are "
                "not separable, so there is no per-head output to ablate and CoAx cannot score it")
        return run

    def _check_tokens(self, token_lists):
        n_ctx = self.arch.n_ctx
        for i, p in enumerate(token_lists):
            if len(p) == 0:
                raise ValueError(f"prompt {i} is empty")
            if len(p) > n_ctx:
                raise ValueError(
                    f"prompt {i} has {len(p)} tokens but the model's context is {n_ctx}; shorten it"
                )
            if self.position_mode == "all" and len(p) < 2:
                raise ValueError(f"prompt {i} has one token; position_mode='all' needs at least two")
            bad = [t for t in p if not 0 <= t < self.d_vocab]
            if bad:
                raise ValueError(
                    f"prompt {i} holds token id {bad[0]} outside the model's vocabulary (0..{self.d_vocab - 1}); "
                    "were the prompts made with another tokenizer?"
                )

    def _check_answers(self, task: Task) -> None:
        for name in ("targets", "distractors"):
            for i, row in enumerate(getattr(task, name) or []):
                bad = [t for t in row if t >= self.d_vocab]
                if bad:
                    raise ValueError(f"task {task.name!r}: {name}[{i}] holds token id {bad[0]}, outside the model's "
                                     f"vocabulary (0..{self.d_vocab - 1}); was the task built with another tokenizer?")

    def check_variant(self, variant, what: str = "variant") -> Variant:
        """A :class:`Variant` whose units are this model's: a unit outside the model would
        be skipped without a word (its layer never runs), and a list or a string in place
        of a Variant would fail deep in the engine."""
        if not isinstance(variant, Variant):
            raise TypeError(f"{what} must be a Variant, e.g. Variant.zero(engine.units(['L0H0'])), got "
                            f"{type(variant).__name__} {variant!r:.60}")
        odd = [u for u in variant.units if not isinstance(u, Unit)]
        if odd:
            raise TypeError(f"{what} holds {odd[0]!r}, not a Unit; build it from units: "
                            f"Variant.zero(engine.units({[str(x) for x in odd]!r}))")
        self.units(variant.units)  # each unit inside the model, or a ValueError naming it
        return variant

    def _bucket(self, token_lists, cap) -> list[Bucket]:
        by_len: dict[int, list[int]] = {}
        for i, p in enumerate(token_lists):
            by_len.setdefault(len(p), []).append(i)
        out = []
        for length in sorted(by_len):
            idx = by_len[length]
            for s in range(0, len(idx), cap):
                part = idx[s:s + cap]
                toks = torch.tensor([token_lists[i] for i in part], device=self.device)
                out.append(Bucket(length, part, toks, output_positions(length, self.position_mode)))
        return out

    def _check_finite(self, logits: list[torch.Tensor], what: str):
        for b, lg in zip(self.buckets, logits):
            bad = ~torch.isfinite(lg).all(dim=-1).all(dim=-1)
            if bad.any():
                i = b.index[int(torch.nonzero(bad)[0])]
                raise FloatingPointError(
                    f"{what} produced non-finite logits (NaN/inf) on prompt {i}; check the weights, "
                    "or use fp32 instead of fp16/bf16"
                )

    def _pooled_mean(self, outs) -> list[Optional[torch.Tensor]]:
        """Mean output over every (prompt, position) of the clean run, per layer: [H, Dh]
        for heads, [d] for an MLP (None where there is no such output)."""
        tokens = sum(b.tokens.numel() for b in self.buckets)
        return [None if outs[0][layer] is None else sum(o[layer].sum(dim=(0, 1)) for o in outs) / tokens
                for layer in range(self.n_layers)]

    PATHS = ("direct", "bridge", "full")  # fastest first; "full" reuses no prefix at all

    def _check_fast_paths(self) -> dict:
        """Check every shortcut the engine takes against the bridge's own hooked forward
        from the tokens, on ablated probes (a head zeroed in the first layer, one in a
        middle layer, one in the last, a conditional variant started from an ablated base
        that edits a head of the block where they part, a middle and the last layer's
        MLP), through the output-position and the fixed-support unembedding. The first
        path that reproduces them all is used; falling back warns once, naming the
        architecture and the cost. The outcome is ``engine.self_check`` (results carry it)."""
        L, H = self.n_layers, self.n_heads
        b = self.buckets[0]
        n = min(4, len(b.index))
        tokens = b.tokens[:n]
        first = Variant.zero([Unit(0, 0)])
        probes = [(first, CLEAN), (Variant.zero([Unit(L // 2, H - 1)]), CLEAN),
                  (Variant.zero([Unit(L - 1, 0)]), CLEAN)]
        if L > 1:  # the base edits a head of the block where they part, which the variant edits too
            late = Variant.zero([Unit(L - 1, 0)]) if H > 1 else CLEAN
            probes.append((first | late | Variant.zero([Unit(L - 1, H - 1)]), first | late))
        for layer in dict.fromkeys((L // 2, L - 1)):  # an MLP unit is edited at its own hook
            if self._mlp_hooks[layer] is not None:
                probes.append((Variant.zero([Unit.mlp(layer)]), CLEAN))
        clean, *ref = self._hooked_logits(tokens, [CLEAN] + [v for v, _ in probes], b.positions)
        scale = max(1.0, max(r.abs().max().item() for r in ref))
        # rounding, not a wrong path: float64 leaves rounding alone, so its tolerance can refuse
        # a path that drops an input of the blocks even on a tiny random model (a Gemma without
        # its inputs came within 7e-5, GPT-Neo without its sliding-window mask within 5e-9)
        tol = {torch.float64: 1e-7, torch.float32: 1e-4}.get(self.dtype, 5e-2) * scale
        # the reference itself: the bridge's clean forward against the wrapped HF model's own
        hf = self.arch.reference_forward(tokens, b.positions)
        bridge_error = None
        if hf is not None:
            bridge_error = (hf - clean).abs().max().item()
            if not bridge_error <= tol:
                raise UnsupportedModelError(
                    f"{self.arch.name}: the TransformerLens bridge's forward disagrees with the Hugging Face "
                    f"model's own forward on clean prompts (max |difference| {bridge_error:.3g} in logits, "
                    f"tolerance {tol:.3g}); every score would be wrong. This architecture or configuration is "
                    "not run faithfully by the installed TransformerLens")
        support = M.support_of(self.clean.logits[0][:n], min(5, self.d_vocab - 1))
        # the narrowed last block runs with one output position: checked there too
        cuts = [slice(None)] + ([slice(-1, None)] if len(b.positions) > 1 else [])

        runs: dict = {}  # (base, fused kernels) -> its residuals and head outputs on the probe prompts

        def base_run(base):
            if (base, self._fuse) not in runs:
                runs[base, self._fuse] = self._cached_forward(tokens, base, b.positions)[:2]
            return runs[base, self._fuse]

        def worst_error(path):
            """The largest error over the probes, or the first one above the tolerance."""
            worst = 0.0
            with warnings.catch_warnings():  # a wrong shortcut may warn on every call; ours says it once
                warnings.simplefilter("ignore")
                for cut in cuts:
                    pos, sup = b.positions[cut], support[:, cut]
                    for vb, r in zip(probes, ref):
                        r = r[:, cut]
                        got, on_sup = self._probe_logits(path, tokens, *vb, pos, sup, base_run)
                        worst = max(worst, (got - r).abs().max().item(), (on_sup - r.gather(-1, sup)).abs().max().item())
                        if not worst <= tol:
                            return worst
            return worst

        errors, failed = {}, []
        # (path, narrowed last block, blocks given the model's other inputs, reused head
        # outputs, fused kernels): the direct path with the inputs the model passes its
        # blocks (rotary embeddings, masks; what the model itself does), then with the residual
        # alone (an input that cannot be replayed, such as BLOOM's batch-folded ALiBi), each
        # first with its narrowed last block, each first reusing head outputs; all of them
        # first with fused kernels where the model has some; then the others
        fusable = any(self.arch.fusable(layer) for layer in range(L))
        direct = [("direct", narrow, inputs, reuse, fuse) for fuse in (True, False) if fusable or not fuse
                  for inputs in (True, False) for narrow in (True, False)
                  for reuse in (True, False) if self._narrow or not narrow]
        others = [(p, False, False, False, False) for p in self.PATHS[1:]]
        for path, narrow, inputs, reuse, fuse in direct + others:
            self._narrow, self._with_inputs, self._reuse, self._fuse = narrow, inputs, reuse, fuse
            name = (path + ", block inputs" * inputs + ", narrowed last block" * narrow
                    + ", reused head outputs" * reuse + ", fused kernels" * fuse)
            try:
                worst = worst_error(path)
            except Exception as exc:  # a block that cannot run on a bare residual, say
                errors[name] = f"{type(exc).__name__}: {exc}"[:200]
                failed.append(path)
                continue
            errors[name] = worst
            if worst <= tol and math.isfinite(worst):
                break
            failed.append(path)
        else:
            raise RuntimeError(f"no exact path for {self.arch.name}: every way of running ablated variants "
                               f"disagrees with the bridge's own hooked forward ({errors}); this architecture "
                               "cannot be scored reliably")
        self._path = path
        failed = [p for p in dict.fromkeys(failed) if p != path]
        if failed and (self.arch.name, tuple(failed)) not in _FALLBACKS_SAID:
            _FALLBACKS_SAID.add((self.arch.name, tuple(failed)))  # once per architecture: engine.self_check keeps it
            warnings.warn(
                f"{self.arch.name}: the engine's {' and '.join(failed)} path disagreed with the bridge's hooked "
                f"forward on ablated probes ({', '.join(f'{p}: {v}' for p, v in errors.items() if p != name)}); using the "
                f"{path} path, which is exact but slower (no prefix reuse: "
                f"{'every variant from its tokens' if path == 'full' else 'TransformerLens runs the blocks below the start too'})",
                RuntimeWarning, stacklevel=3)
        return {"path": path, "fell_back_from": failed, "max_error": errors[name], "tolerance": tol,
                "narrowed_last_block": narrow, "block_inputs": inputs, "reused_head_outputs": reuse,
                "fused_kernels": fuse,
                "bridge_vs_hf": bridge_error,
                "probes": [str(v) for v, _ in probes], "architecture": self.arch.name}

    def _time_a_block(self) -> float:
        """Seconds per prompt-row through one block, timed on a middle block of the first
        batch once the self-check has warmed the model up (the fastest of three calls, so
        that a busy machine's pauses drop out): what the estimates (``resources.estimate_scan``,
        ``estimate_synergy``) turn work into time with. Rough: a chunk of many variants runs
        faster per row on a GPU."""
        b = self.buckets[0]
        x = self.clean.resid[0][self.n_layers // 2]
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        best = math.inf
        for _ in range(3):
            sync()
            t0 = time.perf_counter()
            if self._path == "direct":
                self._block(x, self.n_layers // 2, {}, 1, len(b.index), b.positions)
            else:  # a whole forward, per block
                self.arch.forward(b.tokens, b.positions)
            sync()
            best = min(best, time.perf_counter() - t0)
        return best / (len(b.index) * (1 if self._path == "direct" else self.n_layers))

    def _hooked_logits(self, tokens, variants: list[Variant], positions) -> list[torch.Tensor]:
        """The reference: the bridge's own forward from the tokens, heads edited by hooks;
        ``variants`` in one forward (``tokens`` repeated for each)."""
        k, n = len(variants), tokens.shape[0]
        masks = self._layer_masks(variants, 0)
        with self.arch.hooks(self._edit_hooks(masks, k, n)):
            logits = self.arch.forward(tokens.repeat(k, 1), positions)
        return list(logits.reshape(k, n, *logits.shape[1:]))

    def _probe_logits(self, path, tokens, variant, base, positions, support, base_run):
        """A probe's logits by ``path`` at ``positions``, and on ``support`` (the direct
        path's blocks run once for both); ``base_run(base)``: the base's residuals and head
        outputs on the probe prompts, run as the path runs its cached runs."""
        start = variant.first_difference(base, self.n_layers)
        masks = self._layer_masks([variant], 0)
        if path == "full":
            return tuple(self._run_full(tokens, masks, positions, k=1, support=s) for s in (None, support))
        resid, z = (out[start] for out in base_run(base))
        z = z if self._reuse and _reusable(base.layer_actions(start), variant.layer_actions(start)) else None
        if path != "direct":
            return tuple(self._run_from(resid, start, masks, positions, path=path, support=s, z=z)
                         for s in (None, support))
        x = self._blocks_from(resid, start, masks, positions, z=z)
        return self._output_logits(x, positions, 1), self._output_logits(x, positions, 1, support)

    # ------------------------------------------------------------------ sources
    def _add_resample_source(self) -> None:
        """Register the task's paired corrupted prompts, the source of resample ablation."""
        corrupted = getattr(self.task, "corrupted", None)
        if corrupted is None:
            raise ValueError(
                "resample ablation takes each unit's output from a paired corrupted prompt, and this engine's "
                "prompts have none: the built-in tasks (ioi_task, induction_task, organism tasks) carry one; for "
                "your own prompts pass custom_task(..., corrupted_texts=[...]) or Task(..., corrupted=[...])")
        with torch.no_grad():
            self.add_source(RESAMPLE_SOURCE, corrupted)

    def add_source(self, name: str, prompts: Union[Task, Sequence[Sequence[int]]], under: Variant = CLEAN) -> None:
        """Register a counterfactual prompt set (aligned 1:1 with this engine's prompts,
        same lengths) whose head outputs ``Variant.patch(units, name)`` copies in.
        ``under`` runs the source prompts in an ablated state (zero, mean or resample
        ablation; resample takes the units' outputs on this engine's paired corrupted
        prompts), e.g. with the primaries removed so that woken backups carry their answer."""
        if name in ("clean", "mean"):
            raise ValueError(f"source name {name!r} is reserved")
        if any(action not in (ZERO, MEAN, ablation_action("resample")) for _, action in under.actions):
            raise ValueError("a source can only be run under zero, mean or resample ablation")
        token_lists = prompts.prompts if isinstance(prompts, Task) else [list(map(int, p)) for p in prompts]
        if len(token_lists) != self.n_prompts:
            raise ValueError(f"source {name!r} has {len(token_lists)} prompts; this engine has {self.n_prompts}")
        self._check_tokens(token_lists)
        run = BaseRun(under)
        with torch.no_grad():
            for bi, b in enumerate(self.buckets):
                toks = torch.tensor([token_lists[i] for i in b.index], device=self.device)
                if toks.shape != b.tokens.shape:
                    raise ValueError(
                        f"source {name!r}: prompt {b.index[0]} has length {toks.shape[1]} but the "
                        f"original has {b.length}; counterfactual prompts must match lengths"
                    )
                _, z, _, _, mlp = self._cached_forward(toks, under, b.positions, bucket=bi, keep_mlp=True)
                run.z.append(z)
                run.mlp.append(mlp)
        self._sources[name] = run

    # ------------------------------------------------------------------ base runs
    def base(self, variant: Variant, keep_mlp: bool = False) -> BaseRun:
        """The cached run of ``variant`` (computed once): residuals, head outputs, logits
        (and MLP outputs with ``keep_mlp``: the clean run keeps them, for mean and freeze)."""
        if variant in self._bases:
            return self._bases[variant]
        run = BaseRun(variant)
        with torch.no_grad():
            for bi, b in enumerate(self.buckets):
                resid, z, logits, scale, mlp = self._cached_forward(b.tokens, variant, b.positions, bucket=bi,
                                                                    keep_mlp=keep_mlp)
                run.resid.append(resid)
                run.z.append(z)
                run.logits.append(logits)
                run.scale.append(scale)
                run.mlp.append(mlp)
        if variant != CLEAN:
            self._check_finite(run.logits, f"variant [{variant}]")
        self._bases[variant] = run
        return run

    def forget_bases(self) -> None:
        """Drop every cached run except the clean one (long loops over many bases)."""
        self._bases = {CLEAN: self._bases[CLEAN]}

    def _cached_forward(self, tokens, variant, positions, bucket=None, keep_mlp=False):
        """Full forward of one variant through the bridge, caching resid_pre and z (and the
        MLP outputs with ``keep_mlp``)."""
        resid = [None] * self.n_layers
        zs = [None] * self.n_layers
        mlps = [None] * self.n_layers
        hooks = []
        for layer in range(self.n_layers):
            def save_resid(x, hook, layer=layer):
                resid[layer] = x.detach()
            hooks.append((self.arch.block_in_hook(layer), save_resid))
        masks = self._layer_masks([variant], bucket) if variant.actions else {}
        n = tokens.shape[0]
        for layer in range(self.n_layers):
            for kind, name, store in (("attn", self._hook_names[layer], zs), ("mlp", self._mlp_hooks[layer], mlps)):
                if name is None or (kind == "mlp" and not keep_mlp and (layer, kind) not in masks):
                    continue
                apply = self._make_hook(masks.get((layer, kind)), 1, n)

                def save(x, hook, layer=layer, apply=apply, store=store, keep=kind == "attn" or keep_mlp):
                    x = apply(x) if apply is not None else x
                    if keep:
                        store[layer] = x.detach()
                    return x
                hooks.append((name, save))
        scale = []
        hooks.append((self.arch.FINAL_SCALE_HOOK, lambda x, hook: scale.append(x.detach())))
        t0 = time.perf_counter()
        # the kernels of the direct path's blocks, so that a variant comes out the same whether
        # it is run as a cached run or from one
        # (entered after the hooks: a norm with a hook attached keeps the bridge's forward)
        fused = self.arch.fused_kernels() if self._fuse else contextlib.nullcontext()
        with self.arch.hooks(hooks), fused:
            logits = self.arch.forward(tokens, positions)
        self.stats.seconds += time.perf_counter() - t0
        self.stats.forward_rows += tokens.shape[0]
        self.stats.block_rows += tokens.shape[0] * self.n_layers
        # the final norm's scale (for direct logit attribution); None if the model has no such hook
        return resid, zs, logits.detach(), scale[0][:, positions] if scale else None, mlps

    # ------------------------------------------------------------------ masks and hooks
    # A site is where units are edited: ``(layer, "attn")`` (the per-head outputs z,
    # [rows, T, H, Dh]) or ``(layer, "mlp")`` (the MLP's output, [rows, T, d]).
    def _source(self, name: str, bucket: Optional[int], site: tuple) -> torch.Tensor:
        layer, kind = site
        if name == "mean":
            return self._mean_out[kind][layer]  # broadcasts over [n, T]
        if name == RESAMPLE_SOURCE and name not in self._sources:
            self._add_resample_source()
        if name not in self._sources:
            raise ValueError(f"unknown cached source {name!r}; register it with engine.add_source(name, prompts)")
        if bucket is None:
            raise RuntimeError("cached sources need a bucket")
        run = self._sources[name]
        return (run.z if kind == "attn" else run.mlp)[bucket][layer]

    def _layer_masks(self, variants: Sequence[Variant], bucket: Optional[int], layer: Optional[int] = None):
        """Per site (of block ``layer`` only, when given): keep [k, width] and a list of
        (replacement, mask [k, width]); the width is H for heads and 1 for an MLP."""
        per_site: dict[tuple, dict] = {}
        k = len(variants)
        for vi, v in enumerate(variants):
            for u, action in v.actions:
                if layer is not None and u.layer != layer:
                    continue
                site = (u.layer, "mlp" if u.is_mlp else "attn")
                if u.is_mlp and self._mlp_hooks[u.layer] is None:
                    raise ValueError(f"{u}: this model's bridge exposes no MLP output in block {u.layer} to ablate "
                                     "(mixture-of-experts and some hybrid blocks have none); ablate heads only")
                width, col = (1, 0) if u.is_mlp else (self.n_heads, u.head)
                entry = per_site.setdefault(site, {"keep": torch.ones(k, width), "src": {}})
                entry["keep"][vi, col] = 0.0
                if action == ZERO:
                    continue
                name = "mean" if action == MEAN else action.split(":", 1)[1]
                m = entry["src"].setdefault(name, torch.zeros(k, width))
                m[vi, col] = 1.0
        out = {}
        for site, entry in per_site.items():
            keep = entry["keep"].to(self.device, self.dtype)
            src = [(self._source(name, bucket, site), m.to(self.device, self.dtype))
                   for name, m in entry["src"].items()]
            out[site] = (keep, src)
        return out

    @staticmethod
    def _make_hook(mask, k: int, n: int):
        """The per-row edit at one site: rows are k variants x n prompts."""
        if mask is None:
            return None
        keep, src = mask

        def apply(x):
            shape = x.shape
            xx = x.reshape(k, n, *shape[1:])
            # heads: [k, n, T, H, Dh] with masks over H; an MLP: [k, n, T, d] with a mask of width 1
            widen = (lambda t: t[:, None, None, :, None]) if x.ndim == 4 else (lambda t: t[:, None, None, :])
            xx = xx * widen(keep)
            for rep, m in src:
                xx = xx + widen(m) * rep
            return xx.reshape(shape)
        return apply

    def _site_hook(self, site: tuple) -> str:
        layer, kind = site
        return self._hook_names[layer] if kind == "attn" else self._mlp_hooks[layer]

    def _edit_hooks(self, masks: dict, k: int, n: int, start: int = 0) -> list:
        """The forward hooks that apply ``masks`` to rows of k variants x n prompts, from
        block ``start`` on."""
        return [(self._site_hook(site), lambda x, hook, fn=self._make_hook(m, k, n): fn(x))
                for site, m in masks.items() if site[0] >= start]

    # ------------------------------------------------------------------ batched variants
    def _run_full(self, tokens, masks, positions, k=1, support=None):
        """The exact fallback: every variant from its tokens through the bridge's own
        forward (no prefix reuse); ``tokens`` holds k copies of the batch."""
        rows = tokens.shape[0]
        n = rows // k
        with self.arch.hooks(self._edit_hooks(masks, k, n)):
            logits = self.arch.forward(tokens, positions)
        if support is not None:
            logits = logits.reshape(k, n, *logits.shape[1:]).gather(
                -1, support.expand(k, *support.shape)).reshape(rows, *support.shape[1:])
        self.stats.block_rows += rows * self.n_layers
        self.stats.forward_rows += rows
        return logits

    def _block(self, x: torch.Tensor, layer: int, masks: dict, k: int, n: int, positions=None,
               z: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Block ``layer`` on rows of k variants x n prompts, with ``masks``' edits at its sites.

        ``z`` (``[rows, T, H, Dh]``, where ``x`` is a cached run's input to this block, ``z``
        its per-head outputs there): the attention is then the output projection of the
        edited ``z`` alone, its queries, keys and values not computed again.

        In the last block, with one output position, the attention output and the MLP are
        computed at that position alone (keys and values still at every position): the
        head outputs and the MLP's input are cut to it, and the block's residual additions
        broadcast. Only the output position of the result is right; it is the only one read.

        Where the self-check kept them, the block's elementwise Python formulas run as
        fused kernels (:meth:`ModelAdapter.fused_kernels`)."""
        masks = {site: m for site, m in masks.items() if site[0] == layer}
        narrow = self._narrows(layer, positions, masks)
        hooks = self._edit_hooks(masks, k, n)
        given = contextlib.nullcontext()
        if narrow or z is not None:
            cut = list(positions) if narrow else slice(None)
            hooks = [h for h in hooks if h[0] != self._hook_names[layer]]
            edit = self._make_hook(masks.get((layer, "attn")), k, n) or (lambda t: t)
            if z is not None:
                given = self.arch.attention_from(layer, edit(z)[:, cut])
            else:
                hooks.append((self._hook_names[layer], lambda t, hook: edit(t)[:, cut]))
            if narrow:
                hooks.append((self.arch.mlp_in_hook(layer), lambda h, hook: h[:, cut]))
        inputs = self._inputs_for(x.shape[1], x.shape[0])[layer] if self._with_inputs else None
        fused = self.arch.fused_kernels(layer) if self._fuse else contextlib.nullcontext()
        with given, (self.arch.hooks(hooks) if hooks else contextlib.nullcontext()), fused:  # fused after the hooks
            y = self.arch.block(x, layer, inputs)
        self.stats.block_rows += x.shape[0]
        self.stats.attention_reused_rows += x.shape[0] * (z is not None)
        self.stats.narrowed_rows += x.shape[0] * narrow
        return y

    def _inputs_for(self, length: int, rows: int) -> list:
        """The blocks' inputs besides the residual for ``rows`` prompts of ``length`` tokens."""
        if length not in self._block_inputs:
            tokens = next(b.tokens[:1] for b in self.buckets if b.length == length)
            self._block_inputs[length] = self.arch.block_inputs(tokens)
        if (length, rows) not in self._block_inputs:
            self._block_inputs[length, rows] = [self.arch.inputs_for_rows(inputs, rows)
                                                for inputs in self._block_inputs[length]]
        return self._block_inputs[length, rows]

    def _narrows(self, layer: int, positions, masks: dict) -> bool:
        """Whether block ``layer`` runs narrowed to the output position (see :meth:`_block`): the
        last block, one output position, and no MLP edit there that copies a cached run's
        per-position output in (it would not fit the narrowed MLP output)."""
        if not (self._narrow and positions is not None and len(positions) == 1 and layer == self.n_layers - 1):
            return False
        mlp = masks.get((layer, "mlp"))
        return mlp is None or not any(rep.ndim > 1 for rep, _ in mlp[1])

    def _output_logits(self, x: torch.Tensor, positions, k: int, support=None) -> torch.Tensor:
        """The final norm and the unembedding at the output positions only; on ``support``
        ([n, P, r] token ids) only, when given."""
        x = self.arch.final_norm(x[:, positions])
        if support is None:
            return self.arch.finish_logits(self.arch.unembed(x))
        w = self.arch.W_U.T[support]  # [n, P, r, d]: only the support's columns of W_U
        logits = torch.einsum("knpd,nprd->knpr", x.reshape(k, -1, *x.shape[1:]), w)
        return self.arch.finish_logits(logits + self.arch.b_U[support]).reshape(-1, *support.shape[1:])

    def _blocks_from(self, resid, start, masks, positions, k=1, z=None) -> torch.Tensor:
        """The direct path's blocks ``start..`` from ``resid`` [rows, T, d] (see :meth:`_run_from`):
        the last block's output, right at ``positions``."""
        x, n = resid, resid.shape[0] // k
        for layer in range(start, self.n_layers):
            x = self._block(x, layer, masks, k, n, positions, z=z if layer == start else None)
        return x

    def _run_from(self, resid, start, masks, positions, path=None, k=1, support=None, z=None):
        """Run blocks ``start..`` from ``resid`` [rows, T, d]; logits at ``positions`` only
        (and on ``support`` [n, P, r] only, when given). ``z``: the per-head outputs of the
        run ``resid`` comes from, in block ``start`` (see :meth:`_block`)."""
        rows = resid.shape[0]
        n = rows // k
        if (path or self._path) == "direct":
            logits = self._output_logits(self._blocks_from(resid, start, masks, positions, k, z), positions, k, support)
        else:
            with self.arch.hooks(self._edit_hooks(masks, k, n, start)):
                logits = self.arch.forward_from(resid, start)[:, positions]
            if support is not None:
                logits = logits.reshape(k, rows // k, *logits.shape[1:]).gather(
                    -1, support.expand(k, *support.shape)).reshape(rows, *support.shape[1:])
            self.stats.block_rows += rows * self.n_layers
        self.stats.forward_rows += rows
        return logits

    def _plan(self, bucket: Bucket, width: Optional[int] = None):
        return plan_batch(self.arch, self.dtype, self.device, len(bucket.index), bucket.length,
                          len(bucket.positions), width or self.d_vocab, self._max_chunk_rows)

    def plan(self, top_r: int = 0):
        """The memory plan (chunk sizes, feature groups) for this engine's largest batch."""
        width = top_r if 0 < top_r < self.d_vocab else None
        return self._plan(max(self.buckets, key=lambda b: len(b.index) * b.length), width)

    def workload(self) -> dict:
        """Sizes a planner needs: prompts, the longest prompt, output positions."""
        return {"prompts": self.n_prompts, "max_length": max(b.length for b in self.buckets),
                "max_positions": max(len(b.positions) for b in self.buckets),
                "outputs": sum(len(b.index) * len(b.positions) for b in self.buckets)}

    def run(
        self,
        variants: Sequence[Variant],
        base: Variant = CLEAN,
        desc: Optional[str] = None,
        buckets: Optional[Sequence[int]] = None,
        progress: Optional[bool] = None,
        support: Optional[torch.Tensor] = None,
    ) -> Iterator[tuple[int, list[int], torch.Tensor]]:
        """Run ``variants`` batched; yield ``(bucket_index, variant_indices, logits)`` with
        logits ``[k, n, P, V]`` at the output positions.

        Each variant starts from the cached run that agrees with it on the most layers
        (``base``, computed if needed, or any other cached base run), from that run's
        residual (and, in that first block, its per-head outputs). On the direct path the
        variants of one call also share their common prefixes: ``S + {u}`` runs ``{u}``'s
        blocks below ``S`` once for both, and the pairs ``{u, v}`` of one ``u`` share
        ``{u}``'s blocks below each ``v``.
        ``buckets`` restricts the run to some prompt buckets (callers that hold many
        logits at once go bucket by bucket). ``support`` (``[n, P, r]`` token ids, one
        bucket only) unembeds onto those tokens alone: logits ``[k, n, P, r]`` — a fixed
        top-r support never materialises the vocabulary-wide logits of a big model.
        """
        variants = list(variants)
        if not variants:
            return
        for v in variants + [base]:
            self.check_variant(v)
        if support is not None and (buckets is None or len(buckets) != 1):
            raise ValueError("a support applies to one bucket: pass buckets=[bi]")
        L = self.n_layers
        roots = [self.base(base)] + [r for v, r in self._bases.items() if v != base]
        root_paths = [_path_of(r.variant, L) for r in roots]
        paths = [_path_of(v, L) for v in variants]
        starts, picks = [], []
        for p in paths:  # the root sharing the most layers; the first (base) on a tie
            start, ri = max((_agree(p, rp), -ri) for ri, rp in enumerate(root_paths))
            starts.append(start)
            picks.append(-ri)
        bucket_ids = list(range(len(self.buckets))) if buckets is None else list(buckets)
        total = len(variants) * sum(len(self.buckets[bi].index) for bi in bucket_ids)
        from tqdm.auto import tqdm

        show = self.progress if progress is None else progress
        bar = tqdm(total=total, desc=desc or "variants", unit="row", disable=not show or total < 2000,
                   leave=False)
        try:
            with torch.no_grad():
                for bi in bucket_ids:
                    b = self.buckets[bi]
                    plan = self._plan(b, None if support is None else support.shape[-1])
                    same = [i for i in range(len(variants)) if starts[i] >= L]
                    rest = [i for i in range(len(variants)) if starts[i] < L]
                    if self._path == "direct":
                        runs = self._run_shared(bi, rest, variants, paths, starts, picks, roots, plan, support)
                    else:
                        runs = self._run_by_start(bi, rest, variants, starts, picks, roots, plan, support)
                    for ri in sorted({picks[i] for i in same}):  # identical to a cached run: its logits
                        group = [i for i in same if picks[i] == ri]
                        logits = roots[ri].logits[bi]
                        logits = logits if support is None else logits.gather(-1, support)
                        runs = itertools.chain([(group, logits.unsqueeze(0).expand(len(group), -1, -1, -1))], runs)
                    for group, logits in runs:
                        self.stats.chunks += 1
                        self.stats.variants += len(group)
                        bar.update(len(group) * len(b.index))
                        yield bi, group, logits
        finally:
            bar.close()

    def _run_shared(self, bi, items, variants, paths, starts, picks, roots, plan, support):
        """The direct path: ``items`` block by block, each distinct prefix (the actions below
        a block) computed once from its parent's residual, a chunk of prefixes per call;
        yields ``(variant_indices, logits)`` as the last block finishes. At most
        ``plan.shared_variants`` variants are in flight, so that their residuals fit.
        A prefix that enters a block straight from a cached run takes that run's per-head
        outputs there (see :meth:`_block`)."""
        b = self.buckets[bi]
        n, L = len(b.index), self.n_layers
        k_max = plan.chunk_variants
        items = sorted(items, key=lambda i: paths[i])  # prefixes that share blocks sit together
        for s in range(0, len(items), plan.shared_variants):
            part = items[s:s + plan.shared_variants]
            live: dict[tuple, torch.Tensor] = {}  # prefix below the current block -> its residual [n, T, d]
            for layer in range(min(starts[i] for i in part), L):
                children: dict[tuple, list[int]] = {}  # prefix through this block -> its variants
                entered: dict[tuple, int] = {}  # prefix -> the cached run whose residual it enters with
                for i in part:
                    if starts[i] == layer and paths[i][:layer] not in live:
                        live[paths[i][:layer]] = roots[picks[i]].resid[bi][layer]
                        entered[paths[i][:layer]] = picks[i]
                    if starts[i] <= layer:
                        children.setdefault(paths[i][:layer + 1], []).append(i)
                source = {}  # prefix through this block -> the cached run whose head outputs it takes
                for key in children:
                    ri = entered.get(key[:layer])
                    if self._reuse and ri is not None and _reusable(roots[ri].variant.layer_actions(layer), key[layer]):
                        source[key] = ri
                grown: dict[tuple, torch.Tensor] = {}
                # a call takes head outputs for all of its rows or for none
                reusing = [key for key in children if key in source]
                for keys in (reusing, [key for key in children if key not in source]):
                    c = 0
                    while c < len(keys):
                        chunk = keys[c:c + k_max]
                        k = len(chunk)
                        t0 = time.perf_counter()
                        try:
                            x = torch.cat([live[key[:layer]] for key in chunk])
                            z = None
                            if chunk[0] in source:
                                z = torch.cat([roots[source[key]].z[bi][layer] for key in chunk])
                            masks = self._layer_masks([variants[children[key][0]] for key in chunk], bi, layer)
                            x = self._block(x, layer, masks, k, n, b.positions, z=z)
                            if layer == L - 1:
                                logits = self._output_logits(x, b.positions, k, support)
                        except RuntimeError as exc:
                            if not _is_oom(exc) or k == 1:
                                raise
                            k_max = self._halve(k)
                            continue
                        self.stats.seconds += time.perf_counter() - t0
                        c += k
                        if layer < L - 1:
                            for r, key in enumerate(chunk):
                                grown[key] = x[r * n:(r + 1) * n]
                            continue
                        self.stats.forward_rows += k * n
                        logits = logits.reshape(k, n, *logits.shape[1:])
                        group = [i for key in chunk for i in children[key]]
                        if len(group) > k:  # the same variant asked for twice
                            logits = logits[[r for r, key in enumerate(chunk) for _ in children[key]]]
                        yield group, logits
                live = grown

    def _run_by_start(self, bi, items, variants, starts, picks, roots, plan, support):
        """The bridge and full paths: chunks of variants that start at the same layer of the
        same cached run, each through the remaining blocks in one call."""
        b = self.buckets[bi]
        k_max = plan.chunk_variants
        order = sorted(items, key=lambda i: (starts[i], picks[i]))
        i = 0
        while i < len(order):
            key = (starts[order[i]], picks[order[i]])
            group = [order[i]]
            while (len(group) < k_max and i + len(group) < len(order)
                   and (starts[order[i + len(group)]], picks[order[i + len(group)]]) == key):
                group.append(order[i + len(group)])
            try:
                logits = self._run_chunk(b, bi, [variants[j] for j in group], key[0], roots[key[1]], support)
            except RuntimeError as exc:
                if not _is_oom(exc) or len(group) == 1:
                    raise
                k_max = self._halve(len(group))
                continue
            i += len(group)
            yield group, logits

    def _halve(self, k: int) -> int:
        """After an out-of-memory error: half the chunk, the cache emptied."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self.stats.oom_halvings += 1
        return max(1, k // 2)

    def _run_chunk(self, b: Bucket, bi: int, chunk: list[Variant], start: int, base_run: BaseRun, support=None):
        k, n = len(chunk), len(b.index)
        t0 = time.perf_counter()
        if self._path == "full":
            tokens = b.tokens.unsqueeze(0).expand(k, -1, -1).reshape(k * n, -1)
            logits = self._run_full(tokens, self._layer_masks(chunk, bi), b.positions, k=k, support=support)
        else:
            resid = base_run.resid[bi][start]
            resid = resid.unsqueeze(0).expand(k, -1, -1, -1).reshape(k * n, *resid.shape[1:])
            logits = self._run_from(resid, start, self._layer_masks(chunk, bi), b.positions, k=k, support=support)
        self.stats.seconds += time.perf_counter() - t0
        return logits.reshape(k, n, *logits.shape[1:])

    def logits(self, variants: Sequence[Variant], base: Variant = CLEAN) -> list[list[torch.Tensor]]:
        """Output-position logits of each variant, per prompt in prompt-set order:
        ``out[v][i]`` is ``[P_i, V]``. Convenient for small runs and tests."""
        out = [[None] * self.n_prompts for _ in variants]
        for bi, idx, lg in self.run(variants, base):
            for row, vi in enumerate(idx):
                for j, p in enumerate(self.buckets[bi].index):
                    out[vi][p] = lg[row, j]
        return out

    def naive_logits(self, variant: Variant) -> list[torch.Tensor]:
        """Reference: one full forward of the bridge per bucket with a plain hook per
        layer, full unembedding, no prefix reuse. Slow and obviously right."""
        out = [None] * self.n_prompts
        with torch.no_grad():
            for bi, b in enumerate(self.buckets):
                masks = self._layer_masks([variant], bi) if variant.actions else {}
                with self.arch.hooks(self._edit_hooks(masks, 1, len(b.index))):
                    logits = self.arch.forward(b.tokens)
                for j, p in enumerate(b.index):
                    out[p] = logits[j, b.positions]
        return out

    # ------------------------------------------------------------------ the energy kernel
    def _geometry(self, bi: int, top_r: int) -> dict:
        """Per batch: the fixed support (clean top-r, or None) and the clean logits and
        distribution on it."""
        key = (bi, top_r)
        if key not in self._geometries:
            clean = self.clean.logits[bi]
            sup = M.support_of(clean, top_r)
            z0 = M.on_support(clean, sup)
            self._geometries[key] = {"support": sup, "z0": z0, "p0": M.probs(z0)}
        return self._geometries[key]

    def energies(self, combos: Sequence[Sequence[tuple[float, Term]]], *, top_r: int = 0,
                 feature_mode: str = "fisher_centered", effect: str = "fisher", desc: str = "energies",
                 progress: Optional[bool] = None, per_prompt: bool = False) -> np.ndarray:
        """The one energy kernel. Each combination is a list of ``(coefficient, Term)``;
        its energy is ``mean over (prompt, output position) of ||sum_i c_i f(term_i)||^2``
        where ``f`` is the feature (``feature_mode``) of the term's change on the support
        (full vocabulary, or the clean top-``top_r`` tokens). A single term gives an
        ablation energy; differences give coupling and pairwise synergy.

        Terms shared by several combinations are computed once per batch and kept only
        while a later combination needs them; the memory planner decides how many new
        terms one group computes. Returns one float64 energy per combination.

        ``effect`` chooses what a term measures (``metrics.EFFECTS``): ``"fisher"`` the
        feature vector above; ``"kl"`` the scalar ``KL(p_base || p_variant)`` per output
        position (on the support); ``"task"`` the drop of the task's behaviour metric,
        ``m(base) - m(variant)`` per prompt (full vocabulary). Scalar effects combine
        linearly, ``sum_i c_i v_i``, and are averaged (not squared).

        ``per_prompt=True`` returns ``[combinations, prompts]``: each prompt's sum over its
        own output positions, so that the energy of any reweighting ``w`` of the prompts
        (a bootstrap draw, a subset) is ``values @ w / (prompt_weights(effect) @ w)``."""
        M.check_options(feature_mode, "clean", top_r)
        M.check_effect(effect, top_r, self.task)
        if top_r >= self.d_vocab:  # a support as large as the vocabulary is the full vocabulary
            top_r = 0
        combos = [_combination(combo, ci) for ci, combo in enumerate(combos)]
        terms = list(dict.fromkeys(t for combo in combos for _, t in combo))
        bad = [t.metric for t in terms if t.metric not in ("clean", "base")]
        if bad:
            raise ValueError(f"a term's metric must be 'clean' or 'base', got {bad[0]!r}")
        tid = {t: i for i, t in enumerate(terms)}
        ids = [[(c, tid[t]) for c, t in combo] for combo in combos]
        last_use = {}
        for ci, combo in enumerate(ids):
            for _, i in combo:
                last_use[i] = ci
        out = np.zeros((len(combos), self.n_prompts) if per_prompt else len(combos))
        from tqdm.auto import tqdm

        show = self.progress if progress is None else progress
        bar = tqdm(total=len(combos) * len(self.buckets), desc=desc, disable=not show or len(combos) < 2,
                   leave=False)
        try:
            for bi, b in enumerate(self.buckets):
                geo = self._geometry(bi, top_r)
                width = None if geo["support"] is None else geo["support"].shape[-1]
                cap = self._plan(b, width).feature_terms
                cache: dict[int, torch.Tensor] = {}
                ci = 0
                while ci < len(ids):
                    new: list[int] = []
                    end = ci
                    while end < len(ids):
                        extra = [i for _, i in ids[end] if i not in cache and i not in new]
                        if new and len(new) + len(extra) > cap:
                            break
                        new.extend(dict.fromkeys(extra))
                        end += 1
                    self._term_features(bi, [terms[i] for i in new], new, geo, feature_mode, cache, effect)
                    vals = []
                    for combo in ids[ci:end]:
                        if len(combo) == 1 and combo[0][0] == 1:  # a lone term: its feature, not a scaled copy
                            f = cache[combo[0][1]]
                        else:
                            f = None
                            for c, i in combo:
                                f = c * cache[i] if f is None else f + c * cache[i]
                        v = M.sq_norm(f) if effect == "fisher" else f  # [n, P] ([n] for "task")
                        v = v.reshape(len(b.index), -1).sum(-1)
                        vals.append(v if per_prompt else v.sum())
                    host = torch.stack(vals).double().cpu().numpy()  # one host copy per group
                    if not np.isfinite(host).all():
                        _non_finite_variant(len(b.index))
                    if per_prompt:
                        out[ci:end, b.index] += host
                    else:
                        out[ci:end] += host
                    for i in [i for i in cache if last_use[i] < end]:
                        del cache[i]
                    bar.update(end - ci)
                    ci = end
        finally:
            bar.close()
        if per_prompt:
            return out
        return out / (self.n_prompts if effect == "task" else self.workload()["outputs"])

    def prompt_weights(self, effect: str = "fisher") -> np.ndarray:
        """What each prompt counts for in an average: its number of output positions
        (one per prompt for ``effect="task"``, a per-prompt metric)."""
        w = np.ones(self.n_prompts)
        if effect != "task":
            for b in self.buckets:
                w[b.index] = len(b.positions)
        return w

    def _term_features(self, bi: int, terms: list[Term], keys: list[int], geo: dict, feature_mode: str,
                       cache: dict, effect: str = "fisher") -> None:
        """Features (or scalar effects) of ``terms`` on batch ``bi`` into ``cache[key]``: their
        variants in one batched run (so that ``{u}`` and ``S + {u}`` share blocks), each
        row compared with its term's base."""
        refs = {}
        for base, metric in dict.fromkeys((t.base, t.metric) for t in terms):
            if base == CLEAN:
                z_ref, p = geo["z0"], geo["p0"]
            else:
                z_ref = M.on_support(self.base(base).logits[bi], geo["support"])
                p = geo["p0"] if metric == "clean" else M.probs(z_ref)
            m_ref = None
            if effect == "task":
                behaviour = self.task.subset(self.buckets[bi].index).metric
                m_ref = behaviour(list(self.base(base).logits[bi]))
            refs[base, metric] = (z_ref, p, m_ref)
        variants = list(dict.fromkeys(t.variant for t in terms))
        users: dict[Variant, list[int]] = {}
        for j, t in enumerate(terms):
            users.setdefault(t.variant, []).append(j)
        for _, idx, lg in self.run(variants, buckets=[bi], progress=False, support=geo["support"]):
            lg = M.on_support(lg, None)
            # a Fisher feature or a KL carries any NaN/inf of its logits into its energy, which
            # energies() checks (a pass over a few numbers rather than over every logit); the
            # task metric reads a few logits only, so its logits are checked here
            if effect == "task" and not torch.isfinite(lg).all():
                _non_finite_variant(lg.shape[1])
            by_ref: dict[tuple, list[tuple[int, int]]] = {}  # (base, metric) -> (row, term)
            for row, vi in enumerate(idx):
                for j in users[variants[vi]]:
                    by_ref.setdefault((terms[j].base, terms[j].metric), []).append((row, j))
            for ref, members in by_ref.items():
                z_ref, p, m_ref = refs[ref]
                rows = [row for row, _ in members]
                sub = lg if rows == list(range(len(idx))) else lg[rows]
                if effect == "fisher":
                    f = M.features(z_ref, sub, p, feature_mode)
                elif effect == "kl":
                    f = M.kl_divergence(z_ref, sub)
                else:  # "task", per prompt: the drop of the behaviour metric
                    f = [(m_ref - behaviour(list(x))).to(lg.device) for x in sub]
                for r, (_, j) in enumerate(members):
                    cache[keys[j]] = f[r]

    # ------------------------------------------------------------------ per-batch maps
    def sum_over_batches(self, fn: Callable[["BatchView"], torch.Tensor]) -> torch.Tensor:
        """``sum of fn(batch)`` over the engine's batches of prompts. ``fn`` gets a
        :class:`BatchView` (its prompts' sub-task and output positions, and an id to pass
        to :meth:`gradients`, :meth:`outputs_at` and :meth:`final_scale_at`) and returns a
        tensor already summed over that batch's prompts."""
        total = None
        for bi, b in enumerate(self.buckets):
            task = self.task.subset(b.index) if self.task is not None else None
            val = fn(BatchView(bi, len(b.index), b.positions, task))
            total = val if total is None else total + val
        return total

    def per_prompt(self, fn: Callable[["BatchView"], torch.Tensor]) -> torch.Tensor:
        """``fn(batch)`` for every batch, one row per prompt, stacked in prompt order:
        ``[n_prompts, ...]`` (``fn`` returns ``[batch.size, ...]``, as
        :meth:`sum_over_batches` before its sum)."""
        rows: list = [None] * self.n_prompts
        for bi, b in enumerate(self.buckets):
            task = self.task.subset(b.index) if self.task is not None else None
            val = fn(BatchView(bi, len(b.index), b.positions, task))
            for j, p in enumerate(b.index):
                rows[p] = val[j]
        return torch.stack(rows)

    def sample_prompts(self, positions: str = "output") -> np.ndarray:
        """For each row of :meth:`head_output_norms` (same ``positions``), the prompt it
        belongs to."""
        out = []
        for b in self.buckets:
            n_pos = len(b.positions) if positions == "output" else b.length
            out.append(np.repeat(np.asarray(b.index), n_pos))
        return np.concatenate(out)

    def outputs_at(self, run: BaseRun, batch: "BatchView", layer: int) -> torch.Tensor:
        """Per-head outputs ``z`` of ``run`` at the batch's output positions: ``[n, P, H, Dh]``."""
        return run.z[batch.id][layer][:, batch.positions]

    def final_scale_at(self, run: BaseRun, batch: "BatchView") -> Optional[torch.Tensor]:
        """The final norm's scale ``[n, P, 1]`` at the output positions (None if unhooked)."""
        return run.scale[batch.id]

    def replacement_at(self, batch: Union[int, "BatchView"], layer: int, ablation: str = "zero") -> torch.Tensor:
        """What ``ablation`` puts in place of every head's output at ``layer`` on this batch,
        at every position: ``[n, T, H, Dh]`` -- zeros, the head's mean clean output (pooled
        over every prompt and position) or its output on the paired corrupted prompt. The
        gradient baselines estimate the effect of this very replacement."""
        bi = batch.id if isinstance(batch, BatchView) else batch
        b = self.buckets[bi]
        shape = (len(b.index), b.length, self.n_heads, self.d_head)
        action = ablation_action(ablation)
        if action == ZERO:
            return torch.zeros(shape, device=self.device, dtype=self.dtype)
        name = "mean" if action == MEAN else action.split(":", 1)[1]
        return self._source(name, bi, (layer, "attn")).expand(shape)

    # ------------------------------------------------------------------ gradients
    def gradients(
        self,
        batch: Union[int, "BatchView"],
        variant: Variant = CLEAN,
        metric: Optional[Callable] = None,
        drop_layer: Optional[int] = None,
        scaled_layer: Optional[int] = None,
        alpha: float = 1.0,
        scaled_from: Optional[torch.Tensor] = None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """One batched forward + backward over bucket ``bi`` of the task's metric.

        Returns per layer the head outputs ``z`` [n, T, H, Dh] as the forward used them
        (after ``variant``'s edits, and at ``scaled_layer`` moved to ``r + alpha (z - r)``,
        ``r`` being ``scaled_from`` [n, T, H, Dh], zeros when None: see
        :meth:`replacement_at`), the
        gradients of the summed per-prompt metric with respect to them (one backward
        pass gives every prompt's own gradient, since prompts do not interact), and the
        per-prompt metric. ``drop_layer`` detaches that block's contribution to the
        residual stream (forward unchanged, gradient only along the skip path):
        AtP*'s GradDrop.
        """
        bi = batch.id if isinstance(batch, BatchView) else batch
        b = self.buckets[bi]
        metric = metric or self._bucket_metric(bi)
        masks = self._layer_masks([variant], bi) if variant.actions else {}
        zs: list = [None] * self.n_layers
        mlp_edits = {site: m for site, m in masks.items() if site[1] == "mlp"}
        hooks = self._edit_hooks(mlp_edits, 1, len(b.index))
        for layer in range(self.n_layers):
            apply = self._make_hook(masks.get((layer, "attn")), 1, len(b.index))

            def edit_z(z, hook, layer=layer, apply=apply):
                z = apply(z) if apply is not None else z
                if layer == scaled_layer:
                    z = z * alpha if scaled_from is None else scaled_from + alpha * (z - scaled_from)
                zs[layer] = z
                return z
            hooks.append((self._hook_names[layer], edit_z))
        if drop_layer is not None:
            saved = {}
            hooks.append((self.arch.block_in_hook(drop_layer), lambda x, hook: saved.setdefault("in", x)))
            hooks.append((self.arch.block_out_hook(drop_layer),
                          lambda x, hook: saved["in"] + (x - saved["in"]).detach()))
        t0 = time.perf_counter()
        with torch.enable_grad(), self.arch.hooks(hooks):
            logits = self.arch.forward(b.tokens, b.positions)
            values = metric(logits)
            if values.shape != (len(b.index),):
                raise ValueError(f"the metric must give one number per prompt, got shape {tuple(values.shape)}")
            if not torch.isfinite(values).all():
                raise ValueError("the metric is not finite on some prompts; check the task's targets or metric_fn")
            grads = torch.autograd.grad(values.sum(), zs, allow_unused=True)
        self.stats.seconds += time.perf_counter() - t0
        self.stats.forward_rows += len(b.index)
        self.stats.block_rows += len(b.index) * self.n_layers
        self.stats.backward_rows += len(b.index)
        grads = [torch.zeros_like(z) if g is None else g.detach() for z, g in zip(zs, grads)]
        return [z.detach() for z in zs], grads, values.detach()

    def _bucket_metric(self, bi: int) -> Callable:
        if self.task is None:
            raise ValueError("gradient scores need a behaviour metric: build the engine from a Task "
                             "(e.g. ioi_task(model)), not bare prompts")
        sub = self.task.subset(self.buckets[bi].index)

        def metric(logits):
            out = sub.metric(list(logits))
            if not torch.is_tensor(out) or not out.requires_grad:
                raise ValueError("the task's metric is not differentiable in the logits; gradient baselines "
                                 "need a metric_fn built from torch operations")
            return out
        return metric

    # ------------------------------------------------------------------ conveniences
    def units(self, specs) -> list[Unit]:
        return parse_units(specs, self.n_layers, self.n_heads)

    def clean_logits(self) -> list[torch.Tensor]:
        out = [None] * self.n_prompts
        for bi, b in enumerate(self.buckets):
            for j, p in enumerate(b.index):
                out[p] = self.clean.logits[bi][j]
        return out

    def head_output_norms(self, run: BaseRun, positions: str = "output") -> torch.Tensor:
        """Norms of each head's write into the residual (``z @ W_O``) at every output
        position (``"output"``) or every position (``"all"``) of every prompt:
        ``[samples, L, H]``."""
        W_O = self.arch.W_O.detach().to(self.dtype)  # [L, H, Dh, d]
        out = []
        for bi, b in enumerate(self.buckets):
            per_layer = []
            for layer in range(self.n_layers):
                z = run.z[bi][layer]
                if positions == "output":
                    z = z[:, b.positions]
                per_layer.append(torch.einsum("nthe,hed->nthd", z, W_O[layer]).norm(dim=-1))
            out.append(torch.stack(per_layer, dim=2).reshape(-1, self.n_layers, self.n_heads))
        return torch.cat(out)

    def mean_output_norms(self, run: BaseRun) -> np.ndarray:
        """Each head's mean write norm at the output positions under ``run``: flat ``[L*H]``."""
        norms = self.head_output_norms(run, "output")
        return (norms.sum(0) / norms.shape[0]).flatten().double().cpu().numpy()

    # ------------------------------------------------------------------ attention patterns
    def attention_patterns(self, batch: Union[int, "BatchView"]) -> torch.Tensor:
        """The clean run's attention patterns on this batch of prompts, every layer:
        ``[n, L, H, T, T]`` (query, key). One forward of the bridge with its pattern
        hooks, not cached (role scores read them once, a batch at a time)."""
        bi = batch.id if isinstance(batch, BatchView) else batch
        b = self.buckets[bi]
        patterns: list = [None] * self.n_layers

        def keep(x, hook, layer):
            patterns[layer] = x.detach()
        hooks = [(self.arch.pattern_hook(layer), lambda x, hook, layer=layer: keep(x, hook, layer))
                 for layer in range(self.n_layers)]
        t0 = time.perf_counter()
        with torch.no_grad(), self.arch.hooks(hooks):
            self.arch.forward(b.tokens)
        self.stats.seconds += time.perf_counter() - t0
        self.stats.forward_rows += len(b.index)
        self.stats.block_rows += len(b.index) * self.n_layers
        if any(p is None for p in patterns):
            raise UnsupportedModelError(f"{self.arch.name}: the bridge exposes no attention pattern hook "
                                        "(blocks.L.attn.hook_pattern) in every layer, so attention-based "
                                        "scores cannot be read; use an ablation- or gradient-based method")
        return torch.stack(patterns, dim=1)

    def fingerprint(self) -> Optional[dict]:
        """What a result computed on this engine depends on: the weights as held in memory,
        the prompts and their output positions, the task's answers and corrupted prompts,
        the dtype. None when the task has a custom metric function (which cannot be
        hashed): nothing computed on it may be reused."""
        if self.task is not None and self.task.metric_fn is not None:
            return None
        task = None if self.task is None else self.task.fingerprint()
        return {"weights": weights_fingerprint(self.model), "prompts": self._prompts_hash, "task": task,
                "position_mode": self.position_mode, "dtype": str(self.dtype)}

    def describe(self) -> str:
        lens = sorted({b.length for b in self.buckets})
        return (f"Engine({self.n_layers}x{self.n_heads} heads, {self.n_prompts} prompts, lengths {lens}, "
                f"position_mode={self.position_mode}, device={self.device}, dtype={self.dtype}, "
                f"path={self._path})")


def _path_of(variant: Variant, n_layers: int) -> tuple:
    """A variant's actions block by block: two variants with the same first ``j`` entries
    have the same residual entering block ``j``."""
    return tuple(variant.layer_actions(layer) for layer in range(n_layers))


def _reusable(base_actions: tuple, actions: tuple) -> bool:
    """Whether a variant whose block input is a cached run's may take that run's per-head
    outputs in the block, editing them with its own ``actions`` there: every head the
    run edited there, the variant edits the same way (an edit applied twice is the edit;
    a head the run edited and the variant does not would be wrong). MLP actions do not
    touch the head outputs."""
    return {(h, a) for h, a in base_actions if h != MLP} <= set(actions)


def _agree(a: tuple, b: tuple) -> int:
    """How many leading blocks two paths share."""
    return next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), len(a))


def _non_finite_variant(n_prompts: int):
    raise FloatingPointError(
        f"a variant produced non-finite logits (NaN/inf) on a batch of {n_prompts} prompts; were the weights "
        "changed after the engine was built? Check them, or use fp32 instead of fp16/bf16")


def _token_ids(prompt, i: int) -> list[int]:
    """One prompt's token ids, refusing text and non-integers (which int() would truncate)."""
    if isinstance(prompt, (str, bytes)):
        raise TypeError(f"prompt {i} is text ({prompt[:30]!r}); the engine takes token ids: build a task with "
                        "custom_task(model, texts) or tokenize with model.tokenizer")
    ids = list(prompt.tolist() if isinstance(prompt, torch.Tensor) else prompt)
    bad = [t for t in ids if not (isinstance(t, (int, np.integer)) and not isinstance(t, bool))]
    if bad:
        raise TypeError(f"prompt {i} holds {bad[0]!r}, not an integer token id")
    return [int(t) for t in ids]


def _combination(combo, index: int) -> list[tuple[float, Term]]:
    """One combination of the energy kernel: a non-empty list of (coefficient, Term)."""
    combo = list(combo)
    if not combo:
        raise ValueError(f"combination {index} is empty; give at least one (coefficient, Term) pair")
    out = []
    for item in combo:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Term)):
            raise TypeError(f"combination {index} holds {item!r}; each entry is a (coefficient, Term) pair, e.g. "
                            "(1.0, Term(Variant.zero(units)))")
        out.append((float(item[0]), item[1]))
    return out


def check_not_right_padded(tokens: torch.Tensor, pad_id: Optional[int]) -> None:
    """A token tensor of prompts of different lengths is padded; scoring it would read the
    answer slot at a pad position. Refuse rows that end in pad tokens while others don't."""
    if pad_id is None or tokens.ndim != 2 or tokens.shape[1] < 2:
        return
    ends_in_pad = tokens[:, -1] == pad_id
    if bool(ends_in_pad.any()) and not bool(ends_in_pad.all()):
        row = int(torch.nonzero(ends_in_pad)[0])
        raise ValueError(
            f"prompt {row} ends in the pad token (id {pad_id}) while others do not: these prompts are "
            "right-padded (e.g. model.to_tokens on texts of different lengths), and the engine would read "
            "predictions at pad positions. Pass a list of token lists of their true lengths instead "
            "(e.g. [model.to_tokens(t)[0].tolist() for t in texts]); the engine groups lengths itself")


def as_engine(model_or_engine, task=None, *, position_mode: Optional[str] = None, progress: bool = True) -> Engine:
    """The one way every method gets its engine: an :class:`Engine` as given, or one built
    from a model and a task (or token lists). Reuse an Engine across calls to share its
    cached clean run."""
    if isinstance(model_or_engine, Engine):
        if task is not None and task is not model_or_engine.task:
            raise ValueError("pass the prompts either to the Engine or here, not both (the engine "
                             "already holds its task)")
        if position_mode is not None and position_mode != model_or_engine.position_mode:
            raise ValueError(f"this engine reads position_mode={model_or_engine.position_mode!r}; "
                             "build another Engine for a different mode")
        return model_or_engine
    if task is None:
        raise ValueError("give a task (prompts with answers, e.g. ioi_task(model)) with the model, "
                         "or pass an Engine")
    return Engine(model_or_engine, task, position_mode=position_mode, progress=progress)


def check_primaries(engine: Engine, primaries) -> list[Unit]:
    """The primary set S as checked units: not empty, and leaving some head to score."""
    units = engine.units(primaries)
    if not units:
        raise ValueError("the primary set is empty; CoAx conditions on a primary set S: pass e.g. "
                         "primaries=['L9H9', 'L9H6']")
    if len(units) >= engine.n_layers * engine.n_heads:
        raise ValueError("the primary set covers every head, so no head is left to score; remove some")
    return units


def seconds_and_passes(engine: Engine, since: EngineStats) -> dict:
    """Time and work (in full forward passes over the prompt set) since ``since``."""
    return {
        "seconds": round(engine.stats.seconds - since.seconds, 4),
        "forward_passes": round((engine.stats.block_rows - since.block_rows)
                                / max(1, engine.n_layers * engine.n_prompts), 3),
        "backward_passes": round((engine.stats.backward_rows - since.backward_rows) / max(1, engine.n_prompts), 3),
    }


def snapshot(engine: Engine) -> EngineStats:
    s = engine.stats
    return EngineStats(s.forward_rows, s.block_rows, s.variants, s.chunks, s.oom_halvings, s.seconds, s.backward_rows)
