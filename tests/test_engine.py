"""The batched engine must equal the naive one-forward-per-variant loop."""
import pytest
import torch

from coax_nb import CLEAN, Engine, Variant, load_model
from coax_nb.adapter import ModelAdapter
from coax_nb.units import Unit

from conftest import mixed_length_prompts


def _variants(e, other_prompts_name=None):
    u = e.units
    vs = [
        Variant.zero(u(["1.2"])),                                   # single
        Variant.zero(u(["2.0", "2.1"])) | Variant.zero(u(["0.3"])),  # conditional S + {u}
        Variant.zero(u(["0.1", "1.0"])),                            # pair
        Variant.mean(u(["1.1", "0.0"])),                            # mean ablation
        Variant.zero(u(["0.2"])) | Variant.freeze(u(["1.3"])),      # freeze at clean
    ]
    if other_prompts_name:
        vs.append(Variant.patch(u(["0.0", "1.1"]), other_prompts_name))  # counterfactual patch
    return vs


@pytest.mark.parametrize("dirname", ["toy_dir", "toy_dir_b"])
def test_engine_matches_naive_loop_fp32(request, dirname):
    model = load_model(request.getfixturevalue(dirname), device="cpu")
    prompts = mixed_length_prompts(model, 10, seed=3)
    for mode in ("last", "all", "full"):
        e = Engine(model, prompts, position_mode=mode, progress=False, max_chunk_rows=7)
        assert len({b.length for b in e.buckets}) == 2
        e.add_source("cf", mixed_length_prompts(model, 10, seed=4))
        vs = _variants(e, "cf") if model.cfg.n_layers >= 3 else [
            Variant.zero(e.units(["1.2"])), Variant.mean(e.units(["0.5"])),
            Variant.zero(e.units(["0.1", "1.0"])), Variant.freeze(e.units(["1.3"])) | Variant.zero(e.units(["0.0"])),
            Variant.patch(e.units(["0.0", "1.4"]), "cf")]
        got = e.logits(vs)
        for v, g in zip(vs, got):
            ref = e.naive_logits(v)
            err = max((a - b).abs().max().item() for a, b in zip(g, ref))
            assert err < 1e-5, (str(v), mode, err)
            moved = max((a - c).abs().max().item() for a, c in zip(g, e.clean_logits()))
            assert moved > 1e-3, f"variant {v} did not change the logits: the test would be vacuous"


def test_conditional_variants_reuse_seed_prefix(toy):
    prompts = mixed_length_prompts(toy, 6)
    e = Engine(toy, prompts, progress=False)
    S = Variant.zero(e.units(["1.0"]))
    vs = [S | Variant.zero([Unit(2, h)]) for h in range(4)]
    before = e.stats.block_rows
    e.base(S)
    base_rows = e.stats.block_rows - before
    before = e.stats.block_rows
    got = e.logits(vs, base=S)
    # each conditional variant only runs the last block (layer 2) from the S run's residual
    assert e.stats.block_rows - before == len(vs) * len(prompts) * 1
    assert base_rows == len(prompts) * 3
    for v, g in zip(vs, got):
        ref = e.naive_logits(v)
        assert max((a - b).abs().max().item() for a, b in zip(g, ref)) < 1e-5


def test_freeze_at_own_clean_output_changes_nothing(toy):
    e = Engine(toy, mixed_length_prompts(toy, 6), progress=False)
    got = e.logits([Variant.freeze(e.units(["0.0", "1.1", "2.3"]))])[0]
    for a, c in zip(got, e.clean_logits()):
        assert torch.allclose(a, c, atol=1e-6)


def test_results_do_not_depend_on_grouping(toy):
    prompts = mixed_length_prompts(toy, 12, seed=7)
    v = [Variant.zero(toy_units) for toy_units in ([Unit(0, 1)], [Unit(1, 2), Unit(2, 0)])]
    whole = Engine(toy, prompts, progress=False).logits(v)
    small = Engine(toy, prompts, progress=False, max_bucket_prompts=2, max_chunk_rows=3).logits(v)
    one_by_one = [Engine(toy, [p], progress=False).logits(v) for p in prompts]
    for vi in range(len(v)):
        for i in range(len(prompts)):
            assert torch.allclose(whole[vi][i], small[vi][i], atol=1e-5)
            assert torch.allclose(whole[vi][i], one_by_one[i][vi][0], atol=1e-5)


