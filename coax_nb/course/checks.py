"""Exercise checks for the course: a student's answer against the engine's own value.

``check(exercise, answer, engine=..., ...)`` computes the value the package itself gets
(the engine and the scores API, never the student's code) and, when the answer is off,
the values of the usual mistakes (a missing centering or square, the wrong sign, the wrong
reference run, ...). The hint names the mistake the answer matches, so a student reads
"you left out the centering" instead of only "wrong".

A wrong answer raises :class:`CheckFailed` (an ``AssertionError``: a failed check stops a
notebook run like a failed ``assert``); a right one returns :class:`Passed`.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch

# float32 engine against a float64 hand computation: agreement to a few 1e-5 relative;
# a mistake is named when the answer is within MISTAKE_RTOL of what that mistake gives
PASS_RTOL, PASS_ATOL = 2e-3, 1e-9
MISTAKE_RTOL = 2e-2


class CheckFailed(AssertionError):
    """The answer is not the engine's value; ``hint`` says what looks off, ``mistake``
    names the matched mistake (None when none matched)."""

    def __init__(self, exercise: str, hint: str, mistake: Optional[str] = None):
        self.exercise, self.hint, self.mistake = exercise, hint, mistake
        super().__init__(f"{exercise}: {hint}")


@dataclass
class Passed:
    exercise: str
    answer: object
    expected: object
    note: str = ""

    def __repr__(self) -> str:
        return f"correct ({self.exercise}): {_show(self.answer)}" + (f" -- {self.note}" if self.note else "")

    def _repr_html_(self) -> str:
        import html

        return f'<p style="color:#1b7a35"><b>&#10003; correct</b> ({html.escape(self.exercise)}): ' \
               f"{html.escape(_show(self.answer))}{html.escape(' -- ' + self.note) if self.note else ''}</p>"


def _show(x) -> str:
    if isinstance(x, float):
        return f"{x:.6g}"
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(map(str, x)) + "]"
    return str(x)


# ---------------------------------------------------------------------------- numbers
def _number(exercise: str, answer, what: str) -> float:
    """The answer as a finite float, or a CheckFailed that says what it is instead."""
    if answer is None or answer is Ellipsis:
        raise CheckFailed(exercise, f"not answered yet: `{what}` is still {answer!r}; fill in the exercise cell "
                                    "above, run it, then run this check again", "blank")
    if isinstance(answer, torch.Tensor) or isinstance(answer, np.ndarray):
        if (answer.size if isinstance(answer, np.ndarray) else answer.numel()) != 1:
            shape = tuple(answer.shape)
            raise CheckFailed(exercise, f"`{what}` is an array of shape {shape}, not one number: average over "
                                        "prompts (and output positions) to get a single energy", "shape")
        answer = answer.item()
    if isinstance(answer, bool) or not isinstance(answer, numbers.Real):
        raise CheckFailed(exercise, f"`{what}` should be a number, got {type(answer).__name__}", "type")
    answer = float(answer)
    if not math.isfinite(answer):
        raise CheckFailed(exercise, f"`{what}` is {answer}: a log of zero or a division by zero somewhere? "
                                    "(work with logits and log-softmax, not with probabilities)", "non-finite")
    return answer


def _close(a: float, b: float, rtol: float) -> bool:
    return abs(a - b) <= rtol * max(abs(a), abs(b)) + PASS_ATOL


def _compare(exercise: str, answer: float, expected: float, mistakes: dict[str, tuple[float, str]],
             what: str) -> Passed:
    """Pass within PASS_RTOL; otherwise name the closest listed mistake the answer matches."""
    if _close(answer, expected, PASS_RTOL):
        return Passed(exercise, answer, expected)
    near = [(abs(answer - v) / max(abs(v), 1e-12), name, hint) for name, (v, hint) in mistakes.items()
            if math.isfinite(v) and _close(answer, v, MISTAKE_RTOL) and not _close(v, expected, PASS_RTOL)]
    if near:
        _, name, hint = min(near)
        raise CheckFailed(exercise, hint, name)
    if expected != 0 and answer != 0 and np.sign(answer) != np.sign(expected):
        raise CheckFailed(exercise, f"`{what}` has the wrong sign: check the order of the subtraction", "sign")
    ratio = answer / expected if expected else math.inf
    raise CheckFailed(exercise, f"`{what}` = {answer:.6g} is {ratio:.3g} times the engine's value; none of the "
                                "usual mistakes gives it -- go through the definition step by step", None)


# ----------------------------------------------------------------- the Fisher geometry
def _logits(engine, variants) -> list[torch.Tensor]:
    """``[N, V]`` float64 output-position logits of each variant (N = counted positions)."""
    return [torch.cat([x.double() for x in per_prompt]) for per_prompt in engine.logits(list(variants))]


def _features(z_ref: torch.Tensor, z: torch.Tensor, *, centered: bool = True, weight: str = "sqrt",
              p: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``sqrt(p)(d - <p,d>)`` and its usual mis-spellings: no centering, ``p`` for
    ``sqrt(p)``, another distribution for ``p``."""
    p = torch.softmax(z_ref, -1) if p is None else p
    d = z - z_ref
    if centered:
        d = d - (p * d).sum(-1, keepdim=True)
    return {"sqrt": p.sqrt(), "p": p, "none": torch.ones_like(p)}[weight] * d


