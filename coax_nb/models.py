"""Loading models: hub names (with a revision), local HF-format directories, bundled
organisms and already loaded ``transformers`` models; what could not be loaded, as a
:class:`ModelLoadError` that names the fix; and the provenance of what was loaded.

Everything returns a TransformerLens 4 ``TransformerBridge`` in eval mode; the engine
is the only code that runs it.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import platform
import re
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Optional, Union

import torch

from . import organisms
from .adapter import ModelAdapter

_DTYPES = {
    "fp32": torch.float32, "float32": torch.float32,
    "fp64": torch.float64, "float64": torch.float64,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
}


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says why and what to do."""


def resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but no CUDA GPU is visible; use device='cpu'")
    return device


def resolve_dtype(dtype: Union[str, torch.dtype, None], device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        if dtype.lower() not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; choose one of fp32, fp64, bf16, fp16")
        dtype = _DTYPES[dtype.lower()]
    if dtype in (torch.float16, torch.bfloat16) and device.type != "cuda":
        raise ValueError(
            f"{dtype} is only supported on a CUDA GPU here (CPU half precision is slow and "
            "loses the small energies CoAx measures); use fp32 on the CPU"
        )
    if dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        raise ValueError(f"unsupported dtype {dtype}; choose fp32, fp64, bf16 or fp16")
    return dtype


def load_model(spec, device=None, dtype=None, device_map=None, max_memory=None, *, tokenizer=None,
               revision: Optional[str] = None, trust_remote_code: bool = False):
    """Load a model as a ``TransformerBridge`` (in eval mode).

    ``spec`` is one of

    * ``"organism:NAME"`` -- a bundled self-repair organism (see ``coax_nb.organisms.list()``)::

          model = load_model("organism:handwired")

    * a local HF-format folder holding ``config.json``, the weights (``model.safetensors``)
      and the tokenizer files, as written by ``model.save_pretrained(dir)`` and
      ``tokenizer.save_pretrained(dir)``::

          model = load_model("runs/my-model", dtype="fp64")

    * a Hugging Face hub name (needs the hub or a warm HF cache); ``revision`` picks a
      branch, tag or commit sha, and ``trust_remote_code=True`` (never on by default) lets
      a repository run its own modelling code::

          model = load_model("EleutherAI/pythia-70m", revision="step3000")

    * an already loaded ``transformers`` causal LM with its ``tokenizer``; the bridge wraps
      that very model, without reading the weights again::

          hf = AutoModelForCausalLM.from_pretrained("gpt2")
          model = load_model(hf, tokenizer=AutoTokenizer.from_pretrained("gpt2"))

    ``tokenizer`` may also go with a folder or a hub name, replacing the tokenizer saved
    there. ``device`` defaults to CUDA when present, else CPU (a loaded model stays where
    it is unless ``device`` is given); ``dtype`` defaults to fp32 (a loaded model keeps
    its own); bf16/fp16 on a GPU only. A loaded model is moved and cast in place.
    ``device_map`` (e.g. ``"auto"``) and ``max_memory`` spread a model too big for one
    device over several, through TransformerBridge; the engine then feeds inputs to the
    embedding's device and leaves the placement alone (for a loaded model, pass
    ``device_map`` to ``from_pretrained`` instead).

    Anything that cannot be loaded raises :class:`ModelLoadError` naming the problem and
    the fix (a missing tokenizer, an unknown repository or revision, a gated model, no
    hub access, unsafe pickled weights, ...).
    """
    from transformer_lens.model_bridge import TransformerBridge

    if isinstance(spec, TransformerBridge):
        raise TypeError("this model is already a TransformerBridge; use it directly, e.g. Engine(model, task)")
    if not isinstance(spec, (str, os.PathLike)):
        return _wrap_loaded(spec, tokenizer, device, dtype, device_map, max_memory, revision, trust_remote_code)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if tokenizer is not None:
        check_tokenizer(tokenizer)
    spec_str = os.fspath(spec)
    path = local_model_dir(spec_str, tokenizer_given=tokenizer is not None)
    if path is not None and revision is not None:
        raise ValueError(f"revision={revision!r} selects a version of a hub repository, but {spec_str!r} is a "
                         "local folder; drop revision= (or pass the hub name)")
    source = spec_str if path is None else str(path)
    placement = {"device": str(dev)} if device_map is None else {"device_map": device_map, "max_memory": max_memory}
    try:
        bridge = TransformerBridge.boot_transformers(source, dtype=dt, tokenizer=tokenizer, revision=revision,
                                                     trust_remote_code=bool(trust_remote_code), **placement)
    except Exception as exc:
        error = load_error(exc, spec_str, path, revision)
        if error is None:
            raise
        raise error from exc
    commit = None if path is not None else hub_commit(spec_str, revision)
    return _finish(bridge, spec_str, revision=revision, commit=commit, trust_remote_code=bool(trust_remote_code),
                   preloaded=False)


def _wrap_loaded(hf_model, tokenizer, device, dtype, device_map, max_memory, revision, trust_remote_code):
    """A bridge around an already loaded ``transformers`` model (its weights are not read again)."""
    from transformers import PreTrainedModel
    from transformer_lens.model_bridge import TransformerBridge

    if not isinstance(hf_model, PreTrainedModel):
        raise TypeError(f"load_model takes an 'organism:NAME', a local folder, a hub name or a loaded transformers "
                        f"model (e.g. AutoModelForCausalLM.from_pretrained(...)), not a {type(hf_model).__name__}")
    name = hf_model.name_or_path or type(hf_model).__name__
    check_causal(hf_model.config.to_dict(), name)
    if hf_model.get_output_embeddings() is None:
        raise ModelLoadError(
            f"{type(hf_model).__name__} has no language-model head (no next-token logits), so CoAx cannot score "
            "it; load it with AutoModelForCausalLM.from_pretrained(...) instead of AutoModel")
    if tokenizer is None:
        raise ModelLoadError(
            f"a loaded model needs its tokenizer: load_model(model, tokenizer=AutoTokenizer.from_pretrained({name!r}))")
    check_tokenizer(tokenizer)
    vocab = getattr(hf_model.config.get_text_config(), "vocab_size", None)
    if vocab is not None and len(tokenizer) > vocab:
        raise ModelLoadError(f"the tokenizer has {len(tokenizer)} tokens but {name} embeds only {vocab}; "
                             "pass the tokenizer the model was trained with")
    if revision is not None:
        raise ValueError("revision= selects what to download; this model is already loaded (pass revision= to "
                         "from_pretrained instead)")
    if device_map is not None or max_memory is not None:
        raise ValueError("device_map / max_memory place a model while it loads; this one is already loaded. "
                         "Pass them to from_pretrained(..., device_map=...) and hand that model to load_model")
    dispatched = bool(getattr(hf_model, "hf_device_map", None))
    if device is not None and dispatched:
        raise ValueError("this model was spread over devices by from_pretrained(device_map=...); leave device= "
                         "unset to keep that placement")
    here = next(hf_model.parameters()).device if device is None else resolve_device(device)
    dt = resolve_dtype(hf_model.dtype if dtype is None else dtype, here)
    if device is not None:
        hf_model.to(here)
    if dt != hf_model.dtype:
        from transformer_lens.utilities.multi_gpu import maybe_cast_floating_params

        maybe_cast_floating_params(hf_model, dt)
    try:
        # the model's class picks the bridge's adapter (a model built with from_config names none)
        bridge = TransformerBridge.boot_transformers(name, hf_model=hf_model, tokenizer=tokenizer, dtype=dt,
                                                     trust_remote_code=bool(trust_remote_code),
                                                     device=None if dispatched else here,
                                                     hf_config_overrides={"architectures": [type(hf_model).__name__]})
    except Exception as exc:  # e.g. an architecture TransformerLens does not support
        error = _other_load_error(exc, name, None)
        if error is None:
            raise
        raise error from exc
    return _finish(bridge, name, revision=None, commit=None, trust_remote_code=bool(trust_remote_code),
                   preloaded=True)


def check_tokenizer(tokenizer) -> None:
    """A tokenizer given to :func:`load_model` must be a transformers tokenizer read from
    files: TransformerLens re-reads it from there to switch on the BOS token."""
    from transformers import PreTrainedTokenizerBase

    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        raise TypeError(f"tokenizer must be a transformers tokenizer (AutoTokenizer.from_pretrained(...)), "
                        f"not a {type(tokenizer).__name__}")
    if (tokenizer.bos_token is not None and not getattr(tokenizer, "add_bos_token", False)
            and "name_or_path" not in tokenizer.init_kwargs):
        raise ModelLoadError("this tokenizer was built in memory, and TransformerLens re-reads a tokenizer from "
                             "its files to add the BOS token; save it with tokenizer.save_pretrained(dir) and pass "
                             "AutoTokenizer.from_pretrained(dir)")


def _finish(bridge, source: str, **loaded):
    from .adapter import restore_moved_buffers

    restore_moved_buffers(bridge)
    bridge.eval()
    check_causal({"architectures": [getattr(bridge.cfg, "architecture", None) or ""]}, source)
    check_has_heads(bridge)
    bridge.coax_source = source  # provenance for results
    bridge.coax_loaded = loaded  # revision, commit, trust_remote_code, preloaded: read by provenance()
    return bridge


# A folder is loadable when it holds one of these (transformers looks for them by name)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json",
                "pytorch_model.bin", "pytorch_model.bin.index.json")
