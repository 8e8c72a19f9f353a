"""Applications of recovered backups (method.md §5), one module each: attribution
repair, capability knockout, circuit completion, repair-aware pruning and the cross-model
induction completion panel. Each returns a result from :mod:`coax_nb.results`; every model run
goes through the engine's batched variants."""
from .attribution import attribution_repair
from .common import task_loss
from .completion import circuit_completion
from .induction import estimate_induction_transfer, induction_transfer
from .knockout import knockout
from .pruning import STATIC_ORDERS, prune

__all__ = ["attribution_repair", "circuit_completion", "estimate_induction_transfer", "induction_transfer", "knockout", "prune", "task_loss",
           "STATIC_ORDERS"]
