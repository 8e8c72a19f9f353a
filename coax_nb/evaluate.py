"""Ranking quality of a score against a ground-truth head set (primaries excluded)."""
from __future__ import annotations

from typing import Optional

import numpy as np

from .results import UnitScores, roc_points
from .tasks import check_count
from .units import parse_units


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their average rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    sx = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sx[j + 1] == sx[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _scores_and_labels(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """One finite score and one 0/1 label per head, as 1-D arrays of equal length. A NaN
    score would be ranked somewhere arbitrary, and a label other than 0/1 read as True."""
    try:
        s = np.asarray(scores, float)
    except (TypeError, ValueError):
        raise TypeError(f"scores must be numbers, got {np.asarray(scores).dtype} values") from None
    lab = np.asarray(labels)
    if s.ndim != 1 or lab.ndim != 1:
        raise ValueError(f"scores and labels must be 1-D (one entry per head), got shapes {s.shape} and {lab.shape}")
    if len(s) != len(lab):
        raise ValueError(f"got {len(s)} scores but {len(lab)} labels; give one label per score")
    if not np.isfinite(s).all():
        raise ValueError(f"score {int(np.flatnonzero(~np.isfinite(s))[0])} is not finite ({s[~np.isfinite(s)][0]}); "
                         "a NaN or inf score has no rank: drop those heads or fill them first")
    if lab.dtype != bool and not np.isin(lab, (0, 1)).all():
        raise ValueError(f"labels must be True/False (or 1/0), got {sorted(set(lab.tolist()) - {0, 1})[:5]}")
    return s, lab.astype(bool)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Probability that a random positive outranks a random negative (ties count half)."""
    scores, labels = _scores_and_labels(scores, labels)
    pos, neg = labels.sum(), (~labels).sum()
    if pos == 0 or neg == 0:
        raise ValueError("ROC-AUC needs at least one ground-truth head and one other head")
    r = _ranks(scores)
    return float((r[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every threshold, from (0, 0) to (1, 1); tied
    scores move diagonally, so the area under the curve is :func:`roc_auc`."""
    scores, labels = _scores_and_labels(scores, labels)
    return roc_points(scores, labels)


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean of precision@rank over the ranks of the positives (ties broken pessimistically)."""
    scores, labels = _scores_and_labels(scores, labels)
    if labels.sum() == 0:
        raise ValueError("average precision needs at least one ground-truth head")
    # among equal scores put negatives first, so ties never flatter a score
    order = np.lexsort((labels, -scores))
    hits = labels[order]
    prec = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(prec[hits].mean())


def precision_at_k(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    k = check_count(k, "k", why="precision is measured over the k top-ranked heads")
    scores, labels = _scores_and_labels(scores, labels)
    if k > len(scores):
        raise ValueError(f"k={k} is more than the {len(scores)} heads ranked; pass k <= {len(scores)}")
    order = np.lexsort((labels, -scores))
    return float(labels[order[:k]].mean())


def rank_agreement(a: np.ndarray, b: np.ndarray, top: int) -> tuple[float, float]:
    """Spearman correlation of two score vectors over the entries finite in both, and the
    share of ``a``'s top-``top`` entries that are also in ``b``'s (NaN where fewer than
    two entries are comparable)."""
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 2:
        return float("nan"), float("nan")
    ra, rb = _ranks(a[keep]), _ranks(b[keep])
    if ra.std() == 0 or rb.std() == 0:
        rho = float("nan")
    else:
        rho = float(np.corrcoef(ra, rb)[0, 1])
    n = min(top, int(keep.sum()))
    ids = np.flatnonzero(keep)
    top_a = set(ids[np.argsort(-a[keep], kind="stable")[:n]])
    top_b = set(ids[np.argsort(-b[keep], kind="stable")[:n]])
    return rho, len(top_a & top_b) / n


def evaluate(result: UnitScores, truth, by: str = "comp", k: Optional[int] = None) -> dict:
    """ROC-AUC, AP and P@k of score ``by`` at finding the ``truth`` heads, ranking
    only the heads outside the primaries. ``k`` defaults to the number of truth heads."""
    if not isinstance(result, UnitScores):
        raise TypeError(f"evaluate takes per-head scores (a UnitScores from coax_scan, single_scan or "
                        f"attribution_scores), got {type(result).__name__}")
    if k is not None:
        k = check_count(k, "k", why="precision is measured over the k top-ranked heads; "
                                    "leave k=None for the number of truth heads")
    truth_units = parse_units(truth, result.n_layers, result.n_heads)
    if not truth_units:
        raise ValueError("the ground-truth set is empty")
    overlap = [str(u) for u in truth_units if u in result.primaries]
    if overlap:
        raise ValueError(f"ground-truth heads {overlap} are in the primary set; primaries are not ranked")
    keep = ~result.is_primary()
    vals = result[by][keep]
    if np.isnan(vals).any():
        raise ValueError(f"score {by!r} is NaN for some heads outside the primaries; cannot rank them")
    labels = np.zeros(len(result.units), bool)
    for u in truth_units:
        labels[u.flat(result.n_heads)] = True
    labels = labels[keep]
    k = len(truth_units) if k is None else k
    return {"score": by, "roc_auc": roc_auc(vals, labels), "ap": average_precision(vals, labels),
            f"p@{k}": precision_at_k(vals, labels, k), "k": k, "n_truth": len(truth_units)}
