"""The pixel baselines of the paper's tables 2-3: scikit-learn-style models on raw pixels
(as the trial's split gives them: in [-1, 1], or GCN'd with --preprocess gcn). Each fits
once, as its one "epoch"; no training knob applies to them.

- `ocsvm`: OneClassSVM, RBF, gamma="scale", nu=0.1, fixed (there are no outliers to choose
  them on). Score: minus the decision function.
- `kde`: a Gaussian kernel density; the bandwidth is the one of a fixed grid that maximises
  the log-likelihood of the normal validation images. Score: minus the log-density.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..config import ConfigError
from .base import Method

KDE_BANDWIDTHS = np.geomspace(0.05, 5.0, 25)  # times the RMS per-pixel std of the train images * sqrt(D)
OCSVM_NU = 0.1


class _Pixels(Method):
    trained = False
    multi_rank = False

    def components(self, x: torch.Tensor, batch: int = 1024, train_mode: bool = False) -> dict[str, torch.Tensor]:
        return {"score": self.raw(x)}

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class OCSVM(_Pixels):
    def fit(self, train: torch.Tensor, val: torch.Tensor) -> None:
        from sklearn.svm import OneClassSVM

        self.model = OneClassSVM(kernel="rbf", gamma="scale", nu=OCSVM_NU).fit(train.flatten(1).double().numpy())

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        return -torch.from_numpy(self.model.decision_function(x.flatten(1).double().numpy()))

    def row(self) -> dict:
        return {"ocsvm_nu": OCSVM_NU}


def _sq_dists(a: torch.Tensor, b: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """(len(a), len(b)) squared Euclidean distances, float64."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    bb = (b * b).sum(1)
    out = [((x * x).sum(1)[:, None] - 2 * x @ b.T + bb[None]).clamp_min(0) for x in a.split(chunk)]
    return torch.cat(out)


def _kde_logpdf(d2: torch.Tensor, h: float, dim: int) -> torch.Tensor:
    """log of the Gaussian KDE density at each row's point: (n,) from (n, n_train) squared distances."""
    n = d2.shape[1]
    return torch.logsumexp(-d2 / (2 * h * h), dim=1) - math.log(n) - 0.5 * dim * math.log(2 * math.pi * h * h)


class KDE(_Pixels):
    def fit(self, train: torch.Tensor, val: torch.Tensor) -> None:
        if len(val) == 0:
            raise ConfigError("kde chooses its bandwidth on the validation images: use --val-fraction > 0")
        self.train, self.dim = train, train[0].numel()
        scale = float(train.flatten(1).double().std(0).pow(2).mean().sqrt()) * math.sqrt(self.dim)
        d2_val = _sq_dists(val, train)
        lls = [float(_kde_logpdf(d2_val, h * scale, self.dim).mean()) for h in KDE_BANDWIDTHS]
        self.h = float(KDE_BANDWIDTHS[int(np.argmax(lls))]) * scale  # chosen on normal validation images only

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([-_kde_logpdf(_sq_dists(c, self.train), self.h, self.dim) for c in x.split(1024)])

    def row(self) -> dict:
        return {"kde_bandwidth": self.h}
