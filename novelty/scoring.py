"""Scoring (eq. 7-8) and the one-class AUC, run once on the test split after training."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from .data import Split
from .losses import minmax, score
from .models import Discriminator, Generator
from .train import per_image_errors


@dataclass(frozen=True)
class Scores:
    """Per-image scores of the test split; `score` is min-max normalised over all of it."""

    labels: np.ndarray  # (n_test,) 1 = outlier
    raw: np.ndarray  # (n_test,) A(x) before normalisation
    score: np.ndarray  # (n_test,) in [0, 1]
    auc: float
    seconds: float


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve, outliers (label 1) as the positive class."""
    return float(roc_auc_score(labels, scores))


def score_test(G: Generator, D: Discriminator, split: Split, lam: float, device: torch.device) -> Scores:
    """A(x) = lam*L_con(x) + (1-lam)*L_fea(x) per test image, then min-max over the whole set."""
    t0 = time.perf_counter()
    con, fea = per_image_errors(G, D, split.test, device)
    raw = score(con.double(), fea.double(), lam)  # (n_test,)
    norm = minmax(raw)
    labels = split.test_labels.numpy()
    return Scores(labels, raw.numpy(), norm.numpy(), auc(labels, norm.numpy()), time.perf_counter() - t0)
