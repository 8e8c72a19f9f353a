"""The cross-model induction completion panel (method.md §5, "Induction transfer", as
the reference protocol runs it), label-free from end to end.

For every model, three disjoint splits of repeated random tokens (prompt seeds
``rng_seed``, ``+1``, ``+2``):

1. **detect**: the primaries P are the heads whose induction attention score is at least
   ``share`` of the largest (or the top ``n_primaries``) -- read off attention patterns,
   no ablation, no labels;
2. **calibrate**: every selector ranks the heads outside P on the same prompts with the
   same budget (one CoAx scan gives comp, conditional, ratio, coupling, single, coact;
   one gradient pass each gives AtP, AtP* GradDrop, EAP-IG);
3. **evaluate**: the drop of the induction metric (mean log-prob of the repeated tokens)
   when P plus each selector's top-k are ablated, for every k; controls: P alone,
   P + k random heads (``n_random`` draws, size-matched) and P + "+own" (the next k heads
   by induction score: the role-matched control).

``over_random`` = drop - mean random drop, ``over_own`` = drop - "+own" drop,
``over_primary_only`` = drop - drop(P), all in nats of log-prob. The family macro
averages the members of a family first, then the families.
"""
from __future__ import annotations

import gc
import json
import os
import random
import time
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from ..baselines import attribution_scores
from ..discover import check_share, discover_primaries
from ..engine import CLEAN, Engine, EngineStats, Variant, seconds_and_passes, snapshot
from ..results import InductionTransfer
from ..scores import coax_scan
from ..tasks import check_choices, check_count, induction_task, uses_bos
from ..units import all_units
from ..validate import RANDOM_SETS
from ..variant import ablation_action

SCAN_SELECTORS = ("comp", "conditional", "ratio", "coupling", "single", "coact")
GRADIENT_SELECTORS = ("atp", "atp_gd", "eap_ig")
SELECTORS = SCAN_SELECTORS + GRADIENT_SELECTORS
DEFAULT_SELECTORS = SCAN_SELECTORS + ("atp", "atp_gd")
DEFAULT_KS = (1, 2, 4, 8)
CONTROLS = ("+own", "random")
# architecture class -> family, for models that are not organisms (which name theirs)
FAMILIES = {
    "GPT2LMHeadModel": "GPT-2", "GPTNeoForCausalLM": "GPT-Neo", "GPTNeoXForCausalLM": "GPT-NeoX",
    "GPTJForCausalLM": "GPT-J", "LlamaForCausalLM": "Llama", "MistralForCausalLM": "Mistral",
    "MixtralForCausalLM": "Mistral", "GemmaForCausalLM": "Gemma", "Gemma2ForCausalLM": "Gemma",
    "Gemma3ForCausalLM": "Gemma", "Qwen2ForCausalLM": "Qwen", "Qwen3ForCausalLM": "Qwen",
    "PhiForCausalLM": "Phi", "Phi3ForCausalLM": "Phi", "OPTForCausalLM": "OPT", "OlmoForCausalLM": "OLMo",
    "Olmo2ForCausalLM": "OLMo", "StableLmForCausalLM": "StableLM", "BloomForCausalLM": "BLOOM",
    "FalconForCausalLM": "Falcon",
}
EVAL_GROUP = 4  # variants whose logits are held at once on the evaluation split (big vocabularies)


def family_of(model, spec=None) -> str:
    """The architecture family: an organism's card says it; otherwise the model's class."""
    from .. import organisms

    name = organisms.organism_name(spec) if isinstance(spec, str) else None
    if name is not None:
        fam = organisms.card(name).get("architecture", {}).get("family")
        if fam:
            return fam
    arch = getattr(getattr(model, "cfg", None), "architecture", None) or type(model).__name__
    return FAMILIES.get(arch, arch.replace("ForCausalLM", "").replace("LMHeadModel", ""))


