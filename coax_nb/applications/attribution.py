"""Attribution repair: a primary set's measured effect, with and without its backups."""
from __future__ import annotations

from typing import Optional

from ..engine import CLEAN, Variant, as_engine
from ..results import AttributionRepair
from ..tasks import Task
from ..variant import ablation_action
from .common import metric_of, variant_means


def attribution_repair(model_or_engine, task: Optional[Task], primaries, backups, *,
                       ablation: str = "zero") -> AttributionRepair:
    """The primaries' measured effect is corrupted by self-repair; removing the recovered
    backups with them shows the effect they really carry. Heads are removed the way
    ``ablation`` says (``"zero"``, ``"mean"`` or ``"resample"``, as in :func:`coax_nb.coax_scan`)."""
    ablation_action(ablation)
    engine = as_engine(model_or_engine, task, progress=False)
    P, B = engine.units(primaries), engine.units(backups)
    if not P:
        raise ValueError("the primary set is empty; attribution_repair measures the primaries' effect: pass them")
    if not B:
        raise ValueError("the backup set is empty; pass the recovered backups (e.g. CoAx's top heads)")
    both = [str(u) for u in B if u in P]
    if both:
        raise ValueError(f"heads {both} are both primaries and backups; the effect with backups would equal the "
                         "effect without them: remove them from one of the two")
    clean, p, pb = variant_means(engine, [CLEAN, Variant.ablate(P, ablation), Variant.ablate(P + B, ablation)],
                                 metric_of)
    return AttributionRepair(float(clean), float(p - clean), float(pb - clean), P, B, {"ablation": ablation})
