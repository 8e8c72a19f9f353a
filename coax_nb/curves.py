"""One result type for every line chart: named series over a shared x axis, with an
optional band (e.g. mean ± sd of random controls). Used by wake-up curves and, later,
knockout and pruning curves; the Curves widget and the static figures read it."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

# Okabe-Ito: colour-blind safe
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


@dataclass
class Curves:
    """``series``: list of dicts with ``name``, ``x``, ``y`` and optional ``lo``/``hi``."""

    title: str
    xlabel: str
    ylabel: str
    series: list = field(default_factory=list)
    log_y: bool = False
    meta: dict = field(default_factory=dict)

    def add(self, name: str, x, y, lo=None, hi=None) -> "Curves":
        s = {"name": name, "x": [float(v) for v in x], "y": [float(v) for v in y]}
        if lo is not None:
            s["lo"], s["hi"] = [float(v) for v in lo], [float(v) for v in hi]
        self.series.append(s)
        return self

    def get(self, name: str) -> dict:
        for s in self.series:
            if s["name"] == name:
                return s
        raise KeyError(f"no series {name!r}; have {[s['name'] for s in self.series]}")

    def to_dict(self) -> dict:
        return {"type": "Curves", "title": self.title, "xlabel": self.xlabel, "ylabel": self.ylabel,
                "series": self.series, "log_y": self.log_y, "meta": self.meta}

    def to_json(self, path: Optional[os.PathLike] = None) -> str:
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            from .io import atomic_write_text

            atomic_write_text(path, text)
        return text

    def plot(self, ax=None):
        import matplotlib.pyplot as plt

        if ax is None:
            fig, ax = plt.subplots(figsize=(5, 3.4))
        for i, s in enumerate(self.series):
            c = PALETTE[i % len(PALETTE)]
            ax.plot(s["x"], s["y"], marker="o", ms=3, color=c, label=s["name"])
            if "lo" in s:
                ax.fill_between(s["x"], s["lo"], s["hi"], color=c, alpha=0.2, lw=0)
        if self.log_y:
            ax.set_yscale("log")
        ax.set_title(self.title, fontsize=10)
        ax.set_xlabel(self.xlabel)
        ax.set_ylabel(self.ylabel)
        ax.legend(fontsize=8, frameon=False)
        ax.figure.tight_layout()
        return ax.figure


def band(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and mean ± sd over axis 0."""
    rows = np.asarray(rows, float)
    m, sd = rows.mean(0), rows.std(0)
    return m, m - sd, m + sd