def _named_models(models) -> list[tuple[str, object]]:
    """(label, spec or loaded model) pairs from one model, a list or a dict label -> model."""
    from ..organisms import organism_name

    if isinstance(models, Engine):
        raise TypeError("induction_transfer draws its own three prompt splits per model, so it takes models, "
                        "not an Engine; pass engine.model")
    if isinstance(models, dict):
        items = list(models.items())
    elif isinstance(models, (str, os.PathLike)) or isinstance(models, torch.nn.Module):
        items = [(None, models)]
    elif isinstance(models, (list, tuple)):
        items = [(None, m) for m in models]
    else:
        raise TypeError(f"models must be a model, a name (organism:NAME, a folder, a hub name), a list of them or a "
                        f"dict label -> model, got {type(models).__name__}")
    if not items:
        raise ValueError("models is empty; give at least one, e.g. ['organism:induction_neox']")
    out = []
    for i, (label, m) in enumerate(items):
        if isinstance(m, Engine):
            raise TypeError("induction_transfer draws its own three prompt splits per model, so it takes models, "
                            "not an Engine; pass engine.model")
        if label is None:
            if isinstance(m, (str, os.PathLike)):
                s = os.fspath(m)
                label = organism_name(s) or s.rstrip("/")
            else:
                label = getattr(m, "coax_source", None) or f"model {i}"
        out.append((str(label), m))
    labels = [label for label, _ in out]
    twice = sorted({x for x in labels if labels.count(x) > 1})
    if twice:
        raise ValueError(f"models {twice} appear twice; give each model once (or a dict with distinct labels)")
    return out


def _check_ks(ks) -> list[int]:
    if isinstance(ks, (list, tuple)):
        if not ks:
            raise ValueError("ks is empty; give the completion sizes to evaluate, e.g. ks=[1, 2, 4]")
        return sorted({check_count(k, "each of ks", why="heads added to the primaries") for k in ks})
    return [check_count(ks, "ks", why="heads added to the primaries")]


def _settings(ks, selectors, n_primaries, share, n_prompts, half_length, n_random, rng_seed, token_range,
              ablation, ig_steps) -> dict:
    return {"ks": ks, "selectors": selectors, "n_primaries": n_primaries, "share": share, "n_prompts": n_prompts,
            "half_length": half_length, "n_random": n_random, "rng_seed": rng_seed,
            "token_range": None if token_range is None else list(token_range), "ablation": ablation,
            "ig_steps": ig_steps}


