"""Loading models: hub names, local HF-format directories and bundled organisms.

Everything returns a TransformerLens 4 ``TransformerBridge`` in eval mode; the engine
is the only code that runs it.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Union

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
    device = torch.device(device)
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


def load_model(spec: Union[str, os.PathLike], device=None, dtype=None, device_map=None, max_memory=None):
    """Load a model as a ``TransformerBridge``.

    ``spec`` is one of
      * ``"organism:NAME"`` -- a bundled self-repair organism (see ``coax_nb.organisms.list()``);
      * a local HF-format directory (``config.json``, ``model.safetensors``, tokenizer files);
      * a Hugging Face hub name such as ``"gpt2"`` (needs internet or a warm HF cache).

    ``device`` defaults to CUDA when present, else CPU; ``dtype`` defaults to fp32
    (bf16/fp16 on a GPU only). ``device_map`` (e.g. ``"auto"``) and ``max_memory`` spread
    a model too big for one device over several, through TransformerBridge; the engine
    then feeds inputs to the embedding's device and leaves the placement alone.
    """
    from transformer_lens.model_bridge import TransformerBridge

    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    spec_str = os.fspath(spec)
    organism = organisms.organism_name(spec_str)
    if organism is not None:
        path = organisms.path(organism)
        source = str(path)
    elif Path(spec_str).expanduser().is_dir():
        path = Path(spec_str).expanduser().resolve()
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{path} is a directory but holds no config.json; save the model there with "
                "model.save_pretrained(dir) and tokenizer.save_pretrained(dir)"
            )
        source = str(path)
        check_causal(json.loads((path / "config.json").read_text()), str(path))
    elif os.sep in spec_str and not Path(spec_str).exists() and spec_str.startswith((".", "/", "~")):
        raise ModelLoadError(f"no model directory at {spec_str!r}")
    else:
        path = None
        source = spec_str
    try:
        placement = {"device": str(dev)} if device_map is None else {"device_map": device_map, "max_memory": max_memory}
        bridge = TransformerBridge.boot_transformers(source, dtype=dt, **placement)
    except (OSError, ValueError) as exc:
        text = str(exc)
        offline = any(k in text for k in ("connect", "offline", "resolve", "Network", "couldn't", "not a local folder", "Max retries"))
        if path is None and offline:
            raise ModelLoadError(
                f"could not load {spec_str!r}: it is not in the local Hugging Face cache and the hub "
                "cannot be reached (offline?). Fix: pass a local HF-format directory "
                "(config.json + model.safetensors + tokenizer files), e.g. one written by "
                "model.save_pretrained(dir), or a bundled organism such as 'organism:handwired'."
            ) from exc
        raise ModelLoadError(f"could not load {spec_str!r}: {text}") from exc
    bridge.eval()
    check_causal({"architectures": [getattr(bridge.cfg, "architecture", None) or ""]}, spec_str)
    check_has_heads(bridge)
    bridge.coax_source = spec_str  # provenance for results
    return bridge


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


def provenance(model_spec: str, model=None) -> dict:
    """Package versions, platform and a hash of the model's weights (when on disk)."""
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    weights_sha256 = None
    directory = None
    spec = str(model_spec)
    organism = organisms.organism_name(spec)
    if organism is not None:
        directory = organisms.path(organism)
    elif Path(spec).is_dir():
        directory = Path(spec)
    if directory is not None:
        h = hashlib.sha256()
        for f in sorted(directory.glob("*.safetensors")) + sorted(directory.glob("*.bin")):
            h.update(f.read_bytes())
        weights_sha256 = h.hexdigest()
    return {"packages": versions, "python": sys.version.split()[0], "platform": platform.platform(),
            "model_spec": spec, "weights_sha256": weights_sha256,
            "device": str(next(model.parameters()).device) if model is not None else None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