# ... and its tokenizer's vocabulary in one of these (without one, transformers builds an empty tokenizer)
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "*.model", "*.tiktoken")


def local_model_dir(spec: str, tokenizer_given: bool = False) -> Optional[Path]:
    """The folder ``spec`` names (an organism or a local HF-format folder), checked for the
    files a load needs; None for a hub name."""
    organism = organisms.organism_name(spec)
    if organism is not None:
        path = organisms.path(organism)
    else:
        path = Path(spec).expanduser()
        if path.is_file():
            raise ModelLoadError(
                f"{spec!r} is a file; load_model takes the folder that holds config.json, the weights and the "
                f"tokenizer files: load_model({str(path.resolve().parent)!r})")
        if not path.is_dir():
            if spec.startswith((".", "/", "~")) or spec.count("/") > 1:  # a path: hub names are owner/name
                raise ModelLoadError(f"no model folder at {spec!r} ({path.resolve()}); check the path")
            return None
        path = path.resolve()
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} is a folder but holds no config.json; save the model there with "
                             "model.save_pretrained(dir) and tokenizer.save_pretrained(dir)")
    check_causal(json.loads((path / "config.json").read_text()), str(path))
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        raise ModelLoadError(f"{path} holds config.json but no weights ({' or '.join(WEIGHT_FILES[::2])}); "
                             "save them with model.save_pretrained(dir)")
    if not tokenizer_given and not any(any(path.glob(f)) for f in TOKENIZER_FILES):
        raise ModelLoadError(f"{path} holds no tokenizer files (tokenizer.json, vocab.json, tokenizer.model, ...); "
                             "save the model's tokenizer there with tokenizer.save_pretrained(dir), or pass it: "
                             "load_model(dir, tokenizer=tokenizer)")
    return path