def induction_transfer(
    models,
    *,
    ks: Union[int, Sequence[int]] = DEFAULT_KS,
    selectors: Sequence[str] = DEFAULT_SELECTORS,
    n_primaries: Optional[int] = None,
    share: float = 0.5,
    n_prompts: int = 32,
    half_length: int = 10,
    n_random: int = 8,
    rng_seed: int = 0,
    token_range=None,
    ablation: str = "zero",
    ig_steps: int = 8,
    families: Optional[dict] = None,
    device=None,
    dtype=None,
    checkpoint: Union[str, os.PathLike, None] = None,
    estimate: bool = True,
    progress: bool = True,
    k: Optional[int] = None,
) -> InductionTransfer:
    """Run the induction completion panel over ``models`` (see the module docstring).

    ``models``: one model or a list of models -- ``"organism:NAME"``, a local folder, a hub
    name (loaded one at a time and freed after), or a loaded model -- or a dict label ->
    model. ``families`` overrides the family of some labels (default: an organism's card,
    else the architecture class: ``GPTNeoXForCausalLM`` is GPT-NeoX, ...).

    Each k of ``ks`` is clipped to half the heads outside P (beyond that every selector
    and chance pick nearly the same heads); ``selectors`` from ``SELECTORS``; P is the top
    ``n_primaries`` by induction score, or (``None``) every head scoring at least
    ``share`` of the largest. ``estimate`` prints each model's memory and time estimate
    before anything runs (:func:`estimate_induction_transfer`). ``checkpoint``: a JSON
    file written atomically after every model; a rerun with the same settings skips the
    models already done. ``k`` is the old single-k form of ``ks``.

    >>> from coax_nb import induction_transfer
    >>> r = induction_transfer(["organism:induction_neox"], ks=[2], selectors=["comp", "single"],
    ...                        n_prompts=8, estimate=False, progress=False)
    >>> [str(u) for u in r.primaries("induction_neox")]
    ['L1H2', 'L1H1', 'L1H0', 'L1H3']
    """
    if k is not None:
        import warnings

        warnings.warn("induction_transfer(k=...) is now ks=[...] (several completion sizes)", DeprecationWarning,
                      stacklevel=2)
        ks = [k]
    ks = _check_ks(ks)
    selectors = check_choices(selectors, "selectors", SELECTORS, "selector")
    if n_primaries is not None:
        n_primaries = check_count(n_primaries, "n_primaries", why="top heads by induction score taken as primaries")
    share = check_share(share)
    n_prompts = check_count(n_prompts, "n_prompts")
    half_length = check_count(half_length, "half_length", 2)
    n_random = check_count(n_random, "n_random", why=RANDOM_SETS)
    rng_seed = check_count(rng_seed, "rng_seed", 0)
    ig_steps = check_count(ig_steps, "ig_steps", why="integration steps of EAP-IG")
    ablation_action(ablation)
    named = _named_models(models)
    families = dict(families or {})
    unknown = sorted(set(families) - {label for label, _ in named})
    if unknown:
        raise ValueError(f"families names {unknown}, which are not among the models' labels "
                         f"({', '.join(label for label, _ in named)})")
    settings = _settings(ks, selectors, n_primaries, share, n_prompts, half_length, n_random, rng_seed,
                         token_range, ablation, ig_steps)
    path = Path(checkpoint) if checkpoint is not None else None
    done = _read_checkpoint(path, settings) if path is not None and path.exists() else {}
    if path is not None and not done:
        from ..io import check_writable_file

        check_writable_file(path, "the checkpoint")
    for label, m in named:  # a resumed label must still name the model the checkpoint measured
        if label in done and done[label].get("identity") is not None and path is not None:
            now, then = model_identity(m), done[label]["identity"]
            if now != then:
                what = "; ".join(f"{k}: {then.get(k)!r} in the checkpoint, {now.get(k)!r} now"
                                 for k in sorted(set(now) | set(then)) if now.get(k) != then.get(k))
                raise ValueError(f"checkpoint {path}: {label!r} is not the model the checkpoint measured ({what}); "
                                 "delete the file or pass another checkpoint path to start over")
    todo = [(label, m) for label, m in named if label not in done]
    if estimate and todo:
        estimate_induction_transfer(dict(todo), ks=ks, selectors=selectors, n_prompts=n_prompts,
                                    half_length=half_length, n_random=n_random, device=device, dtype=dtype,
                                    say=print)
    from tqdm.auto import tqdm

    for label, m in tqdm(todo, desc="induction panel", unit="model", disable=not progress or len(todo) < 2):
        model, spec = _load(m, device, dtype)
        try:
            fam = families.get(label) or family_of(model, spec)
            done[label] = _one_model(model, label, fam, settings, token_range, _prepend_bos(spec), _truth(spec),
                                     progress)
            done[label]["identity"] = model_identity(m)
        finally:
            if model is not m:  # loaded here: free it before the next one
                del model
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
        if path is not None:
            _write_checkpoint(path, settings, done)
    records = [done[label]["model"] for label, _ in named]
    rows = [r for label, _ in named for r in done[label]["rows"]]
    return InductionTransfer(records, rows, {**settings, "selectors": selectors,
                                             "splits": {"detect": rng_seed, "calibrate": rng_seed + 1,
                                                        "evaluate": rng_seed + 2}})


def model_identity(m) -> dict:
    """What tells one model from another for a checkpoint, without loading it again: a
    loaded model's weights as held in memory; an organism's or a local folder's weight
    files; a hub name's resolved commit (None offline: then the name alone)."""
    from ..models import hub_commit, weights_fingerprint, weights_sha256
    from ..organisms import organism_name, path as organism_path

    if isinstance(m, torch.nn.Module):
        return {"weights": weights_fingerprint(m)}
    spec = os.fspath(m)
    organism = organism_name(spec)
    folder = organism_path(organism) if organism is not None else Path(spec) if Path(spec).is_dir() else None
    if folder is not None:
        return {"spec": spec, "files_sha256": weights_sha256(folder)}
    return {"spec": spec, "commit": hub_commit(spec, None)}  # None when not in the local cache


def _load(m, device, dtype):
    from ..models import load_model

    if isinstance(m, (str, os.PathLike)):
        return load_model(m, device=device, dtype=dtype), os.fspath(m)
    return m, getattr(m, "coax_source", None)


def _prepend_bos(spec) -> Optional[bool]:
    """An organism's prompts start the way it was trained (its card); other models' as
    their tokenizer and config say."""
    from .. import organisms

    name = organisms.organism_name(spec) if isinstance(spec, str) else None
    return organisms.card(name)["task"].get("prepend_bos") if name is not None else None