def test_chunk_halves_on_out_of_memory_and_continues(toy, monkeypatch):
    prompts = mixed_length_prompts(toy, 8)
    e = Engine(toy, prompts, progress=False, max_chunk_rows=64)
    vs = [Variant.zero([Unit(layer, h)]) for layer in range(3) for h in range(4)]
    ref = e.logits(vs)
    real = e._block
    limit = {"rows": 9}

    def flaky(x, *a, **kw):
        if x.shape[0] > limit["rows"]:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(x, *a, **kw)

    monkeypatch.setattr(e, "_block", flaky)
    got = e.logits(vs)
    assert e.stats.oom_halvings > 0
    for a_list, b_list in zip(got, ref):
        for a, b in zip(a_list, b_list):
            assert torch.allclose(a, b, atol=1e-6)


def test_prefix_reuse_and_output_positions_save_work(toy):
    prompts = mixed_length_prompts(toy, 8)
    e = Engine(toy, prompts, progress=False)
    vs = [Variant.zero([Unit(layer, h)]) for layer in range(3) for h in range(4)]
    before = e.stats.block_rows
    e.logits(vs)
    # heads spread evenly over 3 layers start at layers 0, 1, 2: (3 + 2 + 1) / 3 = 2 blocks on average
    assert (e.stats.block_rows - before) == 4 * len(prompts) * (3 + 2 + 1)


def test_variants_share_their_common_prefixes(toy, monkeypatch):
    """Variants run together compute each distinct prefix once: {L0Hh} and S + {L0Hh}
    (S = {L2H0}) share blocks 0 and 1, the pairs {L0H0, L1Hh} share block 0. Counted
    exactly, equal to the naive loop, and equal when nothing is shared (one variant in
    flight at a time)."""
    import dataclasses

    import coax_nb.engine as E

    prompts = mixed_length_prompts(toy, 8, seed=11)
    e = Engine(toy, prompts, progress=False)
    S = Variant.zero([Unit(2, 0)])
    singles = [Variant.zero([Unit(0, h)]) for h in range(4)]
    conds = [S | v for v in singles]
    pairs = [Variant.zero([Unit(0, 0), Unit(1, h)]) for h in range(4)]
    mlp = [Variant.zero([Unit(0, 1), Unit.mlp(1)])]  # an MLP unit in block 1, after {L0H1}'s block 0
    vs = singles + conds + pairs + mlp + [singles[2]]  # the last asked for twice
    before, reused = e.stats.block_rows, e.stats.attention_reused_rows
    got = e.logits(vs)
    # singles 4 x 3 blocks; conditionals only block 2; pairs blocks 1 and 2; the MLP variant blocks 1 and 2
    assert e.stats.block_rows - before == len(prompts) * (4 * 3 + 4 * 1 + 4 * 2 + 2)
    # the four prefixes {L0Hh} enter block 0 from the clean run, which has their head outputs there
    assert e.stats.attention_reused_rows - reused == len(prompts) * 4
    for v, g in zip(vs, got):
        ref = e.naive_logits(v)
        assert max((a - b).abs().max().item() for a, b in zip(g, ref)) < 1e-5, str(v)
    assert all(torch.equal(a, b) for a, b in zip(got[-1], got[2]))

    real = E.plan_batch
    monkeypatch.setattr(E, "plan_batch", lambda *a, **kw: dataclasses.replace(real(*a, **kw), shared_variants=1))
    before, reused = e.stats.block_rows, e.stats.attention_reused_rows
    alone = e.logits(vs)
    assert e.stats.block_rows - before == len(prompts) * (4 * 3 + 4 * 3 + 4 * 3 + 3 + 3)
    assert e.stats.attention_reused_rows - reused == len(prompts) * len(vs)
    for g, a in zip(got, alone):
        assert max((x - y).abs().max().item() for x, y in zip(g, a)) < 1e-5


