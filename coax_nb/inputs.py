"""One resolver of a run's inputs, shared by the CLI, the report and the notebooks.

``resolve(model, task, n_prompts, primaries, prompt_seed, device)`` turns what a user
types (a model spec, a task name, head names) into a :class:`Run`: the loaded model,
the task, an :class:`~coax_nb.engine.Engine` over it, the primary set S and the known
backups (the organism card's, when the model is a bundled organism).

>>> run = resolve("organism:handwired", n_prompts=8)
>>> [str(u) for u in run.primaries], run.primaries_source
(['L1H0', 'L1H1'], 'organism card')

``primaries="auto"`` / ``"auto:METHOD"`` (``single``, ``atp``, ``role``, ``acdc``;
options ``:k=N`` and ``:tau=X``) lets :func:`~coax_nb.discover.discover_primaries`
choose S on the run's own engine; ``primaries_source`` then names the method.
"""
from __future__ import annotations

import json
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from . import organisms
from .discover import discover_primaries, parse_auto
from .engine import Engine, check_primaries
from .models import ModelLoadError, load_model
from .organisms import organism_name
from .results import Discovery
from .tasks import Task, induction_task, ioi_task
from .units import Unit, parse_units

__all__ = ["Run", "TASKS", "check_inputs", "heads_text", "organism_name", "resolve", "resolve_task"]

TASKS = ("default", "ioi", "induction")


@dataclass
class Run:
    """A resolved run: everything a scan, a report or a tutorial needs."""

    model_spec: Optional[str]
    model: object
    task: Task
    engine: Engine
    primaries: list[Unit]
    truth: list[Unit]
    primaries_source: str  # "given", "organism card" or "auto:METHOD (how S was chosen)"
    discovery: Optional[Discovery] = None  # the evidence per head, when S was chosen by "auto"


def _count(value, what: str, minimum: int) -> int:
    """An integer parameter, also from the digit strings papermill or a shell may pass."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _auto(primaries):
    """The ``"auto[:METHOD...]"`` spec as one stripped string (also from a one-item
    list, as a CLI gives it), or None when ``primaries`` names heads."""
    if isinstance(primaries, (list, tuple)) and len(primaries) == 1:
        primaries = primaries[0]
    return primaries.strip() if parse_auto(primaries) is not None else None


def _head_names(primaries):
    """None for "not given" (None, "", []); else the heads, syntax-checked before any
    model is loaded so a typo fails in a second, not after the load (an ``auto`` spec
    is checked the same way and returned as its string)."""
    if primaries is None or (isinstance(primaries, str) and not primaries.strip()):
        return None
    if isinstance(primaries, (list, tuple)) and len(primaries) == 0:
        return None
    auto = _auto(primaries)
    if auto is not None:
        return auto
    parse_units(primaries, 1 << 30, 1 << 30)
    return primaries


def heads_text(primaries) -> Optional[str]:
    """Any accepted spelling of a head set as one string of names (``"L9H9 L9H10"``), or
    None when none is given: the form that survives papermill ``-p``, YAML and CSV."""
    given = _head_names(primaries)
    if given is None or _auto(given) is not None:
        return given
    return " ".join(str(u) for u in parse_units(given, 1 << 30, 1 << 30))


def resolve_task(model, spec, task="default", n_prompts: int = 32, prompt_seed: int = 0) -> Task:
    """The task named ``task`` for ``model``: ``"default"`` is an organism's own task
    (from its card) and IOI for any other model; ``"ioi"``, ``"induction"``; a
    :class:`Task` is returned as it is."""
    if isinstance(task, Task):
        return task
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    n_prompts = _count(n_prompts, "n_prompts", 1)
    prompt_seed = _count(prompt_seed, "prompt_seed", 0)
    name = organism_name(spec)
    if name is not None and task in ("default", organisms.card(name)["task"]["kind"]):  # the card's own settings
        return organisms.task_for(name, n_prompts, prompt_seed=prompt_seed)
    if task in ("ioi", "default"):
        return ioi_task(model, n_prompts, prompt_seed=prompt_seed)
    return induction_task(model, n_prompts, prompt_seed=prompt_seed)


def _config_shape(folder: Path) -> Optional[tuple[int, int]]:
    """(layers, heads per layer) from a model folder's config.json, when it names them."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    layers = next((config[k] for k in ("n_layer", "num_hidden_layers", "n_layers") if k in config), None)
    heads = next((config[k] for k in ("n_head", "num_attention_heads", "n_heads") if k in config), None)
    return (layers, heads) if isinstance(layers, int) and isinstance(heads, int) else None