def _truth(spec) -> Optional[list]:
    """An induction organism's documented backups (its card); None for any other model."""
    from .. import organisms

    name = organisms.organism_name(spec) if isinstance(spec, str) else None
    if name is None or organisms.card(name)["task"]["kind"] != "induction":
        return None
    return [f"L{a}H{b}" for a, b in organisms.card(name)["backups"]]


def _one_model(model, label: str, family: str, st: dict, token_range, prepend_bos, truth, progress: bool) -> dict:
    t0 = time.perf_counter()
    seeds = [st["rng_seed"], st["rng_seed"] + 1, st["rng_seed"] + 2]
    splits = [induction_task(model, st["n_prompts"], st["half_length"], prompt_seed=s, token_range=token_range,
                             prepend_bos=prepend_bos) for s in seeds]
    seen = [set(map(tuple, t.prompts)) for t in splits]
    if seen[2] & (seen[0] | seen[1]):
        raise RuntimeError(f"{label}: the evaluation split repeats a detection or calibration prompt; "
                           "widen token_range or raise half_length")
    det = Engine(model, splits[0], progress=False)
    L, H = det.n_layers, det.n_heads
    disc = discover_primaries(det, method="role", role="induction", k=st["n_primaries"], share=st["share"],
                              progress=False)
    score = np.asarray(disc.evidence["induction"], float)
    P = list(disc.primaries)
    rest = [u for u in all_units(L, H) if u not in P]
    if len(rest) < 2:
        raise ValueError(f"{label}: the primaries take {len(P)} of the {L * H} heads, leaving fewer than two to "
                         "select from; lower n_primaries or raise share")
    k_max = max(1, len(rest) // 2)
    ks = sorted({min(k, k_max) for k in st["ks"]})
    own = sorted(rest, key=lambda u: -np.nan_to_num(score[u.flat(H)], nan=-np.inf))  # stable: ties by position
    cal = Engine(model, splits[1], progress=progress)
    s0 = snapshot(cal)
    scores = coax_scan(cal, primaries=P, ablation=st["ablation"], progress=progress)
    grads = [s for s in st["selectors"] if s in GRADIENT_SELECTORS]
    if grads:
        scores = scores.merged(attribution_scores(cal, None, P, methods=grads, ig_steps=st["ig_steps"],
                                                  ablation=st["ablation"], progress=progress))
    cal_cost = seconds_and_passes(cal, s0)
    rankings = {s: [u for u, _ in scores.top(len(rest), by=s)] for s in st["selectors"]}
    short = {s: len(r) for s, r in rankings.items() if len(r) < max(ks)}
    if short:
        raise ValueError(f"{label}: selectors {sorted(short)} score fewer than {max(ks)} heads (the others are NaN); "
                         "drop them from selectors or lower ks")
    rng = random.Random(st["rng_seed"])
    draws = {k: [rng.sample(rest, k) for _ in range(st["n_random"])] for k in ks}
    sets = {("primaries", 0): P}
    for k in ks:
        sets[("+own", k)] = P + own[:k]
        for s in st["selectors"]:
            sets[(s, k)] = P + rankings[s][:k]
        for i, d in enumerate(draws[k]):
            sets[(f"random #{i}", k)] = P + d
    ev = Engine(model, splits[2], progress=False)
    drops = _drops(ev, sets, st["ablation"])
    clean = drops.pop("clean")
    p_drop = drops[("primaries", 0)]
    rows = []
    for k in ks:
        rand = np.array([drops[(f"random #{i}", k)] for i in range(st["n_random"])])
        own_drop = drops[("+own", k)]
        for s in list(st["selectors"]) + list(CONTROLS):
            d = float(rand.mean()) if s == "random" else drops[(s, k)]
            heads = "" if s == "random" else " ".join(str(u) for u in sets[(s, k)][len(P):])
            rows.append({"model": label, "family": family, "k": k, "selector": s, "heads": heads, "drop": d,
                         "random_drop": float(rand.mean()), "random_sd": float(rand.std()), "own_drop": own_drop,
                         "primary_drop": p_drop, "over_random": d - float(rand.mean()), "over_own": d - own_drop,
                         "over_primary_only": d - p_drop,
                         # documented backups among the heads added (organisms only; not used by any selector)
                         "truth_hits": None if truth is None or s == "random" else len(set(heads.split()) & set(truth))})
    record = {"label": label, "family": family, "source": getattr(model, "coax_source", None),
              "n_layers": L, "n_heads": H, "prepend_bos": uses_bos(model, prepend_bos), "primaries": [str(u) for u in P],
              "induction_score": [None if not np.isfinite(x) else float(x) for x in score],
              "own_order": [str(u) for u in own], "ks": ks, "truth": truth,
              "rankings": {s: [str(u) for u in r[:max(ks)]] for s, r in rankings.items()},
              "random_sets": {str(k): [[str(u) for u in d] for d in draws[k]] for k in ks},
              "random_drops": {str(k): [drops[(f"random #{i}", k)] for i in range(st["n_random"])] for k in ks},
              "clean_metric": clean, "primary_drop": p_drop, "calibration_cost": cal_cost,
              "forward_passes": round(sum(seconds_and_passes(e, EngineStats())["forward_passes"]
                                          for e in (det, cal, ev)), 2),
              "backward_passes": cal_cost["backward_passes"],
              "seconds": round(time.perf_counter() - t0, 3)}
    return {"model": record, "rows": rows}


def _drops(engine: Engine, sets: dict, ablation: str) -> dict:
    """Metric drop (clean - ablated, mean over prompts) of every head set; sets with the
    same heads run once, a few variants at a time (their logits span the vocabulary)."""
    keys = list(sets)
    unique = list(dict.fromkeys(frozenset(sets[k]) for k in keys))
    variants = [CLEAN] + [Variant.ablate(sorted(u), ablation) for u in unique]
    means = []
    for i in range(0, len(variants), EVAL_GROUP):
        for lg in engine.logits(variants[i:i + EVAL_GROUP]):
            m = engine.task.metric(lg)
            if not torch.isfinite(m).all():
                raise FloatingPointError("the induction metric is not finite on the evaluation split (an ablated "
                                         "model gave inf/NaN logits); try dtype='fp32' or another ablation")
            means.append(float(m.mean()))
    clean = means[0]
    by_set = {u: clean - x for u, x in zip(unique, means[1:])}
    out = {k: by_set[frozenset(sets[k])] for k in keys}
    out["clean"] = clean
    return out


# ---------------------------------------------------------------------------- checkpoint
def _write_checkpoint(path: Path, settings: dict, done: dict) -> None:
    from ..io import atomic_write_text

    atomic_write_text(path, json.dumps({"kind": "induction_transfer", "settings": settings, "models": done}))


def _read_checkpoint(path: Path, settings: dict) -> dict:
    fix = "delete the file or pass another checkpoint path to start over"
    if path.is_dir():
        raise ValueError(f"checkpoint {path} is a folder; pass a file path, e.g. {path / 'induction.json'}")
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"checkpoint {path} is not an induction-panel checkpoint ({e}); {fix}") from None
    if not isinstance(state, dict) or state.get("kind") != "induction_transfer":
        raise ValueError(f"checkpoint {path} is not an induction-panel checkpoint; {fix}")
    old = state.get("settings", {})
    differ = [f"{k}: {old.get(k)!r} in the checkpoint, {v!r} now" for k, v in settings.items() if old.get(k) != v]
    if differ:
        raise ValueError(f"checkpoint {path} was written with other settings ({'; '.join(differ)}); {fix}")
    return dict(state.get("models", {}))