def test_a_variant_starts_from_the_cached_run_that_shares_the_most(toy):
    """Any cached base run is a free prefix: with S = {L0H0, L1H1} cached, S + {L2H3}
    asked for from the clean run still runs block 2 alone."""
    prompts = mixed_length_prompts(toy, 6, seed=12)
    e = Engine(toy, prompts, progress=False)
    S = Variant.zero([Unit(0, 0), Unit(1, 1)])
    e.base(S)
    v = S | Variant.zero([Unit(2, 3)])
    before, reused = e.stats.block_rows, e.stats.attention_reused_rows
    got = e.logits([v, S])
    assert e.stats.block_rows - before == len(prompts) * 1  # S itself: its cached logits
    assert e.stats.attention_reused_rows - reused == len(prompts) * 1  # S's head outputs in block 2
    for variant, g in zip([v, S], got):
        ref = e.naive_logits(variant)
        assert max((a - b).abs().max().item() for a, b in zip(g, ref)) < 1e-5


def test_a_block_entered_from_a_cached_run_takes_its_head_outputs(toy):
    """A variant whose input to a block is a cached run's takes that run's head outputs
    there instead of computing its attention, editing them with its own actions: only
    where every head the run edited in that block, the variant edits the same way. From
    base S = {L1H0}: S + {L1H2} (zero) and the mean-ablated pair take S's head outputs;
    {L1H2} alone, which leaves L1H0 alone, must not (S's zeroed L1H0 would leak in). All
    equal the naive loop."""
    prompts = mixed_length_prompts(toy, 6, seed=14)
    e = Engine(toy, prompts, progress=False)
    assert e.self_check["reused_head_outputs"]
    S, S_mean = Variant.zero([Unit(1, 0)]), Variant.mean([Unit(1, 0)])
    for base, vs, reusing in [(S, [S | Variant.zero([Unit(1, 2)]), Variant.zero([Unit(1, 2)])], 1),
                              (S_mean, [S_mean | Variant.mean([Unit(1, 3)]), S_mean | Variant.zero([Unit(1, 3)])], 2)]:
        before = e.stats.attention_reused_rows
        got = e.logits(vs, base=base)
        assert e.stats.attention_reused_rows - before == len(prompts) * reusing, str(base)
        for v, g in zip(vs, got):
            assert max((a - b).abs().max().item() for a, b in zip(g, e.naive_logits(v))) < 1e-5, str(v)


def test_reused_head_outputs_are_checked_and_dropped_when_wrong(toy, monkeypatch):
    """Where the attention given the head outputs would not reproduce the bridge (here: a
    projection that reads the heads in the wrong order), the self-check drops the reuse
    quietly and the engine, still on the direct path, equals the naive loop."""
    import warnings
    from contextlib import contextmanager

    real = ModelAdapter.attention_from

    @contextmanager
    def heads_flipped(self, layer, z):
        with real(self, layer, z.flip(-2)):
            yield

    monkeypatch.setattr(ModelAdapter, "attention_from", heads_flipped)
    prompts = mixed_length_prompts(toy, 6, seed=15)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to announce
        e = Engine(toy, prompts, progress=False)
    assert e.self_check["path"] == "direct" and not e.self_check["reused_head_outputs"]
    vs = [Variant.zero([Unit(0, 1)]), Variant.zero([Unit(2, 3), Unit.mlp(2)])]
    before = e.stats.attention_reused_rows
    for v, got in zip(vs, e.logits(vs)):
        assert max((a - b).abs().max().item() for a, b in zip(got, e.naive_logits(v))) < 1e-5
    assert e.stats.attention_reused_rows == before