def exception_chain(exc: BaseException) -> list:
    """``exc`` and the exceptions it was raised from (``__cause__``, else ``__context__``)."""
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        chain.append(exc)
        seen.add(id(exc))
        exc = exc.__cause__ if exc.__cause__ is not None else exc.__context__
    return chain


def _connection_errors() -> tuple:
    """Exception classes that mean the network failed: the builtins, and those of the HTTP
    clients huggingface_hub may use (only the ones already imported can have raised)."""
    classes = [ConnectionError, TimeoutError]  # OfflineModeIsEnabled is a ConnectionError
    for module, names in (("httpx2", ("TransportError",)), ("httpx", ("TransportError",)),
                          ("requests", ("ConnectionError", "Timeout"))):
        mod = sys.modules.get(module)
        classes += [getattr(mod, n) for n in names if isinstance(getattr(mod, n, None), type)]
    return tuple(classes)


def load_error(exc: BaseException, spec: str, path: Optional[Path],
               revision: Optional[str]) -> Optional[ModelLoadError]:
    """The :class:`ModelLoadError` for a failed load of ``spec``, read from the exception
    types in ``exc``'s chain (hub errors, unsafe pickles), else by :func:`_other_load_error`;
    None for an error to re-raise as it is (out of memory)."""
    from huggingface_hub import constants, errors as hub

    chain = exception_chain(exc)

    def has(*classes):
        return any(isinstance(e, classes) for e in chain)

    where = f"https://huggingface.co/{spec}"
    fallback = ("pass a local HF-format directory (config.json + model.safetensors + tokenizer files, as written "
                "by model.save_pretrained(dir) and tokenizer.save_pretrained(dir)) or a bundled organism such as "
                "'organism:handwired'")
    if has(pickle.UnpicklingError):
        weights = "pytorch_model.bin" if path is None else str(path / "pytorch_model.bin")
        return ModelLoadError(
            f"the weights of {spec!r} ({weights}) are a pickle that torch refuses to load with weights_only=True: "
            "it holds objects other than tensors, and unpickling them would run code from the file. If you trust "
            "its source, convert it to safetensors once: tensors = torch.load(file, weights_only=False); "
            "model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(dir)); "
            "model.load_state_dict(tensors, strict=False); model.save_pretrained(dir) (writes model.safetensors, "
            "which is then loaded instead)")
    if path is not None:
        return _other_load_error(exc, spec, path)
    if has(hub.GatedRepoError):
        return ModelLoadError(
            f"{spec!r} is a gated model: accept its terms at {where}, then log in with a token of that account "
            "(`huggingface-cli login`, or set HF_TOKEN)")
    if has(hub.RevisionNotFoundError):
        return ModelLoadError(
            f"{spec!r} has no revision {revision!r}; name an existing branch, tag or commit sha "
            f"(see {where}/tree/main)")
    if has(hub.RepositoryNotFoundError, hub.HFValidationError):
        return ModelLoadError(
            f"{spec!r} is neither a local folder nor a model repository on the Hugging Face hub; check the name "
            "(owner/name) or the path. If the repository is private, log in with a token that can read it "
            "(`huggingface-cli login`, or set HF_TOKEN)")
    if has(hub.DisabledRepoError):
        return ModelLoadError(f"the hub repository {spec!r} is disabled by its owner; use another model")
    if has(hub.LocalEntryNotFoundError, *_connection_errors()):
        if has(hub.OfflineModeIsEnabled) or constants.HF_HUB_OFFLINE:
            return ModelLoadError(
                f"could not load {spec!r}: it is not a local folder nor in the local Hugging Face cache, and hub "
                f"access is off (HF_HUB_OFFLINE=1). Fix: {fallback}; or unset HF_HUB_OFFLINE once to download it")
        return ModelLoadError(
            f"could not load {spec!r}: the Hugging Face hub cannot be reached (no network, proxy or firewall?) and "
            f"it is not in the local cache. Fix: check the connection, or {fallback}")
    return _other_load_error(exc, spec, path)