# ---------------------------------------------------------------------------- estimate
def _config_of(m) -> Optional[dict]:
    """Layers, heads, widths and vocabulary from a loaded model, an organism, a folder's
    config.json or (online) the hub's config; None when none can be read."""
    from ..organisms import organism_name, path as organism_path

    if isinstance(m, torch.nn.Module):
        c = getattr(m, "cfg", None)
        if c is None:
            return None
        return {"n_layers": c.n_layers, "n_heads": c.n_heads, "d_model": c.d_model,
                "d_mlp": getattr(c, "d_mlp", None) or 4 * c.d_model, "vocab": c.d_vocab,
                "params": sum(p.numel() for p in m.parameters())}
    spec = os.fspath(m)
    name = organism_name(spec)
    try:
        if name is not None:
            raw = json.loads((organism_path(name) / "config.json").read_text())
        elif Path(spec, "config.json").is_file():
            raw = json.loads(Path(spec, "config.json").read_text())
        else:
            from transformers import AutoConfig

            raw = AutoConfig.from_pretrained(spec).to_dict()
    except Exception:  # offline, gated, misspelt: the run itself will say which
        return None
    raw = {**raw, **(raw.get("text_config") or {})}  # multimodal configs nest the language model's

    def first(*keys):
        return next((raw[k] for k in keys if isinstance(raw.get(k), int)), None)

    L, d = first("num_hidden_layers", "n_layer", "num_layers", "n_layers"), first("hidden_size", "n_embd", "d_model")
    H, V = first("num_attention_heads", "n_head", "num_heads"), first("vocab_size")
    if None in (L, d, H, V):
        return None
    return {"n_layers": L, "n_heads": H, "d_model": d, "d_mlp": first("intermediate_size", "n_inner", "ffn_dim")
            or 4 * d, "vocab": V, "params": None}


