"""Bundled model organisms of self-repair.

Each organism is a HF-format directory beside this file (config.json,
model.safetensors, tokenizer files) with a ``card.json`` describing how it was built
and its ground truth. Load one with ``load_model("organism:NAME")``.
"""
from __future__ import annotations

import builtins
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def names() -> builtins.list[str]:
    return sorted(p.name for p in HERE.iterdir() if (p / "card.json").is_file())


def path(name: str) -> Path:
    d = HERE / name
    if not (d / "card.json").is_file():
        avail = ", ".join(names()) or "none"
        raise ValueError(f"unknown organism {name!r}; bundled organisms: {avail}")
    return d


def card(name: str) -> dict:
    return json.loads((path(name) / "card.json").read_text())


def list() -> dict[str, str]:  # noqa: A001 - the issue asks for organisms.list()
    """Bundled organisms with a one-line description each."""
    return {n: card(n).get("summary", "") for n in names()}


def task_for(spec: str, n_prompts: int = 64, seed: int = 0):
    """The organism's own task (prompts, answers, metric) built from its card."""
    from transformers import PreTrainedTokenizerFast

    from ..models import ORGANISM_PREFIX
    from ..tasks import ioi_task

    name = spec[len(ORGANISM_PREFIX):] if spec.startswith(ORGANISM_PREFIX) else spec
    c = card(name)
    t = c["task"]
    if t["kind"] != "ioi":
        raise ValueError(f"organism {name!r} has task kind {t['kind']!r}, which task_for does not know")
    tok = PreTrainedTokenizerFast.from_pretrained(str(path(name)))
    task = ioi_task(tok, n_prompts, seed=seed, names=t["names"], places=t["places"], objects=t["objects"],
                    prepend_bos=True)
    task.info["organism"] = name
    task.info["primaries"] = [tuple(x) for x in c["primaries"]]
    task.info["backups"] = [tuple(x) for x in c["backups"]]
    return task
