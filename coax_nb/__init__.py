"""coax-nb: Conditional Co-Ablation (CoAx) for transformer attention heads, in Jupyter."""
from .applications import (attribution_repair, circuit_completion, estimate_induction_transfer, induction_transfer,
                           knockout, prune, task_loss)
from .baselines import attribution_scores
from .cache import CacheNotice, use_cache
from .discover import discover_primaries
from .dla import dla_ground_truth, head_dla
from .engine import CLEAN, Engine, Term, Variant, as_engine
from .evaluate import average_precision, evaluate, precision_at_k, roc_auc
from .inputs import Run, resolve
from .inspect_head import inspect_head
from .models import ModelLoadError, load_model
from .presets import known_circuit, reproduce
from .recover import recovery
from .results import (Completion, Curves, Discovery, HeadInspection, InductionTransfer, PairScores, RecoveryResult, Robustness, Sensitivity, UnitScores,
                      load)
from .robustness import robustness
from .scores import ablation_energy, co_activation, coax_scan, greedy_completion, single_scan, synergy
from .sensitivity import p_sensitivity
from .tasks import Task, custom_task, induction_task, ioi_counterfactual, ioi_rewordings, ioi_task
from .units import Unit, parse_units
from .validate import counterfactual_patching, dla_handoff, freezing, wakeup
from .version import __version__

__all__ = [
    "__version__", "CacheNotice", "use_cache", "known_circuit", "reproduce",
    "CLEAN", "Engine", "Term", "Variant", "as_engine", "average_precision", "evaluate", "precision_at_k",
    "roc_auc", "Run", "resolve", "ModelLoadError", "load_model", "Completion", "Curves", "PairScores",
    "RecoveryResult", "UnitScores", "load", "ablation_energy", "co_activation", "coax_scan", "greedy_completion",
    "single_scan", "synergy", "Task", "custom_task", "induction_task", "ioi_counterfactual", "ioi_task", "Unit",
    "parse_units", "attribution_scores", "dla_ground_truth", "head_dla", "recovery",
    "counterfactual_patching", "dla_handoff", "freezing", "wakeup",
    "discover_primaries", "Discovery", "p_sensitivity", "Sensitivity", "robustness", "Robustness", "ioi_rewordings",
    "InductionTransfer", "inspect_head", "HeadInspection",
    "attribution_repair", "circuit_completion", "estimate_induction_transfer", "induction_transfer", "knockout", "prune", "task_loss",
]
