"""Finding the primary set S when nobody hands it over (method.md, "Finding the primaries").

``discover_primaries(model_or_engine, task, method=...)`` ranks every head by one kind
of evidence and returns the chosen S with its evidence table (a
:class:`~coax_nb.results.Discovery`):

- ``"single"``: the drop of the task's behaviour metric (logit difference, or the
  answer's log-prob) when the head alone is zero-ablated (:func:`~coax_nb.single_scan`
  with ``effect="task"``; one forward per head).
- ``"atp"``: attribution patching, ``|grad . (0 - z)|`` of the same metric
  (:func:`~coax_nb.attribution_scores`; one forward + backward).
- ``"role"``: role scores read off the clean run's attention patterns and writes. The
  name-mover score is the attention from an output position to the answer's earlier
  occurrence in the prompt (the IO name, for IOI) times the head's write at that
  position along the answer's unembedding (through the final norm's centring and gain,
  up to its per-prompt scale). The induction, previous-token and duplicate-token scores
  are the mean attention from each position whose token occurred before to the token
  after that occurrence, to the previous position, and to the occurrence itself. A task
  with distractors (IOI-like) is ranked by ``name_mover``, any other by ``induction``;
  ``role=`` picks another column. One forward.
- ``"acdc"``: ACDC-style greedy node pruning on the metric: every head present; heads
  visited from the last layer to the first (heads in index order within a layer); each
  is zero-ablated on top of those already removed and stays removed when the mean metric
  moves by less than ``tau`` (its units; absolute change against the current circuit).
  The circuit is the heads kept; S is its top-``k`` by the change each caused when
  tried (``k=None``: the whole circuit). One forward per head, forward passes only.
  Attention heads only: MLP units are not pruned.

``k`` heads are chosen (default 3), only among heads with positive evidence (fewer, with
a warning, when fewer have any); ``k=None`` takes every head whose evidence is at least
``share`` (default 0.25) of the largest (for ``"acdc"``, the whole circuit).
:func:`~coax_nb.inputs.resolve` (and so the CLI and the report) takes
``primaries="auto"`` or ``"auto:METHOD"`` (optionally ``":k=N"`` / ``":tau=X"``)
and records which method chose S.

On the bundled organisms (docs/method.md has the table) AtP and the name-mover score
recover the hand-wired model's two movers, and ACDC's circuit holds the card's movers of
three organisms; otherwise every method here ranks the layer-0 heads first: it measures a
head's total effect, or its attention to the IO token, while the cards define primaries
by their direct effect (DLA), and the trained movers read the names elsewhere.
"""
from __future__ import annotations

import math
import numbers
import time
import warnings
from typing import Optional

import numpy as np
import torch

from .baselines import attribution_scores
from .engine import CLEAN, Engine, Term, Variant, as_engine, seconds_and_passes, snapshot
from .results import Discovery
from .scores import single_scan
from .units import Unit, ranked

__all__ = ["AUTO", "METHODS", "ROLES", "discover_primaries", "parse_auto"]

METHODS = ("single", "atp", "role", "acdc")
ROLES = ("name_mover", "induction", "previous_token", "duplicate_token")
AUTO = "auto"
DEFAULT_METHOD, DEFAULT_K, DEFAULT_SHARE = "single", 3, 0.25
DEFAULT_TAU_SHARE = 0.05  # ACDC's default tau: this share of the clean mean metric's size


def _metric_name(task) -> str:
    if task.metric_fn is not None:
        return "the task's metric"
    return "the logit difference" if task.distractors is not None else "the answer log-prob"


def _check_k(k, n_units: int) -> Optional[int]:
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be a whole number >= 1 (how many primaries to choose), got {k!r}; pass e.g. k=3, "
                         "or k=None to take every head above share= of the largest")
    if k >= n_units:
        raise ValueError(f"k={k} would take every head of the {n_units} as a primary, leaving none to score; "
                         f"pass k <= {n_units - 1}")
    return int(k)


def check_share(share) -> float:
    if isinstance(share, bool) or not isinstance(share, numbers.Real) or not 0 < share <= 1:
        raise ValueError(f"share must be a number in (0, 1] (a share of the largest head's evidence), got {share!r}")
    return float(share)


