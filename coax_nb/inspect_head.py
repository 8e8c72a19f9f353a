"""The head inspector: everything about one head in one place -- its attention pattern on
a chosen prompt, its direct logit attribution to the answer at each output position
(intact, and with the primaries S ablated), its wake-up trace as the primaries go one by
one, and every score a scan gave it. ``HeadMap.inspect(head)`` opens it for a clicked
head; it is also a plain call:

>>> from coax_nb import Engine, load_model, inspect_head
>>> from coax_nb.organisms import task_for
>>> e = Engine(load_model("organism:handwired"), task_for("handwired", 8), progress=False)
>>> h = inspect_head(e, "L2H0", primaries=["L1H0", "L1H1"])
>>> h.trace["dla"][-1] > h.trace["dla"][0]   # the backup writes the answer once S is gone
True
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .dla import head_dla, head_dla_at
from .engine import CLEAN, Engine, Variant
from .results import HeadInspection, UnitScores
from .variant import ablation_action


def inspect_head(engine: Engine, head, primaries=(), *, prompt: int = 0, scores: Optional[UnitScores] = None,
                 ablation: str = "zero") -> HeadInspection:
    """Inspect ``head`` (e.g. ``"L9H9"``) on ``engine``'s prompts: attention pattern and
    per-position DLA on prompt ``prompt``; the wake-up trace (its mean output norm and
    mean DLA with the first 0, 1, ... of ``primaries`` ablated, over every prompt); and
    ``scores``' values for it (a scan's UnitScores, optional)."""
    if not isinstance(engine, Engine):
        raise TypeError(f"inspect_head takes an Engine (it reuses its cached runs), got {type(engine).__name__}: "
                        "inspect_head(Engine(model, task), 'L9H9')")
    ablation_action(ablation)
    units = engine.units([head] if isinstance(head, str) or not hasattr(head, "__iter__") or
                         isinstance(head, tuple) else head)
    if len(units) != 1:
        raise ValueError(f"inspect one head at a time, got {len(units)}: {', '.join(map(str, units))}")
    u = units[0]
    P = engine.units(primaries) if primaries else []
    if u in P:
        raise ValueError(f"{u} is one of the primaries; inspect a head outside S (the primaries are ablated in the "
                         "trace), or leave primaries out")
    if isinstance(prompt, bool) or not isinstance(prompt, (int, np.integer)) or not 0 <= prompt < engine.n_prompts:
        raise ValueError(f"prompt must be an index 0..{engine.n_prompts - 1} of the engine's prompts, got {prompt!r}")
    H = engine.n_heads
    i = u.flat(H)
    bi = next(j for j, b in enumerate(engine.buckets) if prompt in b.index)
    b = engine.buckets[bi]
    attention = engine.attention_patterns(bi)[b.index.index(prompt), u.layer, u.head].double().cpu().numpy()
    tokens = engine.task.prompts[prompt]
    tok = getattr(engine.model, "tokenizer", None)
    labels = tok.convert_ids_to_tokens(tokens) if tok is not None else [str(t) for t in tokens]
    has_targets = engine.task is not None and engine.task.targets is not None
    dla = {}
    if has_targets:
        clean, weight = head_dla_at(engine, prompt, CLEAN)
        dla = {"clean": clean[:, i].tolist(), "counted": weight.tolist()}
        if P:
            dla["primaries ablated"] = head_dla_at(engine, prompt, Variant.ablate(P, ablation))[0][:, i].tolist()
    trace = {"n_ablated": list(range(len(P) + 1)), "norm": [], "dla": []}
    for n in trace["n_ablated"]:
        v = Variant.ablate(P[:n], ablation) if n else CLEAN
        trace["norm"].append(float(engine.mean_output_norms(engine.base(v))[i]))
        trace["dla"].append(float(head_dla(engine, v)[i]) if has_targets else float("nan"))
    row = {}
    if scores is not None:
        if not isinstance(scores, UnitScores) or (scores.n_layers, scores.n_heads) != (engine.n_layers, H):
            raise ValueError("scores must be a UnitScores of this model (a coax_scan or single_scan of the same "
                             "engine)")
        row = {name: float(vals[i]) for name, vals in scores.scores.items()}
    return HeadInspection(u, [str(p) for p in P], prompt, labels, [int(p) for p in b.positions],
                          attention.tolist(), dla, trace, row,
                          {"ablation": ablation, "n_prompts": engine.n_prompts, "task": engine.task.name})
