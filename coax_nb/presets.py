"""The paper's protocols as presets, and the documented circuits they are scored against.

``reproduce("ioi-gpt2")`` runs the paper's IOI backup-recovery experiment on GPT-2 small
with its settings (96 prompts per set, prompt seeds 1, 15, 22 and 8, the last position,
the full vocabulary, zero ablation, BOS prepended) and returns the recovery table with the
paper's numbers beside the measured ones. ``model=`` runs the same preset code on another
model -- a bundled organism, whose card gives its circuit, stands in for GPT-2 offline.

The prompts are this package's IOI generator (:func:`coax_nb.ioi_task`: the paper's
template ``When {IO} and {S} went to the {place}, {S} gave a {object} to`` and its mirror,
with this package's names, places and objects); the reference code's own word lists are
not public here, so a measured AUC can differ from the paper's by the prompt sample too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

# GPT-2 small's IOI circuit as documented by Wang et al. (2022), "Interpretability in the
# Wild", heads as layer.head; method.md section 6
KNOWN_CIRCUITS = {
    ("gpt2", "ioi"): {
        "source": "Wang et al. 2022, Interpretability in the Wild (IOI in GPT-2 small)",
        "roles": {
            "name movers": ["L9H9", "L10H0", "L9H6"],
            "backup name movers": ["L9H0", "L9H7", "L10H1", "L10H2", "L10H6", "L10H10", "L11H2", "L11H9"],
            "negative name movers": ["L10H7", "L11H10"],
            "S-inhibition": ["L7H3", "L7H9", "L8H6", "L8H10"],
            "induction": ["L5H5", "L5H8", "L5H9", "L6H9"],
            "duplicate token": ["L0H1", "L0H10", "L3H0"],
            "previous token": ["L2H2", "L4H11"],
        },
        "primaries": "name movers",
        "backups": "backup name movers",
    },
}


def known_circuit(model: str, task: str = "ioi") -> dict:
    """The documented circuit of ``model`` on ``task``: ``{"primaries", "backups", "roles",
    "source"}``. ``model`` is a hub name in the registry (``"gpt2"``) or a bundled organism
    (``"organism:ioi_dormant"``: its card's primaries and backups)."""
    from .organisms import card, names, organism_name
    from .units import parse_name

    organism = organism_name(model)
    if organism is not None:
        if organism not in names():
            raise ValueError(f"no bundled organism {organism!r}; bundled: {', '.join(names())}")
        c = card(organism)
        kind = c["task"]["kind"]
        if kind != task:
            raise ValueError(f"organism {organism} documents its circuit on {kind}, not {task}; use task={kind!r}")
        primaries = [str(parse_name(h)) for h in c["primaries"]]
        backups = [str(parse_name(h)) for h in c["backups"]]
        return {"primaries": primaries, "backups": backups, "roles": {"primaries": primaries, "backups": backups},
                "source": f"the organism's card (coax_nb/organisms/{organism}/card.json)"}
    key = (str(model), str(task))
    if key not in KNOWN_CIRCUITS:
        have = ", ".join(f"{m} on {t}" for m, t in KNOWN_CIRCUITS)
        raise ValueError(f"no documented circuit for {model} on {task}; documented: {have}, and every bundled "
                         "organism on its own task (organism:NAME)")
    entry = KNOWN_CIRCUITS[key]
    return {"primaries": list(entry["roles"][entry["primaries"]]), "backups": list(entry["roles"][entry["backups"]]),
            "roles": {k: list(v) for k, v in entry["roles"].items()}, "source": entry["source"]}


@dataclass(frozen=True)
class Preset:
    """One of the paper's experiments, every setting it fixes."""

    name: str
    model: str
    task: str
    n_prompts: int
    prompt_seeds: tuple
    position_mode: str
    top_r: int
    ablation: str
    prepend_bos: bool
    selectors: tuple
    paper: dict = field(default_factory=dict)  # selector -> the paper's ROC-AUC
    about: str = ""


PRESETS = {
    "ioi-gpt2": Preset(
        name="ioi-gpt2", model="gpt2", task="ioi", n_prompts=96, prompt_seeds=(1, 15, 22, 8),
        position_mode="last", top_r=0, ablation="zero", prepend_bos=True,
        selectors=("single", "atp", "eap_ig", "atp_gd", "comp", "ratio"),
        paper={"single": 0.60, "atp": 0.65, "eap_ig": 0.58, "atp_gd": 0.67, "comp": 0.94, "ratio": 0.98},
        about="backup recovery on IOI, GPT-2 small: primaries the three name movers, truth the eight backup "
              "name movers; ROC-AUC of each selector over the heads outside the primaries"),
}


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"no preset {name!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def reproduce(name: str = "ioi-gpt2", model: Optional[str] = None, *, prompt_seeds=None,
              n_prompts: Optional[int] = None, device: Optional[str] = None, progress: bool = True):
    """Run preset ``name`` and return its :class:`~coax_nb.results.RecoveryResult` (mean ±
    std over the prompt seeds) with the paper's AUCs in ``meta["paper"]``: ``table()``
    prints them side by side. ``model`` replaces the preset's model (a bundled organism
    stands in offline; its card gives the circuit); ``prompt_seeds`` and ``n_prompts``
    replace the preset's (a quick look)."""
    from .models import load_model
    from .organisms import organism_name, task_for
    from .recover import recovery
    from .tasks import check_count, check_prompt_seeds, ioi_task

    p = preset(name)
    spec = p.model if model is None else str(model)
    seeds = check_prompt_seeds(p.prompt_seeds if prompt_seeds is None else prompt_seeds, default=p.prompt_seeds)
    n = p.n_prompts if n_prompts is None else check_count(n_prompts, "n_prompts")
    circuit = known_circuit(spec, p.task)  # before the model loads: an unknown circuit fails at once
    m = load_model(spec, device=device)
    if organism_name(spec) is not None:
        def make(seed):  # the organism's own prompts (its card's templates and BOS), the preset's counts
            return task_for(spec, n, prompt_seed=seed)
    else:
        def make(seed):
            return ioi_task(m, n, prompt_seed=seed, prepend_bos=p.prepend_bos)
    result = recovery(m, make, primaries=circuit["primaries"], truth=circuit["backups"], selectors=p.selectors,
                      prompt_seeds=seeds, top_r=p.top_r, ablation=p.ablation, progress=progress,
                      title=f"{p.name} on {spec}")
    result.meta.update(preset=p.name, paper=dict(p.paper), paper_model=p.model, circuit_source=circuit["source"],
                       model=spec, prompt_seeds=seeds)
    return result


__all__ = ["KNOWN_CIRCUITS", "PRESETS", "Preset", "known_circuit", "preset", "reproduce"]
