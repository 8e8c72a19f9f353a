"""Applications of recovered backups (method.md §5), one module each: attribution
repair, capability knockout, circuit completion, repair-aware pruning and the label-free
induction pipeline. Each returns a result from :mod:`coax_nb.results`; every model run
goes through the engine's batched variants."""
from .attribution import attribution_repair
from .common import task_loss
from .completion import circuit_completion
from .induction import induction_transfer
from .knockout import knockout
from .pruning import STATIC_ORDERS, prune

__all__ = ["attribution_repair", "circuit_completion", "induction_transfer", "knockout", "prune", "task_loss",
           "STATIC_ORDERS"]