def _check_tau(tau) -> Optional[float]:
    if tau is None:
        return None
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real) or not 0 <= tau < math.inf:
        raise ValueError(f"tau must be a finite number >= 0 (the change of the mean task metric below which a "
                         f"head is pruned), got {tau!r}; pass e.g. tau=0.2, or tau=None for "
                         f"{DEFAULT_TAU_SHARE:g} x the clean metric")
    return float(tau)


def parse_auto(spec) -> Optional[dict]:
    """``"auto"``, ``"auto:METHOD"`` and ``"auto:METHOD:k=N"`` / ``":tau=X"`` as
    ``{"method", "k", "tau"}`` (the defaults filled in); None for anything else (head
    names). Refuses an unknown method or option before any model loads."""
    if not isinstance(spec, str) or spec.strip().split(":")[0].strip().lower() != AUTO:
        return None
    parts = [p.strip() for p in spec.strip().split(":")]
    method = (parts[1] if len(parts) > 1 and parts[1] else DEFAULT_METHOD).lower()
    if method not in METHODS:
        raise ValueError(f"unknown discovery method {method!r} in primaries={spec!r}; write auto or auto:METHOD "
                         f"with METHOD one of {', '.join(METHODS)}")
    out = {"method": method, "k": DEFAULT_K, "tau": None}
    for opt in parts[2:]:
        key, _, value = opt.partition("=")
        key = key.strip().lower()
        try:
            if key == "k":
                out["k"] = None if value.strip().lower() == "none" else int(value)
            elif key == "tau":
                out["tau"] = float(value)
            else:
                raise KeyError(key)
        except (KeyError, ValueError):
            raise ValueError(f"cannot read {opt!r} in primaries={spec!r}; options are k=N (or k=none) and tau=X, "
                             "e.g. auto:acdc:tau=0.3 or auto:single:k=2") from None
    _check_k(out["k"], 1 << 30)
    _check_tau(out["tau"])
    return out


# ---------------------------------------------------------------------------- evidence
def _role_scores(engine: Engine) -> dict[str, np.ndarray]:
    """Mean role scores of every head (flat ``[L*H]``; NaN where the prompts give no
    position to read a role at)."""
    L, H = engine.n_layers, engine.n_heads
    W_O = engine.arch.W_O.detach().to(engine.dtype)  # [L, H, Dh, d]
    W_U = engine.arch.W_U.detach().to(engine.dtype)  # [d, V]
    gain = engine.arch.final_norm_gain().to(engine.device, engine.dtype)
    run = engine.base(CLEAN)
    n_roles = len(ROLES)

    def batch_sum(batch):
        pats = engine.attention_patterns(batch).double()  # [n, L, H, T, T]
        sums = torch.zeros(n_roles, L, H, dtype=torch.float64, device=pats.device)
        counts = torch.zeros(n_roles, dtype=torch.float64, device=pats.device)
        z = torch.stack([engine.outputs_at(run, batch, layer) for layer in range(L)], 2)  # [n, P, L, H, Dh]
        write = torch.einsum("nplhe,lhed->nplhd", z, W_O)
        if engine.arch.final_norm_centers:  # LayerNorm centres before scaling; RMSNorm does not
            write = write - write.mean(-1, keepdim=True)
        targets = batch.task.targets if batch.task is not None else None
        for i, row in enumerate(batch.task.prompts):
            p = pats[i]  # [L, H, T, T]
            q = torch.arange(1, len(row))
            sums[2] += p[:, :, q, q - 1].sum(-1)
            counts[2] += len(row) - 1
            seen, rep, before = {}, [], []
            for pos, tok in enumerate(row):  # the latest earlier occurrence of each position's token
                if tok in seen:
                    rep.append(pos)
                    before.append(seen[tok])
                seen[tok] = pos
            if rep:
                qq, jj = torch.tensor(rep), torch.tensor(before)
                sums[1] += p[:, :, qq, jj + 1].sum(-1)
                sums[3] += p[:, :, qq, jj].sum(-1)
                counts[1] += len(rep)
                counts[3] += len(rep)
            if targets is None:
                continue
            for j, out_pos in enumerate(batch.positions):
                answer = targets[i][j]
                keys = [pos for pos in range(out_pos + 1) if row[pos] == answer] if answer >= 0 else []
                if not keys:
                    continue
                along = write[i, j] @ (gain * W_U[:, answer])  # [L, H]
                sums[0] += p[:, :, out_pos, keys[-1]] * along.double()
                counts[0] += 1
        return torch.cat([sums.flatten(), counts]).cpu()

    total = engine.sum_over_batches(batch_sum)
    sums, counts = total[:-n_roles].reshape(n_roles, L * H), total[-n_roles:]
    return {name: (sums[r] / counts[r]).numpy() if counts[r] > 0 else np.full(L * H, np.nan)
            for r, name in enumerate(ROLES)}


