"""Bundled model organisms of self-repair: data and the loader, nothing else.

Each organism is a HF-format directory beside this file (config.json,
model.safetensors, tokenizer files) with a ``card.json`` describing how it was built
and its ground truth. Load one with ``load_model("organism:NAME")``. The scripts that
train or build them live in the repository's ``recipes/`` folder, outside the package.
"""
from __future__ import annotations

import builtins
import json
import os
from pathlib import Path
from typing import Optional

from ..compat import renamed

HERE = Path(__file__).resolve().parent
PREFIX = "organism:"


def organism_name(spec) -> Optional[str]:
    """``"organism:NAME"`` -> ``"NAME"``; anything else (a directory, a hub name, a
    loaded model) -> None. The one place that reads the prefix (``coax_nb.inputs``
    re-exports it)."""
    if not isinstance(spec, (str, os.PathLike)):
        return None
    spec = os.fspath(spec)
    if not spec.startswith(PREFIX):
        return None
    name = spec[len(PREFIX):].strip()
    if not name:
        raise ValueError(f"{spec!r} names no organism; bundled organisms: {', '.join(names())}")
    return name


def names(kind: Optional[str] = None) -> builtins.list[str]:
    """The bundled organisms, or those whose task is ``kind`` (``"ioi"``, ``"induction"``)."""
    every = sorted(p.name for p in HERE.iterdir() if (p / "card.json").is_file())
    if kind is None:
        return every
    kinds = {n: card(n)["task"]["kind"] for n in every}
    if kind not in set(kinds.values()):
        raise ValueError(f"no bundled organism has task kind {kind!r}; kinds: {', '.join(sorted(set(kinds.values())))}")
    return [n for n in every if kinds[n] == kind]


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


@renamed(seed="prompt_seed")
def task_for(spec: str, n_prompts: int = 64, prompt_seed: int = 0, templates=None):
    """The organism's own task (prompts, answers, metric) built from its card.
    ``spec`` is ``"organism:NAME"`` or the bare ``NAME``; ``templates`` replaces the two
    IOI templates an IOI organism was trained on (e.g. one of
    ``tasks.IOI_HELDOUT_TEMPLATES``). An induction organism gets repeated random tokens
    of its card's ``half_length``."""
    from transformers import PreTrainedTokenizerFast

    from ..tasks import IOI_TEMPLATES, check_count, induction_task, ioi_task

    n_prompts = check_count(n_prompts, "n_prompts")
    name = organism_name(spec) or str(spec)
    c = card(name)
    t = c["task"]
    if t["kind"] not in ("ioi", "induction"):
        raise ValueError(f"organism {name!r} has task kind {t['kind']!r}, which task_for does not know")
    tok = PreTrainedTokenizerFast.from_pretrained(str(path(name)))
    if t["kind"] == "induction":
        if templates is not None:
            raise ValueError(f"organism {name!r} has an induction task, which has no templates; leave templates out")
        token_range = t.get("token_range")
        task = induction_task(tok, n_prompts, t["half_length"], prompt_seed=prompt_seed,
                              token_range=None if token_range is None else tuple(token_range),
                              prepend_bos=t.get("prepend_bos", True))
    else:
        task = ioi_task(tok, n_prompts, prompt_seed=prompt_seed, names=t["names"], places=t["places"],
                        objects=t["objects"], prepend_bos=True,
                        templates=IOI_TEMPLATES if templates is None else templates)
    task.info["organism"] = name
    task.info["primaries"] = [tuple(x) for x in c["primaries"]]
    task.info["backups"] = [tuple(x) for x in c["backups"]]
    return task
