"""coax-nb: Conditional Co-Ablation (CoAx) for transformer attention heads, in Jupyter."""
from .apply import (attribution_repair, circuit_completion, induction_transfer, knockout, prune, task_loss)
from .baselines import attribution_scores
from .dla import dla_ground_truth, head_dla
from .engine import CLEAN, Engine, Variant
from .evaluate import average_precision, evaluate, precision_at_k, roc_auc
from .models import ModelLoadError, load_model
from .scores import (PairScores, UnitScores, ablation_energy, co_activation, coax_scan, greedy_completion,
                     synergy)
from .recover import RecoveryResult, recovery
from .tasks import Task, custom_task, induction_task, ioi_task
from .units import Unit, parse_units
from .validate import counterfactual_patching, dla_handoff, freezing, ioi_counterfactual, wakeup

__version__ = "0.1.0"

__all__ = [
    "CLEAN", "Engine", "Variant", "average_precision", "evaluate", "precision_at_k", "roc_auc",
    "ModelLoadError", "load_model", "PairScores", "UnitScores", "ablation_energy", "co_activation", "coax_scan",
    "greedy_completion", "synergy", "Task", "custom_task", "induction_task", "ioi_task", "Unit",
    "parse_units", "attribution_scores", "dla_ground_truth", "head_dla", "RecoveryResult", "recovery",
    "counterfactual_patching", "dla_handoff", "freezing", "ioi_counterfactual", "wakeup",
    "attribution_repair", "circuit_completion", "induction_transfer", "knockout", "prune", "task_loss",
]