def _acdc(engine: Engine, tau: float, progress: bool) -> dict[str, np.ndarray]:
    """Greedy node pruning: per head the change of the mean metric when it was tried
    against the circuit of that moment, and whether it was kept."""
    from tqdm.auto import tqdm

    L, H = engine.n_layers, engine.n_heads
    change = np.full(L * H, np.nan)
    kept = np.zeros(L * H)
    removed: list[Unit] = []
    current = 0.0  # drop of the mean metric from the clean model's, with `removed` ablated
    order = [Unit(layer, head) for layer in reversed(range(L)) for head in range(H)]
    for u in tqdm(order, desc="ACDC pruning", disable=not progress, leave=False):
        # one term against the clean run: the variant starts at u's layer, the lowest it touches
        drop = float(engine.energies([[(1.0, Term(Variant.zero(removed + [u])))]], effect="task",
                                     progress=False)[0])
        change[u.flat(H)] = drop - current
        if abs(drop - current) < tau:
            removed.append(u)
            current = drop
        else:
            kept[u.flat(H)] = 1.0
    return {"change": change, "kept": kept}


def _choose(score: np.ndarray, k: Optional[int], share: float, allowed: np.ndarray, what: str) -> list[int]:
    """Flat ids of the chosen heads, best first."""
    vals = np.where(allowed & np.isfinite(score), score, -np.inf)
    order = [i for i in ranked(vals) if np.isfinite(vals[i])]
    if not order:
        raise ValueError(f"no head has a finite {what} score, so none can be chosen")
    if k is None:
        best = vals[order[0]]
        if best <= 0:
            raise ValueError(f"no head has a positive {what} score, so none is a primary by share of the largest; "
                             "pass k= to take the top heads anyway")
        return [i for i in order if vals[i] >= share * best]
    chosen = [i for i in order[:k] if vals[i] > 0]  # a head with no positive evidence is no primary
    if not chosen:
        raise ValueError(f"no head has a positive {what} score, so none is a primary; try another method")
    if len(chosen) < k:
        warnings.warn(f"only {len(chosen)} heads have a positive {what} score, fewer than k={k}: S holds those "
                      f"{len(chosen)}", stacklevel=3)
    return chosen