def test_fused_kernels_are_checked_and_dropped_when_wrong(toy, monkeypatch):
    """GPT-2's Python-arithmetic GELU and the bridge's Python LayerNorm run as fused kernels
    in the engine's blocks and cached runs. Given a kernel of another formula (the erf GELU,
    which differs from the tanh one by up to ~1e-3), the self-check drops them quietly, the
    clean run is run again without them, and the engine, still on the direct path, equals
    the naive loop."""
    import warnings

    import coax_nb.adapter as adapter

    kinds = {type(m).__name__ for layer in range(toy.cfg.n_layers) for m, _ in ModelAdapter(toy).fusable(layer)}
    assert kinds == {"NewGELUActivation", "NormalizationBridge"}
    assert Engine(toy, mixed_length_prompts(toy, 6, seed=16), progress=False).self_check["fused_kernels"]
    monkeypatch.setattr(adapter, "_gelu_tanh", torch.nn.functional.gelu)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to announce
        e = Engine(toy, mixed_length_prompts(toy, 6, seed=16), progress=False)
    assert e.self_check["path"] == "direct" and not e.self_check["fused_kernels"]
    assert e.self_check["max_error"] < 1e-5
    # the clean run, first run with the kernels, was run again without them
    for bi, b in enumerate(e.buckets):
        naive = torch.stack([e.naive_logits(CLEAN)[i] for i in b.index])
        assert (e.clean.logits[bi] - naive).abs().max().item() < 1e-5
    vs = [Variant.zero([Unit(0, 1)]), Variant.zero([Unit(2, 3), Unit.mlp(2)])]
    for v, got in zip(vs, e.logits(vs)):
        assert max((a - b).abs().max().item() for a, b in zip(got, e.naive_logits(v))) < 1e-5