def _energy(f: torch.Tensor) -> float:
    return (f ** 2).sum(-1).mean().item()


def _unit(engine, unit, what: str = "unit"):
    if unit is None:
        raise TypeError(f"this check needs `{what}=` (the head of the exercise, e.g. 'L1H0')")
    return engine.units([unit])[0]


def fisher_energy(answer, *, engine, unit) -> Passed:
    """Centered Fisher energy of zero-ablating one head: ``mean ||sqrt(p0)(d - <p0,d>)||^2``."""
    from ..scores import ablation_energy
    from ..variant import Variant

    name = "fisher_energy"
    answer = _number(name, answer, "energy")
    u = _unit(engine, unit)
    expected = ablation_energy(engine, Variant.zero([u]))
    z0, zu = _logits(engine, [Variant(), Variant.zero([u])])
    p0, pu = torch.softmax(z0, -1), torch.softmax(zu, -1)
    f = _features(z0, zu)
    n_pos = f.shape[0]
    mistakes = {
        "centering": (_energy(_features(z0, zu, centered=False)),
                      "you left out the centering: subtract <p0, d> (the p0-weighted mean of d) from d before "
                      "weighting; a shift of every logit by the same amount changes no probability"),
        "square": (f.norm(dim=-1).mean().item(),
                   "missing square: the energy is the mean of ||f||^2, you averaged ||f||"),
        "weight": (_energy(_features(z0, zu, weight="p")),
                   "weight by sqrt(p0), not p0: <f_u, f_v> must equal d_u^T F d_v with F = diag(p0) - p0 p0^T"),
        "unweighted": (_energy(_features(z0, zu, weight="none")),
                       "you measured a plain L2 distance of centered logits: weight each token by sqrt(p0)"),
        "reference": (_energy(_features(z0, zu, p=pu)),
                      "wrong reference run for the metric: p0 is the clean distribution (softmax of the clean "
                      "logits), not the ablated one"),
        "sum": (_energy(f) * n_pos,
                "you summed over prompts: the energy is the mean over (prompt, output position)"),
        "probabilities": (_energy(_features(p0, pu, p=p0)),
                          "d must be a difference of logits (or log-probabilities), not of probabilities"),
        "kl": ((p0 * (torch.log_softmax(z0, -1) - torch.log_softmax(zu, -1))).sum(-1).mean().item(),
               "that is the KL divergence KL(p0 || p_u); the energy is its second-order term, d^T F d "
               "(about twice the KL): build the Fisher feature f instead"),
    }
    return _compare(name, answer, expected, mistakes, "energy")