def _other_load_error(exc: BaseException, spec: str, path: Optional[Path]) -> Optional[ModelLoadError]:
    """Files that transformers cannot read (``OSError`` / ``ValueError``, whose messages
    name the file and the fix), or a model the bridge fails to build from files that
    were found; None for running out of memory (re-raised as it is)."""
    if isinstance(exc, (OSError, ValueError)):
        return ModelLoadError(f"could not load {spec!r}: {exc}")
    if isinstance(exc, torch.cuda.OutOfMemoryError) or not isinstance(exc, Exception):
        return None
    config = json.loads((path / "config.json").read_text()) if path is not None else {}
    what = ", ".join(config.get("architectures") or []) or config.get("model_type") or spec
    return ModelLoadError(
        f"TransformerLens {metadata.version('transformer-lens')} cannot build this model ({what}) from {spec!r}: "
        f"{type(exc).__name__}: {exc}. If it loads with transformers' AutoModelForCausalLM, the bridge does not "
        "support this architecture or configuration of it; use a supported model or another TransformerLens "
        "version")


def hub_commit(repo_id: str, revision: Optional[str] = None) -> Optional[str]:
    """The commit sha of ``repo_id`` at ``revision`` (default: main) in the local HF cache
    (where a download lands), or None when it is not there."""
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except ValueError:  # not a repository name
        return None
    if not isinstance(cached, str):
        return None
    sha = Path(cached).parent.name  # .../snapshots/<sha>/config.json
    return sha if re.fullmatch(r"[0-9a-f]{40}", sha) else None


# model types that attend in both directions: there is no next-token prediction to read
ENCODER_ONLY = {"bert", "roberta", "distilbert", "albert", "electra", "deberta", "deberta-v2", "xlm-roberta",
                "camembert", "mpnet", "ernie", "modernbert", "nomic_bert", "megatron-bert"}