def test_fused_kernels_apply_within_only_and_leave_a_hooked_norm_alone(toy):
    """Inside ``fused_kernels(layer)`` that block's GELU is PyTorch's fused one (same
    numbers as the model's to rounding) and its norms are the wrapped LayerNorms, except a
    norm a hook is attached to, which keeps the bridge's forward and fires the hook. Outside,
    every module is the model's own again."""
    import coax_nb.adapter as adapter

    arch = ModelAdapter(toy)
    fusable = arch.fusable(1)
    gelu = next(m for m, _ in fusable if type(m).__name__ == "NewGELUActivation")
    ln1 = toy.blocks[1].ln1
    x = torch.randn(3, 5, toy.cfg.d_mlp, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    fired = []
    with toy.hooks(fwd_hooks=[("blocks.1.ln1.hook_scale", lambda t, hook: fired.append(1))]):
        with arch.fused_kernels(1):
            assert gelu.__dict__.get("forward") is adapter._gelu_tanh and "forward" not in ln1.__dict__
            assert "forward" in toy.blocks[1].ln2.__dict__
            fast = gelu(x)
            arch.block(torch.ones(2, 4, toy.cfg.d_model), 1)
    assert fired == [1]
    assert all("forward" not in m.__dict__ for m, _ in fusable)
    slow = gelu(x)
    assert (fast - slow).abs().max().item() < 1e-14  # another kernel, the same formula


def test_narrowed_last_block_is_checked_and_dropped_when_wrong(toy, monkeypatch):
    """With one output position the last block computes its head outputs and MLP there
    alone. The self-check keeps that only where it reproduces the probes: cut at the
    block's input instead (the keys then see one position), the engine drops it quietly,
    stays on the direct path and still equals the naive loop."""
    import warnings

    prompts = mixed_length_prompts(toy, 6, seed=13)
    vs = [Variant.zero([Unit(2, 1)]), Variant.zero([Unit(0, 3), Unit.mlp(2)]), Variant.mean([Unit(2, 0)])]
    e = Engine(toy, prompts, progress=False)
    assert e.self_check["narrowed_last_block"] and e.self_check["path"] == "direct"
    for v, got in zip(vs, e.logits(vs)):
        assert max((a - b).abs().max().item() for a, b in zip(got, e.naive_logits(v))) < 1e-5

    monkeypatch.setattr(ModelAdapter, "mlp_in_hook", lambda self, layer: f"blocks.{layer}.hook_in")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to announce
        wrong = Engine(toy, prompts, progress=False)
    assert not wrong.self_check["narrowed_last_block"] and wrong.self_check["path"] == "direct"
    for v, got in zip(vs, wrong.logits(vs)):
        assert max((a - b).abs().max().item() for a, b in zip(got, wrong.naive_logits(v))) < 1e-5


@pytest.mark.parametrize("path", ["bridge", "full"])
def test_fallback_paths_match_naive(toy, path):
    """Where the direct block calls cannot be trusted, the engine falls back to the
    bridge's own start_at_layer path, or to full forwards from the tokens; both must
    give the same numbers."""
    e = Engine(toy, mixed_length_prompts(toy, 6), progress=False)
    e._path = path
    vs = [Variant.zero(e.units(["1.2"])), Variant.mean(e.units(["2.0", "0.3"]))]
    for v, g in zip(vs, e.logits(vs)):
        ref = e.naive_logits(v)
        assert max((a - b).abs().max().item() for a, b in zip(g, ref)) < 1e-5


def test_support_unembedding_equals_gathering_full_logits(toy):
    """A fixed top-r support unembeds only those columns (every path)."""
    from coax_nb import metrics as M

    e = Engine(toy, mixed_length_prompts(toy, 8, seed=2), progress=False)
    vs = [Variant.zero(e.units(["1.0"])), Variant.zero(e.units(["2.1", "0.3"])), Variant.mean(e.units(["2.2"]))]
    for bi in range(len(e.buckets)):
        sup = M.support_of(e.clean.logits[bi], 5)

        def collect(**kw):
            out = [None] * len(vs)
            for _, idx, lg in e.run(vs, buckets=[bi], **kw):
                for r, i in enumerate(idx):
                    out[i] = lg[r]
            return torch.stack(out)
        full = collect().gather(-1, sup.expand(len(vs), *sup.shape))
        for path in Engine.PATHS:
            e._path = path
            got = collect(support=sup)
            assert got.shape[-1] == 5
            assert torch.allclose(got, full, atol=1e-5), path
        e._path = "direct"
    with pytest.raises(ValueError, match="one bucket"):
        next(e.run(vs, support=sup))


def test_energy_kernel_does_not_depend_on_feature_groups(toy, monkeypatch):
    """Shared terms, differences and the planner's group size: one answer."""
    import dataclasses

    import numpy as np

    import coax_nb.engine as E
    from coax_nb.engine import Term

    e = Engine(toy, mixed_length_prompts(toy, 6, seed=5), progress=False)
    S = Variant.zero(e.units(["L1H0"]))
    a, b = Term(Variant.zero(e.units(["L0H1"]))), Term(S | Variant.zero(e.units(["L2H2"])), S, "base")
    combos = [[(1.0, a)], [(1.0, b)], [(1.0, b), (-1.0, a)], [(2.0, a), (1.0, b)]]
    full = e.energies(combos)
    real = E.plan_batch
    monkeypatch.setattr(E, "plan_batch", lambda *args, **kw: dataclasses.replace(real(*args, **kw), feature_terms=1))
    one_at_a_time = e.energies(combos)
    assert np.allclose(full, one_at_a_time, rtol=1e-6, atol=0)
    # linearity checks of the kernel itself: ||2a||^2 = 4||a||^2 when b is absent
    assert e.energies([[(2.0, a)]])[0] == pytest.approx(4 * full[0], rel=1e-6)
    with pytest.raises(ValueError, match="'clean' or 'base'"):
        e.energies([[(1.0, Term(S, CLEAN, "bogus"))]])


def test_self_check_catches_a_broken_fast_path_and_falls_back(toy, monkeypatch):
    """A direct block path that silently drops an input (here: the first block passes its
    input through) must be caught on the ablated probes; the engine then warns, uses an
    exact path, records it, and scores equal the bridge's own hooked forward."""
    import coax_nb.engine
    from coax_nb import coax_scan

    monkeypatch.setattr(coax_nb.engine, "_FALLBACKS_SAID", set())  # a fallback is announced once per process
    real = ModelAdapter.block
    monkeypatch.setattr(ModelAdapter, "block",
                        lambda self, resid, layer, inputs=None: resid if layer == 0 else real(self, resid, layer, inputs))
    prompts = mixed_length_prompts(toy, 6, seed=3)
    with pytest.warns(RuntimeWarning, match="direct path disagreed"):
        e = Engine(toy, prompts, progress=False)
    assert e.self_check["path"] == "bridge" and e.self_check["fell_back_from"] == ["direct"]
    vs = [Variant.zero(e.units(["L0H1"])), Variant.zero(e.units(["L1H0", "L2H3"]))]
    for v, got in zip(vs, e.logits(vs)):
        assert max((a - b).abs().max().item() for a, b in zip(got, e.naive_logits(v))) < 1e-5
    assert coax_scan(e, primaries=["L1H0"], progress=False).meta["engine_check"]["path"] == "bridge"
    # with the bridge's start_at_layer broken too, only full forwards from the tokens are left
    monkeypatch.setattr(ModelAdapter, "forward_from", lambda self, resid, layer: self.model(resid * 0, start_at_layer=layer))
    with pytest.warns(RuntimeWarning, match="direct and bridge path"):
        e2 = Engine(toy, prompts, progress=False)
    assert e2.self_check["path"] == "full"
    for v, got in zip(vs, e2.logits(vs)):
        assert max((a - b).abs().max().item() for a, b in zip(got, e2.naive_logits(v))) < 1e-5


def test_cpu_chunks_keep_each_tensor_under_the_mmap_threshold_and_an_explicit_size_wins():
    """On a CPU each of a chunk's tensors stays under 32 MiB, glibc's largest mmap threshold
    (above it every allocation is faulted in afresh: an elementwise pass took 5x longer),
    with as many variants as fit; one variant always runs, a toy model still batches many,
    and max_chunk_rows decides when given."""
    from types import SimpleNamespace

    from coax_nb.resources import plan_batch

    cpu = torch.device("cpu")
    gpt2_small = SimpleNamespace(d_model=768, d_mlp=3072, n_heads=12)
    plan = plan_batch(gpt2_small, torch.float32, cpu, 16, 16, 1, 50257)
    # the memory budget alone allowed 34 variants here (544 prompt-rows, benchmarks/chunks.py);
    # the largest tensors: the logits, [variants x 16 prompts, 50257], and the MLP's hidden
    # layer, [variants x 16 prompts x 16 tokens, 3072], 2% smaller
    logits_bytes, hidden_bytes = 4 * 16 * 50257, 4 * 16 * 16 * 3072
    assert plan.chunk_variants * logits_bytes < 32 * 2**20 <= (plan.chunk_variants + 1) * logits_bytes, plan
    assert plan.chunk_variants * hidden_bytes < 32 * 2**20
    huge = SimpleNamespace(d_model=4096, d_mlp=16384, n_heads=32)
    assert plan_batch(huge, torch.float32, cpu, 96, 40, 1, 50257).chunk_variants == 1
    toy = SimpleNamespace(d_model=64, d_mlp=256, n_heads=4)
    assert plan_batch(toy, torch.float32, cpu, 8, 12, 1, 100).chunk_variants > 100
    for arch in (gpt2_small, huge, toy):
        assert plan_batch(arch, torch.float32, cpu, 16, 16, 1, 50257, max_chunk_rows=40 * 16).chunk_variants == 40


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_half_precision_keeps_the_fast_paths_and_finds_the_backups(half):
    """What a GPU runs (half-precision weights, energies in float32), run on a CPU so that CI
    covers it: ``load_model`` refuses half precision on a CPU (slow there), so the bridge is
    cast after loading. The self-check keeps every shortcut within its half-precision
    tolerance, CoAx's top three are the organism's ground-truth backups, and the scores keep
    float32's order (benchmarks/gpu_check.py measured the same on an H100)."""
    import numpy as np
    from scipy.stats import spearmanr

    from coax_nb import coax_scan
    from coax_nb.organisms import card, task_for

    name = "ioi_dormant"
    primaries = [str(Unit(*x)) for x in card(name)["primaries"]]
    backups = {Unit(*x) for x in card(name)["backups"]}
    scores = {}
    for dtype in (torch.float32, half):
        model = load_model(f"organism:{name}")
        model.to(dtype)
        e = Engine(model, task_for(name, 32), progress=False)
        assert e.dtype == dtype
        check = e.self_check
        assert check["path"] == "direct" and check["fused_kernels"] and check["reused_head_outputs"], check
        assert check["narrowed_last_block"], check
        scores[dtype] = coax_scan(e, primaries=primaries, progress=False)
        assert {u for u, _ in scores[dtype].top(3)} == backups
    for kind in ("conditional", "comp"):
        want, got = scores[torch.float32][kind], scores[half][kind]
        ok = np.isfinite(want)
        assert np.array_equal(ok, np.isfinite(got))
        assert spearmanr(want[ok], got[ok])[0] > 0.99, kind
        # measured, of the largest score: bf16 0.6% (conditional) and 2.1% (comp), fp16 0.08% and 0.2%
        assert np.abs(want[ok] - got[ok]).max() < 0.05 * np.abs(want[ok]).max(), kind