def coax_score(answer, *, engine, unit, primaries) -> Passed:
    """comp(u | S) = conditional(u | S) - single(u)."""
    from ..scores import ablation_energy
    from ..variant import Variant

    name = "coax_score"
    answer = _number(name, answer, "comp")
    u = _unit(engine, unit)
    S = engine.units(primaries)
    if not S:
        raise TypeError("coax_score needs `primaries=` (the primary set S, e.g. ['L1H0', 'L1H1'])")
    if u in S:
        raise ValueError(f"{u} is one of the primaries; the CoAx score is defined for heads outside S")
    single = ablation_energy(engine, Variant.zero([u]))
    conditional = ablation_energy(engine, Variant.zero(S + [u]), reference=Variant.zero(S))
    from_clean = ablation_energy(engine, Variant.zero(S + [u]))
    z_S, z_Su = _logits(engine, [Variant.zero(S), Variant.zero(S + [u])])
    own_metric = _energy(_features(z_S, z_Su))
    expected = conditional - single
    mistakes = {
        "sign": (single - conditional, "wrong sign: comp = conditional(u | S) - single(u), so a backup (which "
                                       "matters more once S is gone) scores positive"),
        "reference": (from_clean - single,
                      "wrong reference run: the conditional effect compares S+u ablated with S ablated "
                      "(reference z_S), not with the clean run"),
        "conditional-only": (conditional, "that is conditional(u | S) alone; subtract single(u)"),
        "single-only": (single, "that is single(u) alone, u's effect on the intact model"),
        "geometry": (own_metric - single,
                     "you measured the conditional change in the S-ablated model's own metric (softmax of z_S); "
                     "CoAx measures every change in the clean metric p0 (the default geometry)"),
        "ratio": (conditional / max(single, 1e-9),
                  "that is the amplification ratio conditional / single; the CoAx score is the difference"),
    }
    return _compare(name, answer, expected, mistakes, "comp")


def synergy_cell(answer, *, engine, u, v) -> Passed:
    """Normalised pairwise synergy ``mean ||f_uv - f_u - f_v||^2 / sqrt(single(u) single(v))``."""
    from ..scores import synergy
    from ..variant import Variant

    name = "synergy_cell"
    answer = _number(name, answer, "s_uv")
    a, b = _unit(engine, u, "u"), _unit(engine, v, "v")
    if a == b:
        raise ValueError("synergy_cell needs two different heads u and v")
    expected = float(synergy(engine, [a, b], progress=False)["normalized"][0, 1])
    z0, za, zb, zab = _logits(engine, [Variant(), Variant.zero([a]), Variant.zero([b]), Variant.zero([a, b])])
    fa, fb, fab = _features(z0, za), _features(z0, zb), _features(z0, zab)
    ea, eb, eab = _energy(fa), _energy(fb), _energy(fab)
    raw = _energy(fab - fa - fb)
    norm = math.sqrt(max(ea * eb, 0.0)) or 1e-12
    mistakes = {
        "normalisation": (raw, "not normalised: divide mean ||I_uv||^2 by sqrt(single(u) single(v))"),
        "product": (raw / max(ea * eb, 1e-12), "normalise by the square root of single(u) x single(v), not by "
                                               "their product"),
        "energies": ((eab - ea - eb) / norm,
                     "you subtracted energies (scalars); synergy subtracts the features first, "
                     "I_uv = f_uv - f_u - f_v, then takes mean ||I_uv||^2"),
        "sign": (_energy(fab + fa + fb) / norm,
                 "wrong sign: I_uv = f(z0 -> z_uv) - f(z0 -> z_u) - f(z0 -> z_v)"),
        "square": ((fab - fa - fb).norm(dim=-1).mean().item() / norm,
                   "missing square: take mean ||I_uv||^2, not mean ||I_uv||"),
        "centering": (_energy(_features(z0, zab, centered=False) - _features(z0, za, centered=False)
                              - _features(z0, zb, centered=False)) / norm,
                      "you left out the centering of the features (subtract <p0, d> from each d)"),
    }
    return _compare(name, answer, expected, mistakes, "s_uv")


def freezing_fraction(answer, *, engine, primaries, selected) -> Passed:
    """Share of the self-repair removed by freezing ``selected`` at their clean outputs
    while S is ablated: ``(m_S - m_X) / (m_S - m_none)``."""
    from ..validate import freezing

    name = "freezing_fraction"
    answer = _number(name, answer, "removed")
    r = freezing(engine, None, primaries, selected, n_random=1)
    m = r.metric
    repair = m["self_repair"]
    expected = r.removed
    mistakes = {
        "complement": (1 - expected, "you computed the share of the repair that survives, 1 - removed: the "
                                     "exercise asks for the share that freezing takes away"),
        "sign": (-expected, "wrong sign: removed = (m_S - m_X) / (m_S - m_none), positive when freezing X "
                            "lowers the metric"),
        "reference": ((m["clean"] - m["selected_frozen"]) / repair,
                      "wrong reference run: compare with the primaries-ablated metric m_S, not the clean one"),
        "denominator": ((m["primaries_ablated"] - m["selected_frozen"])
                        / (m["clean"] - m["primaries_ablated"]),
                        "divide by the self-repair R = m_S - m_none (primaries ablated minus every other head "
                        "frozen as well), not by the effect of removing the primaries"),
    }
    return _compare(name, answer, expected, mistakes, "removed")