def _matmul_rate(device: torch.device) -> float:
    """FLOP/s of a square fp32 matmul on ``device``, measured now (a ceiling for real runs)."""
    n = 2048 if device.type == "cuda" else 512
    a = torch.randn(n, n, device=device)
    for _ in range(2):
        a @ a
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    reps, t0 = 5, time.perf_counter()
    for _ in range(reps):
        a @ a
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 2 * n ** 3 * reps / max(time.perf_counter() - t0, 1e-9)


def estimate_induction_transfer(models, *, ks=DEFAULT_KS, selectors=DEFAULT_SELECTORS, n_prompts: int = 32,
                                half_length: int = 10, n_random: int = 8, device=None, dtype=None,
                                say=print) -> list[dict]:
    """Memory and time of :func:`induction_transfer` on each model, before loading it:
    weights and working memory, forward- and backward-pass equivalents over the three
    splits, FLOPs and seconds at this device's measured matmul rate (real runs are
    slower, small models far slower). Printed with ``say`` (``None``: silent)."""
    from ..models import resolve_device, resolve_dtype

    ks = _check_ks(ks)
    selectors = check_choices(selectors, "selectors", SELECTORS, "selector")
    dev = resolve_device(device)
    bytes_el = torch.finfo(resolve_dtype(dtype, dev)).bits // 8
    rate = _matmul_rate(dev)
    T = 2 * half_length + 1
    out = []
    for label, m in _named_models(models):
        c = _config_of(m)
        if c is None:
            est = {"model": label, "known": False}
            out.append(est)
            if say:
                say(f"{label}: no estimate (its config cannot be read here: offline, gated or misspelt)")
            continue
        L, H, d, f, V = c["n_layers"], c["n_heads"], c["d_model"], c["d_mlp"], c["vocab"]
        params = c["params"] or (L * (4 * d * d + 3 * d * f) + 2 * V * d)
        U = L * H
        grads = [s for s in selectors if s in GRADIENT_SELECTORS]
        # calibration: the scan's single + conditional passes start at each head's own layer (prefix reuse)
        scan = 2 + 2 * U * (L + 1) / (2 * L)
        backward = sum({"atp": 2, "atp_gd": 1 + L, "eap_ig": 8}[g] for g in grads)
        evaluate = 2 + len(ks) * (len(selectors) + 1 + n_random)
        forward = 1 + scan + evaluate + backward  # detection, calibration, evaluation (+ the gradient passes' forwards)
        flops = 2 * params * n_prompts * T * (forward + 2 * backward)
        memory = (params * bytes_el + 3 * EVAL_GROUP * n_prompts * T * V * 4
                  + 4 * n_prompts * T * L * (d + H * T) * bytes_el)
        est = {"model": label, "known": True, "parameters": int(params), "heads": U, "weights_bytes": params * bytes_el,
               "peak_bytes": int(memory), "forward_passes": round(forward, 1), "backward_passes": backward,
               "flops": float(flops), "seconds": float(flops / rate), "device": str(dev), "matmul_flops": rate}
        out.append(est)
        if say:
            say(f"{label}: {params / 1e6:.1f}M parameters, {U} heads; ~{memory / 2**30:.2f} GiB on {dev}; "
                f"~{forward:.0f} forward + {backward} backward passes of {n_prompts} prompts x {T} tokens; "
                f"~{flops:.2g} FLOPs, >= {flops / rate:.1f} s at this {dev.type}'s matmul rate ({rate / 1e9:.0f} "
                "GFLOP/s; small models run well below it)")
    return out
