"""Scoring (eq. 7-8) and the one-class AUC: what turns a method's per-image score
*components* into the score and its AUC. Torch-free (numpy), the one implementation the
trials use and the report's re-mixing (`selection.rescore`) uses.

The paper's method has three components, all stored per test image so a score rule can be
judged later without retraining: L_con (mean |x - x_hat|), L_fea (mean (f(x) - f(x_hat))^2)
and, kept for study only, GANomaly's latent distance L_lat. Each may be put on the scale of
the normal validation images before mixing (`score_norm="val"`: constants from validation
images only, never from the test split) or divided by the image's ink (`"ink"`, beyond the
paper). A baseline has one component, its score.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INK_FLOOR = 1e-3  # an all-black image: its ink is taken as this, not 0


@dataclass(frozen=True)
class Scores:
    """Per-image scores of the test split; `score` is min-max normalised over all of it."""

    labels: np.ndarray  # (n_test,) 1 = outlier
    raw: np.ndarray  # (n_test,) before min-max
    score: np.ndarray  # (n_test,) in [0, 1]
    auc: float
    seconds: float
    components: dict[str, np.ndarray]  # name -> (n_test,) raw per-image component (and "ink")


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve, outliers (label 1) as the positive class: scikit-learn's
    `roc_auc_score` step for step (its ROC points, collinear ones dropped, then the trapezoid
    rule), so every AUC is the same float64, bit for bit (tests/test_model.py checks it against
    sklearn, ties included). In numpy because sklearn costs every trial ~1 s to import."""
    y = np.asarray(labels) == 1
    s = np.asarray(scores)
    if y.all() or not y.any():
        return float("nan")  # one class only: undefined (sklearn warns and returns NaN)
    order = np.argsort(s, kind="mergesort")[::-1]  # descending score
    s, y = s[order], y[order]
    ends = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]  # last index of each distinct score
    tps = np.cumsum(y, dtype=np.float64)[ends]  # outliers at or above each threshold
    fps = 1 + ends.astype(np.float64) - tps  # normal images at or above it
    if fps.size > 2:  # drop the points collinear with their neighbours (sklearn's drop_intermediate)
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        fps, tps = fps[keep], tps[keep]
    fpr, tpr = np.r_[0.0, fps] / fps[-1], np.r_[0.0, tps] / tps[-1]
    return float(np.add.reduce(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))  # the trapezoid rule


def eq7(con: np.ndarray, fea: np.ndarray, lam: float) -> np.ndarray:
    """Anomaly score (eq. 7): A(x) = lam * L_con(x) + (1 - lam) * L_fea(x), per image."""
    return lam * con + (1.0 - lam) * fea


def minmax(scores: np.ndarray) -> np.ndarray:
    """Eq. 8: normalise over the whole test set, after all scores are collected."""
    lo, hi = scores.min(), scores.max()
    return (scores - lo) / max(hi - lo, 1e-12)


def mix(components: dict[str, np.ndarray], lam: float, norm: str, stats: dict[str, float]) -> np.ndarray:
    """A(x) = lam * con + (1 - lam) * fea (eq. 7), float64; with norm "val" each component is
    first standardised by its validation mean and std, with "ink" divided by the image's ink."""
    con, fea = np.asarray(components["con"], np.float64), np.asarray(components["fea"], np.float64)
    if norm == "ink":
        weight = np.maximum(np.asarray(components["ink"], np.float64), INK_FLOOR)
        return eq7(con / weight, fea / weight, lam)
    if norm == "val":
        if not (stats["con_std"] > 0 and stats["fea_std"] > 0):
            raise ValueError("score_norm=val needs a validation set of >= 2 images with spread; raise --val-fraction")
        con = (con - stats["con_mean"]) / stats["con_std"]
        fea = (fea - stats["fea_mean"]) / stats["fea_std"]
    return eq7(con, fea, lam)


def scores_of(labels: np.ndarray, raw: np.ndarray, components: dict[str, np.ndarray], seconds: float) -> Scores:
    """The test split's Scores from its raw per-image scores (min-max over all of it, eq. 8)."""
    norm = minmax(raw)
    return Scores(labels, raw, norm, auc(labels, norm), seconds, components)