def primaries(answer, *, engine, share: float = 0.25) -> Passed:
    """The primary set by the direct-effect criterion: every head whose clean direct logit
    attribution is at least ``share`` of the largest head's (the organisms' cards use 25%)."""
    from ..dla import dla_ground_truth
    from ..scores import single_scan

    name = "primaries"
    if answer is None or answer is Ellipsis or (isinstance(answer, (list, tuple, set)) and not answer):
        raise CheckFailed(name, "not answered yet: `S` is empty; list the primary heads, e.g. ['L1H0', 'L1H2'], "
                                "run the exercise cell, then this check", "blank")
    if isinstance(answer, (str, numbers.Number)) or not hasattr(answer, "__iter__"):
        answer = [answer]
    try:
        picked = engine.units(list(answer))
    except (ValueError, TypeError) as err:
        raise CheckFailed(name, f"could not read your heads: {err}", "type") from None
    truth = dla_ground_truth(engine, primary_share=share)
    want, dla = truth["primaries"], truth["clean_dla"]
    H = engine.n_heads
    got = set(picked)
    if got == set(want):
        return Passed(name, [str(u) for u in picked], [str(u) for u in want],
                      "the heads with the largest direct effect on the intact model")
    largest = float(dla.max())
    single = single_scan(engine, progress=False)
    by_single = {single.units[i] for i in np.argsort(-single["single"])[:len(got)]}
    negative = [u for u in got if dla[u.flat(H)] < 0]
    backups = [u for u in got - set(want) if u in set(truth["backups"])]
    if got == by_single and got != set(want):
        raise CheckFailed(name, "those are the top heads by single-ablation energy: self-repair hides the primaries "
                                "from it (their ablation is repaired); rank by direct logit attribution instead",
                          "single-ablation")
    if backups:
        u = backups[0]
        raise CheckFailed(name, f"{u} is a backup, not a primary: on the intact model its DLA is "
                                f"{dla[u.flat(H)]:.3g} ({dla[u.flat(H)] / largest:.0%} of the largest) -- it only "
                                "wakes up once the primaries are removed", "backup")
    if negative:
        raise CheckFailed(name, f"{', '.join(map(str, negative))} write against the answer (negative DLA): "
                                "primaries are the largest *positive* attributions -- check the sign", "sign")
    extra = sorted(got - set(want))
    missing = sorted(set(want) - got)
    parts = []
    if missing:
        parts.append("missing " + ", ".join(f"{u} ({dla[u.flat(H)] / largest:.0%} of the largest DLA)"
                                            for u in missing))
    if extra:
        parts.append("extra " + ", ".join(f"{u} ({dla[u.flat(H)] / largest:.0%})" for u in extra))
    raise CheckFailed(name, "; ".join(parts) + f" -- keep every head whose DLA is at least {share:.0%} of the "
                                               "largest head's, and no other", "threshold")


EXERCISES: dict[str, Callable[..., Passed]] = {
    "fisher_energy": fisher_energy,
    "coax_score": coax_score,
    "synergy_cell": synergy_cell,
    "freezing_fraction": freezing_fraction,
    "primaries": primaries,
}


def check(exercise: str, answer, **context) -> Passed:
    """Check ``answer`` to ``exercise`` (one of :data:`EXERCISES`) against the engine's own
    value; ``context`` gives what the exercise is about (``engine=``, ``unit=``, ...).
    Raises :class:`CheckFailed` with a hint that names what is off."""
    if exercise not in EXERCISES:
        raise KeyError(f"no exercise {exercise!r}; the checks are {', '.join(EXERCISES)}")
    from ..engine import Engine

    engine = context.get("engine")
    if not isinstance(engine, Engine):
        raise TypeError(f"check({exercise!r}, ...) needs engine=, the Engine the exercise uses "
                        f"(got {type(engine).__name__})")
    return EXERCISES[exercise](answer, **context)


def exercises() -> Sequence[str]:
    return list(EXERCISES)