def check_causal(config: dict, where: str) -> None:
    """Refuse encoder-only and encoder-decoder models, whose outputs are not next-token
    predictions of a causal decoder (CoAx would score them without a word otherwise)."""
    kind = str(config.get("model_type", "")).lower()
    archs = [str(a) for a in config.get("architectures") or []]
    encoder = kind in ENCODER_ONLY or (archs and all(a.endswith(("ForMaskedLM", "ForSequenceClassification",
                                                                    "ForTokenClassification", "ForPreTraining"))
                                                     for a in archs))
    if encoder or config.get("is_encoder_decoder"):
        what = "an encoder-decoder" if config.get("is_encoder_decoder") else "an encoder-only (bidirectional)"
        raise ModelLoadError(
            f"{where} is {what} model ({kind or ', '.join(archs)}); CoAx scores the heads of a causal "
            "decoder-only language model from its next-token predictions, so it cannot score this one. "
            "Use a decoder-only model (GPT-2, Pythia, Llama, ...)")


def check_has_heads(bridge) -> None:
    """Raise a clear error for a model CoAx cannot score (no attention-head outputs)."""
    if not ModelAdapter.exposes_head_outputs(bridge):
        raise ModelLoadError(
            "this model exposes no per-head attention outputs (blocks.L.attn.hook_z); CoAx scores "
            "attention heads, so it needs a transformer with multi-head attention"
        )


PACKAGES = ("coax-nb", "torch", "transformer-lens", "transformers", "numpy", "matplotlib", "papermill", "nbconvert")


HASH_CHUNK = 1 << 20  # bytes read at a time when hashing weights: a shard is never held in memory whole


def weights_sha256(directory: Path) -> str:
    """sha256 of the folder's ``*.safetensors`` then ``*.bin`` files (each group sorted by
    name), read as one concatenated stream in chunks."""
    h = hashlib.sha256()
    for f in sorted(directory.glob("*.safetensors")) + sorted(directory.glob("*.bin")):
        with open(f, "rb") as stream:
            while chunk := stream.read(HASH_CHUNK):
                h.update(chunk)
    return h.hexdigest()


def provenance(model_spec: str, model=None, *, revision: Optional[str] = None,
               trust_remote_code: Optional[bool] = None) -> dict:
    """Package versions, platform, what was loaded and a hash of the model's weights.

    ``revision`` is the hub revision asked for and ``commit`` the sha actually loaded (from
    the HF cache; None for a local folder); both, and ``trust_remote_code``, default to
    what :func:`load_model` recorded on ``model``. The weights are hashed when they are a
    local folder or an organism (not for a model passed in already loaded, whose weights
    may differ from any file).
    """
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    loaded = getattr(model, "coax_loaded", None) or {}
    revision = loaded.get("revision") if revision is None else revision
    trust_remote_code = bool(loaded.get("trust_remote_code", False) if trust_remote_code is None else trust_remote_code)
    preloaded = bool(loaded.get("preloaded", False))
    spec = str(model_spec)
    organism = organisms.organism_name(spec)
    directory = organisms.path(organism) if organism is not None else Path(spec) if Path(spec).is_dir() else None
    commit = loaded.get("commit")
    if commit is None and directory is None and not preloaded:
        commit = hub_commit(spec, revision)
    return {"packages": versions, "python": sys.version.split()[0], "platform": platform.platform(),
            "model_spec": spec, "revision": revision, "commit": commit, "trust_remote_code": trust_remote_code,
            "preloaded": preloaded,
            "weights_sha256": weights_sha256(directory) if directory is not None and not preloaded else None,
            "device": str(next(model.parameters()).device) if model is not None else None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def weights_fingerprint(model) -> str:
    """SHA-256 of every parameter as the model holds it in memory (name, dtype, shape
    and bytes, in name order), so a model edited after loading, or another checkpoint
    of the same architecture, is told apart. It reads every weight once (about a
    second per GB); the answer is kept on the model until a parameter changes in place
    (torch counts every in-place write in a tensor's version), so asking again is free.
    A hash of the files on disk would miss in-memory edits."""
    params = sorted(model.named_parameters(), key=lambda kv: kv[0])
    versions = tuple((name, p._version, p.data_ptr()) for name, p in params)
    memo = getattr(model, "_coax_weights_fingerprint", None)
    if memo is not None and memo[0] == versions:
        return memo[1]
    h = hashlib.sha256()
    for name, p in params:
        t = p.detach()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
        if t.device.type != "meta":  # offloaded weights have no data here; their name and shape still count
            h.update(t.reshape(-1).cpu().contiguous().view(torch.uint8).numpy())
    digest = h.hexdigest()[:16]
    try:
        model._coax_weights_fingerprint = (versions, digest)
    except AttributeError:  # a model that takes no new attributes: recomputed each time
        pass
    return digest
