"""What to do to each unit in one run: a :class:`Variant` maps heads to actions.

Actions: ``zero``; ``mean`` (the head's mean output over the engine's clean run);
``cached:SOURCE`` -- replace with a cached run's output (``cached:clean`` freezes a
head at its intact-model output; ``cached:NAME`` patches it from a counterfactual
prompt set registered with ``Engine.add_source``). Heads not named are kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .units import Unit, members

ZERO, MEAN, CACHED = "zero", "mean", "cached"
# what "removing" a unit means in every score: ``ablation=`` takes one of these
ABLATIONS = ("zero", "mean", "resample")
RESAMPLE_SOURCE = "corrupted"  # the task's paired corrupted prompts, registered by the engine on first use


@dataclass(frozen=True)
class Variant:
    """Per-head actions. ``actions`` maps a :class:`Unit` to ``"zero"``, ``"mean"`` or
    ``"cached:SOURCE"`` (``cached:clean`` freezes a head at its intact-model output;
    ``cached:NAME`` patches it from a registered counterfactual prompt set).
    Heads not named are kept."""

    actions: tuple = ()

    @staticmethod
    def make(units: Iterable[Unit], action: str = ZERO) -> "Variant":
        if not isinstance(action, str) or (action not in (ZERO, MEAN) and not action.startswith(CACHED + ":")):
            raise ValueError(f"unknown action {action!r}; use 'zero', 'mean' or 'cached:SOURCE'")
        return Variant(tuple(sorted((u, action) for u in set(members(units)))))

    @staticmethod
    def zero(units: Iterable[Unit]) -> "Variant":
        return Variant.make(units, ZERO)

    @staticmethod
    def mean(units: Iterable[Unit]) -> "Variant":
        return Variant.make(units, MEAN)

    @staticmethod
    def freeze(units: Iterable[Unit]) -> "Variant":
        return Variant.make(units, CACHED + ":clean")

    @staticmethod
    def patch(units: Iterable[Unit], source: str) -> "Variant":
        return Variant.make(units, f"{CACHED}:{source}")

    @staticmethod
    def ablate(units: Iterable[Unit], ablation: str = "zero") -> "Variant":
        """Remove ``units`` the way ``ablation`` says: ``"zero"`` (the paper's default),
        ``"mean"`` (each unit's mean output over the clean run) or ``"resample"`` (each
        unit's output on the task's paired corrupted prompt, as in ACDC)."""
        return Variant.make(units, ablation_action(ablation))

    def __or__(self, other: "Variant") -> "Variant":
        """Combine two variants; ``other``'s action wins where both touch a head."""
        merged = dict(self.actions)
        merged.update(dict(other.actions))
        return Variant(tuple(sorted(merged.items())))

    @property
    def units(self) -> list[Unit]:
        return [u for u, _ in self.actions]

    def layer_actions(self, layer: int) -> tuple:
        return tuple((u.head, a) for u, a in self.actions if u.layer == layer)

    def first_difference(self, base: "Variant", n_layers: int) -> int:
        """First layer where this variant's actions differ from ``base``'s (n_layers if none)."""
        for layer in range(n_layers):
            if self.layer_actions(layer) != base.layer_actions(layer):
                return layer
        return n_layers

    def __str__(self) -> str:
        if not self.actions:
            return "clean"
        return " ".join(f"{u}:{a}" for u, a in self.actions)


CLEAN = Variant()


def ablation_action(ablation: str) -> str:
    """The per-unit action for an ablation type (see :data:`ABLATIONS`)."""
    if ablation == "resample":
        return f"{CACHED}:{RESAMPLE_SOURCE}"
    if ablation in (ZERO, MEAN):
        return ablation
    raise ValueError(f"unknown ablation {ablation!r}; choose one of {', '.join(ABLATIONS)} "
                     "(freeze and patch are Variant.freeze / Variant.patch)")