def discover_primaries(
    model_or_engine,
    task=None,
    method: str = DEFAULT_METHOD,
    *,
    k: Optional[int] = DEFAULT_K,
    share: float = DEFAULT_SHARE,
    tau: Optional[float] = None,
    role: Optional[str] = None,
    position_mode: Optional[str] = None,
    progress: bool = True,
) -> Discovery:
    """Choose a primary set S for a model and task, with the evidence for every head.

    ``method`` is ``"single"`` (default), ``"atp"``, ``"role"`` or ``"acdc"`` (see the
    module's docstring). ``k`` heads are taken, best first; ``k=None`` takes every head
    whose evidence is at least ``share`` of the largest (``"acdc"``: the whole circuit).
    ``tau`` is ACDC's threshold in units of the task metric (default 0.05 x the clean
    mean metric's size); ``role`` the role column ``"role"`` ranks by (default
    ``name_mover`` for a task with distractors, else ``induction``).

    The result's ``primaries`` is S; ``table()`` prints the evidence, ``meta["source"]``
    says in words how S was chosen.

    >>> from coax_nb import load_model
    >>> from coax_nb.organisms import task_for
    >>> d = discover_primaries(load_model("organism:handwired"), task_for("handwired", 16), "atp", k=2,
    ...                        progress=False)
    >>> sorted(map(str, d.primaries)), d.source   # the card's two name movers
    (['L1H0', 'L1H1'], 'auto:atp (top-2 by |AtP| on the logit difference)')
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"unknown discovery method {method!r}; choose one of {', '.join(METHODS)}")
    share = check_share(share)
    tau = _check_tau(tau)
    if role is not None and (method != "role" or role not in ROLES):
        raise ValueError(f"role={role!r} needs method='role' and one of {', '.join(ROLES)}")
    engine = as_engine(model_or_engine, task, position_mode=position_mode, progress=progress)
    L, H = engine.n_layers, engine.n_heads
    k = _check_k(k, L * H)
    t = engine.task
    if t is None or (t.targets is None and t.metric_fn is None):
        raise ValueError("discovering primaries ranks heads by their part in the task's behaviour, and these prompts "
                         "have no behaviour metric: build the engine from a task with targets (ioi_task, an "
                         "organism's task, custom_task(answers=...)), or give the primaries by hand")
    metric = _metric_name(t)
    t0, s0 = time.perf_counter(), snapshot(engine)
    allowed = np.ones(L * H, bool)
    if method == "single":
        evidence = {"single": single_scan(engine, effect="task", progress=progress)["single"]}
        by, what = "single", f"single zero-ablation on {metric}"
    elif method == "atp":
        evidence = {"atp": attribution_scores(engine, methods=["atp"], progress=progress)["atp"]}
        by, what = "atp", f"|AtP| on {metric}"
    elif method == "role":
        evidence = _role_scores(engine)
        by = role or ("name_mover" if t.distractors is not None else "induction")
        if np.isnan(evidence[by]).all():
            raise ValueError(f"the {by} score cannot be read on these prompts ("
                             + ("no answer token occurs earlier in the prompt" if by == "name_mover" else
                                "no token repeats") + f"); available role scores: "
                             f"{', '.join(r for r in ROLES if not np.isnan(evidence[r]).all()) or 'none'}")
        what = f"{by.replace('_', '-')} score from attention patterns"
    else:
        if tau is None:
            clean = float(t.metric(engine.clean_logits()).mean())
            tau = DEFAULT_TAU_SHARE * abs(clean)
        evidence = _acdc(engine, tau, progress)
        allowed = evidence["kept"] > 0
        n_kept = int(allowed.sum())
        if n_kept == 0:
            raise ValueError(f"ACDC at tau={tau:.4g} pruned every head (no single removal moved {metric} by tau); "
                             "lower tau")
        if n_kept == L * H and k is None:
            raise ValueError(f"ACDC at tau={tau:.4g} kept every head, leaving none to score; raise tau or pass k=")
        if k is not None and k > n_kept:
            warnings.warn(f"ACDC kept {n_kept} heads at tau={tau:.4g}, fewer than k={k}: S is the whole circuit",
                          stacklevel=2)
        by, what = "change", f"greedy node pruning (ACDC-style, tau={tau:.3g}) on {metric}"
    if method == "acdc" and k is None:  # the whole circuit, by the change each head caused
        chosen = [i for i in ranked(evidence[by]) if allowed[i]]
    else:
        chosen = _choose(evidence[by], k, share, allowed, by)
    primaries = [Unit.from_flat(i, H) for i in chosen]
    if method == "acdc":
        pick = "the whole circuit" if k is None else f"top-{len(chosen)} by change"
        how = f"circuit of {int(allowed.sum())} heads kept by {what}; {pick}"
    else:
        how = (f"top-{len(chosen)}" if k is not None else f"heads >= {share:.0%} of the largest") + f" by {what}"
    source = f"auto:{method} ({how})"
    meta = {"source": source, "k": k, "share": share if k is None and method != "acdc" else None, "tau": tau,
            "metric": metric, "n_prompts": engine.n_prompts, "model": getattr(engine.model, "coax_source", None),
            "task": t.name, "position_mode": engine.position_mode,
            "wall_seconds": round(time.perf_counter() - t0, 3), **seconds_and_passes(engine, s0)}
    return Discovery(L, H, method, primaries, {name: np.asarray(v, float) for name, v in evidence.items()}, by, meta)
