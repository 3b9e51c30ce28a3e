"""Scoring (eq. 7-8) and the one-class AUC, run once on the test split after training.

A score is a mix of per-image *components*: L_con (mean |x - x_hat|), L_fea (mean
(f(x) - f(x_hat))^2) and, kept for study only, GANomaly's latent distance L_lat (mean
(G_E(x) - G_E(x_hat))^2, through the same encoder). All are stored per test image, so a
score rule can be judged later without retraining. Each component may be put on the
scale of the normal validation images before mixing (`score_norm="val"`); the constants
come from validation images only, never from the test split.

The per-epoch *oracle* trace (`oracle_trace`) looks at test labels: it is a diagnostic,
written to its own file, labelled oracle everywhere, and feeds no choice.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from .data import Split
from .losses import loss_con, loss_fea, minmax, score
from .models import Discriminator, Generator

COMPONENTS = ("con", "fea", "lat")
INK_FLOOR = 1e-3  # an all-black image: its ink is taken as this, not 0
REFCODE_BATCH = 64  # the GANomaly family's test batch size


@dataclass(frozen=True)
class Scores:
    """Per-image scores of the test split; `score` is min-max normalised over all of it."""

    labels: np.ndarray  # (n_test,) 1 = outlier
    raw: np.ndarray  # (n_test,) A(x) before normalisation
    score: np.ndarray  # (n_test,) in [0, 1]
    auc: float
    seconds: float
    components: dict[str, np.ndarray]  # name -> (n_test,) raw per-image component (and "ink")


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve, outliers (label 1) as the positive class."""
    return float(roc_auc_score(labels, scores))


@torch.no_grad()
def per_image_errors(G: Generator, D: Discriminator, x: torch.Tensor, device: torch.device,
                     batch: int = 256, train_mode: bool = False) -> dict[str, torch.Tensor]:
    """Per-image components {con, fea, lat} (each (N,)), eval mode unless `train_mode`
    (BatchNorm then normalises each batch by its own statistics, as the reference code did;
    the caller passes copies of G and D, since train mode also moves running statistics)."""
    G.train(train_mode)
    D.train(train_mode)
    out: dict[str, list[torch.Tensor]] = {c: [] for c in (*COMPONENTS, "ink")}
    for chunk in x.split(batch):
        xb = chunk.to(device)
        x_hat, h = G(xb)  # (b, C, 32, 32), (b, nz)
        _, f_x = D(xb)  # (b, 256, 4, 4)
        _, f_hat = D(x_hat)
        h_hat = G.encoder(x_hat)  # (b, nz)
        out["con"].append(loss_con(xb, x_hat, per_image=True).cpu())
        out["fea"].append(loss_fea(f_x, f_hat, per_image=True).cpu())
        out["lat"].append((h - h_hat).pow(2).mean(dim=1).cpu())
        out["ink"].append(ink(chunk))
    return {c: torch.cat(v) if v else torch.zeros(0) for c, v in out.items()}


def ink(x: torch.Tensor) -> torch.Tensor:
    """Mean intensity of each image, in [0, 1] (pixels are in [-1, 1]): (N, C, H, W) -> (N,)."""
    return x.float().add(1).div(2).flatten(1).mean(dim=1).cpu()


def val_stats(val: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean and std of each component on the normal validation images: {con_mean, con_std, ...}."""
    stats = {}
    for c, v in val.items():
        if c not in COMPONENTS:
            continue
        v = v.double()
        stats[f"{c}_mean"] = float(v.mean()) if len(v) else float("nan")
        stats[f"{c}_std"] = float(v.std()) if len(v) > 1 else float("nan")
    return stats


def mix(components: dict[str, torch.Tensor], lam: float, norm: str, stats: dict[str, float]) -> torch.Tensor:
    """A(x) = lam * con + (1 - lam) * fea (eq. 7); with norm "val" each component is first
    standardised by its validation mean and std, with "ink" divided by the image's ink."""
    con, fea = components["con"].double(), components["fea"].double()
    if norm == "ink":
        weight = components["ink"].double().clamp_min(INK_FLOOR)
        return score(con / weight, fea / weight, lam)
    if norm == "val":
        if not (stats["con_std"] > 0 and stats["fea_std"] > 0):
            raise ValueError("score_norm=val needs a validation set of >= 2 images with spread; raise --val-fraction")
        con = (con - stats["con_mean"]) / stats["con_std"]
        fea = (fea - stats["fea_mean"]) / stats["fea_std"]
    return score(con, fea, lam)


def score_test(G: Generator, D: Discriminator, split: Split, lam: float, device: torch.device,
               norm: str = "none", stats: dict[str, float] | None = None) -> Scores:
    """The score of every test image, then min-max over the whole set (eq. 8)."""
    t0 = time.perf_counter()
    comps = per_image_errors(G, D, split.test, device)
    raw = mix(comps, lam, norm, stats or {})  # (n_test,)
    norm_scores = minmax(raw)
    labels = split.test_labels.numpy()
    return Scores(labels, raw.numpy(), norm_scores.numpy(), auc(labels, norm_scores.numpy()),
                  time.perf_counter() - t0, {c: v.numpy() for c, v in comps.items()})


def trace_subset(n_test: int, size: int, seed: int) -> torch.Tensor:
    """A fixed, seeded subset of test indices, kept in stored order (the trace's images)."""
    if size <= 0 or size >= n_test:
        return torch.arange(n_test)
    return torch.randperm(n_test, generator=torch.Generator().manual_seed(seed))[:size].sort().values


@torch.no_grad()
def oracle_trace(G: Generator, D: Discriminator, split: Split, subset: torch.Tensor, lam: float, norm: str,
                 stats: dict[str, float], device: torch.device, subset_seed: int = 0) -> dict[str, float]:
    """ORACLE (looks at test labels; feeds no choice): this epoch's test AUC of each component
    and of the mix on `subset`, and "as the reference code scores": BatchNorm in train mode
    over the subset in stored order, batches of 64, and again with the normal images first
    (`normal_first`, as the reference code's loader orders them; on copies: the models are
    not touched)."""
    x, labels = split.test[subset], split.test_labels[subset].numpy()
    if len(np.unique(labels)) < 2:
        return {}
    comps = per_image_errors(G, D, x, device)
    out = {f"oracle_auc_{c}": auc(labels, v.numpy()) for c, v in comps.items()}
    out["oracle_auc_mix"] = auc(labels, mix(comps, lam, norm, stats).numpy())
    for name, order in (("oracle_refcode_auc_mix", torch.arange(len(x))),
                        ("oracle_refcode_nf_auc_mix", normal_first(split.test_labels[subset], subset_seed))):
        G2, D2 = copy.deepcopy(G), copy.deepcopy(D)
        ref = per_image_errors(G2, D2, x[order], device, batch=REFCODE_BATCH, train_mode=True)
        out[name] = auc(labels[order.numpy()], score(ref["con"].double(), ref["fea"].double(), lam).numpy())
    return out


def normal_first(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """The order the reference code's test loader uses (GANomaly's lib/data.py: the normal
    test images first, then the outliers, never shuffled), so each batch of 64 is (nearly) one
    kind: the normal images in stored order, then the outliers in a fixed seeded order
    (the original datasets store their classes interleaved; our CIFAR-10 copy class by class)."""
    normal = (labels == 0).nonzero().flatten()
    outliers = (labels != 0).nonzero().flatten()
    mixed = outliers[torch.randperm(len(outliers), generator=torch.Generator().manual_seed(seed))]
    return torch.cat([normal, mixed])