def check_inputs(model="organism:ioi_dormant", task="default", n_prompts: int = 32, primaries=None,
                 prompt_seed: int = 0) -> None:
    """:func:`resolve`'s checks that need no model, so a typo fails in a second: the task
    name, the counts, the head names (against the model's shape when its config.json is
    at hand), an organism's name, a local model folder's presence. ``coax-nb report``
    runs them before its kernel starts; raises ValueError (ModelLoadError for a model
    folder that is missing)."""
    if not isinstance(model, (str, os.PathLike, torch.nn.Module)):
        raise TypeError(f"model must be a spec ('organism:NAME', a model folder, a hub name) or a loaded model, "
                        f"got {type(model).__name__} {model!r:.40}")
    if not isinstance(task, Task) and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    _count(n_prompts, "n_prompts", 1)
    _count(prompt_seed, "prompt_seed", 0)
    given = _head_names(primaries)
    spec = os.fspath(model) if isinstance(model, (str, os.PathLike)) else getattr(model, "coax_source", None)
    name = organism_name(spec)
    card = organisms.card(name) if name is not None else None  # an unknown organism fails here
    folder = None
    if isinstance(model, (str, os.PathLike)):
        folder = organisms.path(name) if name is not None else Path(spec).expanduser()
        if name is None and folder.is_file():
            raise ModelLoadError(f"{spec!r} is a file; give the model's folder (config.json, weights, tokenizer "
                                 "files), e.g. one written by model.save_pretrained(dir)")
        if name is None and spec.startswith((".", "/", "~")) and not folder.exists():
            raise ModelLoadError(f"no model directory at {spec!r}; give a folder written by "
                                 "model.save_pretrained(dir), a hub name or organism:NAME")
    if given is None and card is None:
        raise ValueError("give the primary heads, e.g. primaries='L9H9 L9H6'; only bundled organisms "
                         "(organism:NAME) come with a default primary set. Or primaries='auto' to discover them")
    shape = _config_shape(folder) if folder is not None and folder.is_dir() else None
    if given is not None and shape is not None and _auto(given) is None:
        parse_units(given, *shape)

def resolve(model="organism:ioi_dormant", task="default", n_prompts: int = 32, primaries=None,
            prompt_seed: int = 0, device: Optional[str] = None, progress: bool = False, *,
            dtype: Optional[str] = None, position_mode: Optional[str] = None) -> Run:
    """Load ``model`` (a spec: ``"organism:NAME"``, a local HF directory, a hub name; or
    an already loaded model), build its task and engine, and settle the primary set.

    ``primaries`` is a list of head names, one string of several (``"L9H9 L9H6"``, the
    safe way through papermill), ``"auto"`` / ``"auto:METHOD"`` (chosen by
    :func:`~coax_nb.discover.discover_primaries`, e.g. ``"auto:acdc:tau=0.3"``), or
    None: an organism's card then gives them. The known
    backups (``truth``) come from the card too, and are empty for other models.
    ``dtype`` is the one to load the model in (see :func:`~coax_nb.models.load_model`);
    ``position_mode`` overrides the task's for the engine.
    """
    check_inputs(model, task, n_prompts, primaries, prompt_seed)  # before any load
    given = _head_names(primaries)
    if isinstance(model, (str, os.PathLike)):
        spec, m = os.fspath(model), None
    else:
        spec, m = getattr(model, "coax_source", None), model
    name = organism_name(spec)
    card = organisms.card(name) if name is not None else None
    if m is None:
        m = load_model(spec, device=device, dtype=dtype)
    t = resolve_task(m, spec, task, n_prompts, prompt_seed)
    engine = Engine(m, t, position_mode=position_mode, device=device, progress=progress)
    auto = parse_auto(_auto(given)) if given is not None else None
    discovery = None
    if auto is not None:
        discovery = discover_primaries(engine, method=auto["method"], k=auto["k"], tau=auto["tau"], progress=progress)
        heads, source = check_primaries(engine, discovery.primaries), discovery.source
    else:
        heads = check_primaries(engine, given if given is not None else card["primaries"])
        source = "given" if given is not None else "organism card"
    truth = engine.units(card["backups"]) if card is not None else []
    return Run(spec, m, t, engine, heads, truth, source, discovery)
