"""PNG plots of a results folder: per-class AUC bars and per-class ROC curves.

Figures are built with matplotlib's object API and the Agg canvas (no pyplot, no
global backend switch), and returned as PNG bytes for `novelty.report` to write.
"""
from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sklearn.metrics import roc_curve

from .results import ResultsError

def roc_points(scores: pd.DataFrame, key: str) -> tuple[np.ndarray, np.ndarray]:
    """ROC curve (fpr, tpr) of one trial's per-image scores (label 1 = outlier)."""
    part = scores[scores["key"] == key]
    if part.empty or part["label"].nunique() < 2:
        raise ResultsError(f"trial {key} has no scores with both labels; cannot draw its ROC")
    fpr, tpr, _ = roc_curve(part["label"].to_numpy(), part["score"].to_numpy())
    return fpr, tpr


MAX_ROC_CLASSES = 20
"""ROC panels per figure; datasets with more classes (COIL-100) show the first ones."""
PANEL_COLUMNS = 5


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def class_bars_png(summary: pd.DataFrame, dataset: str) -> bytes:
    """Grouped bars of one dataset's per-class mean AUC, one bar per label, std error bars.

    `summary` is `novelty.report.summary_table` (rows of other datasets are ignored)."""
    part = summary[summary["dataset"] == dataset]
    classes = sorted(part["normal_class"].unique())
    labels = list(dict.fromkeys(part["label"]))
    x = np.arange(len(classes))
    width = 0.8 / max(len(labels), 1)
    fig = Figure(figsize=(max(6.0, 0.6 * len(classes) * max(1, len(labels) / 2)), 4.0))
    ax = fig.add_subplot()
    for i, label in enumerate(labels):
        sub = part[part["label"] == label].set_index("normal_class").reindex(classes)
        ax.bar(x + (i - (len(labels) - 1) / 2) * width, sub["mean"].to_numpy(), width,
               yerr=sub["std"].fillna(0.0).to_numpy(), capsize=2, label=label)
    ax.set_xticks(x, [str(c) for c in classes])
    ax.set_xlabel("normal class")
    ax.set_ylabel("AUC (mean ± std over seeds)")
    ax.set_ylim(0.0, 1.05)
    ax.set_title(f"{dataset}: AUC per normal class")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(fig)


def roc_png(trials: pd.DataFrame, scores: pd.DataFrame, dataset: str) -> bytes:
    """One ROC panel per normal class, one curve per label, from the trials given.

    `trials` are labelled rows (`novelty.report.label_rows`), one per (label, class):
    the report passes each one's first (lowest) seed. `scores` holds their per-image scores."""
    part = trials[trials["dataset"] == dataset]
    classes = sorted(part["normal_class"].unique())[:MAX_ROC_CLASSES]
    labels = list(dict.fromkeys(part["label"]))
    have = set(scores["key"])
    ncols = min(PANEL_COLUMNS, len(classes))
    nrows = math.ceil(len(classes) / ncols)
    fig = Figure(figsize=(3.0 * ncols, 3.0 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, cls in zip(axes.flat, classes):
        for label in labels:
            hit = part[(part["label"] == label) & (part["normal_class"] == cls)]
            for row in hit.itertuples():
                if row.key in have and scores.loc[scores["key"] == row.key, "label"].nunique() == 2:
                    fpr, tpr = roc_points(scores, row.key)
                    ax.plot(fpr, tpr, label=f"{label} (AUC {row.auc:.3f}, seed {row.seed})", lw=1)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.5, ls="--")
        ax.set_title(f"class {cls}", fontsize="small")
        ax.set_xlabel("FPR", fontsize="x-small")
        ax.set_ylabel("TPR", fontsize="x-small")
        ax.legend(fontsize="xx-small", loc="lower right")
    for ax in list(axes.flat)[len(classes):]:
        ax.set_visible(False)
    fig.suptitle(f"{dataset}: ROC per normal class (first seed of each)")
    fig.tight_layout()
    return _png(fig)
