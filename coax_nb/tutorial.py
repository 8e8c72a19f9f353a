"""One call that the tutorial notebooks share: model, task, engine, primaries and the
ground truth (from the organism's card when there is one)."""
from __future__ import annotations

from typing import Optional

from .engine import Engine
from .models import ORGANISM_PREFIX, load_model
from .units import Unit


def resolve_task(model, spec: str, task: str = "default", n_prompts: int = 32, prompt_seed: int = 0):
    """The organism's own task for ``task="default"`` on an organism, else ioi / induction."""
    from . import organisms
    from .tasks import induction_task, ioi_task

    if task == "default" and str(spec).startswith(ORGANISM_PREFIX):
        return organisms.task_for(spec, n_prompts, seed=prompt_seed)
    if task in ("ioi", "default"):
        return ioi_task(model, n_prompts, seed=prompt_seed)
    if task == "induction":
        return induction_task(model, n_prompts, seed=prompt_seed)
    raise ValueError(f"unknown task {task!r}; choose default, ioi or induction")


def seed_and_truth(engine: Engine, spec: str, seed=None) -> tuple[list[Unit], list[Unit]]:
    """The seed (given, or the organism card's primaries) and the known backups (if any)."""
    from . import organisms

    truth = []
    if str(spec).startswith(ORGANISM_PREFIX):
        card = organisms.card(str(spec)[len(ORGANISM_PREFIX):])
        seed = seed if seed else card["primaries"]
        truth = card["backups"]
    if not seed:
        raise ValueError("give the primary heads (seed), e.g. seed=['9.9', '9.6']; only organisms have defaults")
    if isinstance(seed, str):
        seed = [s for s in seed.replace(",", " ").split() if s]
    return engine.units(seed), engine.units(truth)


def setup(model: str, task: str = "default", n_prompts: int = 32, seed=None, device: Optional[str] = None):
    m = load_model(model, device=device)
    t = resolve_task(m, model, task, n_prompts)
    engine = Engine(m, t, progress=False)
    primaries, truth = seed_and_truth(engine, model, seed)
    return m, t, engine, primaries, truth
