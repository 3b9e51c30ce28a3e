"""PNG plots of a results folder: per-class AUC bars and per-class ROC curves.

Figures are built with matplotlib's object API and the Agg canvas (no pyplot, no
global backend switch), and returned as PNG bytes for `novelty.report.write` to write.
"""
from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sklearn.metrics import roc_curve

from ..store.results import ResultsError

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


def class_bars_png(summary: pd.DataFrame, dataset: str, paper: pd.DataFrame | None = None) -> bytes:
    """Grouped bars of one dataset's per-class mean AUC, one bar per label, std error bars,
    the paper's AUC for that bar as a black marker, on a y-range fitted to the values (so a
    difference of 0.01 shows), not from 0.

    `summary` is `novelty.report.write.summary_table` (rows of other datasets are ignored); `paper`:
    columns label (ours), normal_class, auc: the paper's value for our label's bars."""
    part = summary[summary["dataset"] == dataset]
    paper = paper if paper is not None else pd.DataFrame(columns=["label", "normal_class", "auc"])
    classes = sorted(part["normal_class"].unique())
    labels = list(dict.fromkeys(part["label"]))
    x = np.arange(len(classes))
    width = 0.8 / max(len(labels), 1)
    fig = Figure(figsize=(max(6.0, 0.6 * len(classes) * max(1, len(labels) / 2)), 4.0))
    ax = fig.add_subplot()
    marked = False
    for i, label in enumerate(labels):
        sub = part[part["label"] == label].set_index("normal_class").reindex(classes)
        at = x + (i - (len(labels) - 1) / 2) * width
        ax.bar(at, sub["mean"].to_numpy(), width, yerr=sub["std"].fillna(0.0).to_numpy(), capsize=2, label=label)
        theirs = paper[paper["label"] == label].set_index("normal_class")["auc"].reindex(classes)
        if theirs.notna().any():
            ax.scatter(at, theirs.to_numpy(dtype=float), marker="_", s=120, color="black", zorder=3,
                       label="paper's AUC (marker)" if not marked else None)
            marked = True
    ax.set_xticks(x, [str(c) for c in classes])
    ax.set_xlabel("normal class")
    ax.set_ylabel("AUC (mean ± std over seeds)")
    shown = np.concatenate([(part["mean"] - part["std"].fillna(0.0)).to_numpy(dtype=float),
                            (part["mean"] + part["std"].fillna(0.0)).to_numpy(dtype=float),
                            paper[paper["label"].isin(labels)]["auc"].to_numpy(dtype=float)])
    shown = shown[np.isfinite(shown)]
    low, high = (shown.min(), shown.max()) if len(shown) else (0.0, 1.0)
    margin = max(0.02, 0.05 * (high - low))
    ax.set_ylim(max(0.0, low - margin), min(1.02, high + margin))
    ax.grid(axis="y", lw=0.3)
    ax.set_title(f"{dataset}: AUC per normal class")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(fig)


def roc_png(trials: pd.DataFrame, scores: pd.DataFrame, dataset: str) -> bytes:
    """One ROC panel per normal class, one curve per label, from the trials given.

    `trials` are labelled rows (`novelty.report.write.label_rows`), one per (label, class):
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


def forest_png(effects: pd.DataFrame, per_class: pd.DataFrame, title: str) -> bytes:
    """A forest plot: one panel per comparison (a − b), one line per class (its mean difference
    over seeds ± a bootstrap 95% CI over seeds) and one for the mean over classes (± the
    class-and-seed bootstrap CI), zero and the paper's claimed difference marked.

    `effects` and `per_class` are `novelty.report.effects.effects_table`'s, for one dataset and config."""
    comparisons = list(effects["comparison"])
    classes = sorted(per_class["normal_class"].unique())
    fig = Figure(figsize=(3.2 * max(len(comparisons), 1), 0.35 * (len(classes) + 2) + 1.2))
    axes = fig.subplots(1, max(len(comparisons), 1), squeeze=False, sharey=True, sharex=True)[0]  # one scale
    y_mean = -1.0
    for ax, eff in zip(axes, effects.itertuples()):
        part = per_class[per_class["comparison"] == eff.comparison].set_index("normal_class").reindex(classes)
        y = np.arange(len(classes))[::-1].astype(float)
        m = part["mean"].to_numpy(dtype=float)
        err = np.vstack([m - part["ci_low"].to_numpy(dtype=float), part["ci_high"].to_numpy(dtype=float) - m])
        ax.errorbar(m, y, xerr=np.nan_to_num(err), fmt="o", ms=3, color="tab:blue", capsize=2, lw=1)
        ax.errorbar([eff.effect], [y_mean], xerr=[[eff.effect - eff.ci_low], [eff.ci_high - eff.effect]],
                    fmt="D", ms=6, color="black", capsize=3, lw=2)
        ax.axvline(0.0, color="grey", lw=0.8)
        claim = ""
        if not pd.isna(eff.paper_claim):  # named in the title, not a legend that could hide the mean
            ax.axvline(eff.paper_claim, color="tab:red", ls="--", lw=1)
            claim = f"; paper {eff.paper_claim:+.3f} (red)"
        ax.set_title(f"{eff.comparison}\n{eff.effect:+.3f} [{eff.ci_low:+.3f}, {eff.ci_high:+.3f}]{claim}",
                     fontsize="small")
        ax.set_xlabel("AUC difference", fontsize="small")
    axes[0].set_yticks([*np.arange(len(classes))[::-1], y_mean], [f"class {c}" for c in classes] + ["mean"])
    fig.suptitle(title, fontsize="small")
    fig.tight_layout()
    return _png(fig)
