"""The paper's baselines (tables 2-3), run as methods in the same harness: same split,
same row schema, same sweeps, same report.

- `ocsvm`: scikit-learn's OneClassSVM on raw pixels in [-1, 1]; fixed kernel settings
  (RBF, gamma="scale", nu=0.1; there are no outliers to choose them on). Score: minus the
  decision function.
- `kde`: a Gaussian kernel density on raw pixels; the bandwidth is the one of a fixed grid
  that maximises the log-likelihood of the normal validation images. Score: minus the
  log-density.
- `dae`: the generator alone (no D, no CAM, no entropy), a denoising auto-encoder trained
  on L_con (input noise σ = noise_std). Score: per-image L_con.
- `vae`: a convolutional VAE on the same encoder (2·nz outputs: μ, log σ²) and decoder,
  no input noise. Loss: the negative ELBO, Σ (x − x̂)² + KL(q(z|x) ‖ N(0, I)), batch mean.
  Score: the negative ELBO with z = μ (deterministic), per image.

The trained baselines use TrialConfig's lr, betas, batch size, epochs and seed, score the
model after the last epoch in eval mode, and run single-process, without checkpoints.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from .config import ConfigError, TrialConfig
from .data import Split
from .losses import loss_con, minmax
from .models import Decoder, Encoder, Generator, weights_init
from .scoring import Scores, auc, trace_subset

KDE_BANDWIDTHS = np.geomspace(0.05, 5.0, 25)  # times the RMS per-pixel std of the train images * sqrt(D)


@dataclass
class BaselineResult:
    scores: Scores
    history: list[dict] = field(default_factory=list)  # per epoch (trained baselines) or one entry
    extra: dict = field(default_factory=dict)  # row columns of this method (e.g. the chosen bandwidth)


def _scores(split: Split, raw: torch.Tensor, seconds: float) -> Scores:
    raw = raw.double()
    norm = minmax(raw)
    labels = split.test_labels.numpy()
    return Scores(labels, raw.numpy(), norm.numpy(), auc(labels, norm.numpy()), seconds, {"score": raw.numpy()})


# ---------------------------------------------------------------- pixel methods


def _ocsvm(split: Split) -> BaselineResult:
    from sklearn.svm import OneClassSVM

    t0 = time.perf_counter()
    model = OneClassSVM(kernel="rbf", gamma="scale", nu=0.1).fit(split.train.flatten(1).double().numpy())
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    raw = -torch.from_numpy(model.decision_function(split.test.flatten(1).double().numpy()))
    val = -model.decision_function(split.val.flatten(1).double().numpy()) if len(split.val) else np.zeros(0)
    hist = [{"epoch": 1, "seconds": fit_s, "images": len(split.train),
             "val_score": float(np.mean(val)) if len(val) else math.nan}]
    return BaselineResult(_scores(split, raw, time.perf_counter() - t0), hist, {"ocsvm_nu": 0.1})


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


def _kde(split: Split) -> BaselineResult:
    if len(split.val) == 0:
        raise ConfigError("kde chooses its bandwidth on the validation images: use --val-fraction > 0")
    t0 = time.perf_counter()
    train, dim = split.train, split.train[0].numel()
    scale = float(train.flatten(1).double().std(0).pow(2).mean().sqrt()) * math.sqrt(dim)
    d2_val = _sq_dists(split.val, train)
    lls = [float(_kde_logpdf(d2_val, h * scale, dim).mean()) for h in KDE_BANDWIDTHS]
    h = float(KDE_BANDWIDTHS[int(np.argmax(lls))]) * scale  # chosen on normal validation images only
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    raw = torch.cat([-_kde_logpdf(_sq_dists(x, train), h, dim) for x in split.test.split(1024)])
    hist = [{"epoch": 1, "seconds": fit_s, "images": len(train), "val_score": -max(lls)}]
    return BaselineResult(_scores(split, raw, time.perf_counter() - t0), hist, {"kde_bandwidth": h})


# ---------------------------------------------------------------- trained auto-encoders


class VAE(nn.Module):
    """Convolutional VAE on the generator's encoder and decoder (no CAM)."""

    def __init__(self, nc: int, nz: int):
        super().__init__()
        self.nz = nz
        self.encoder = Encoder(nc, 2 * nz, use_cam=False)  # (B, 2nz): mu, log sigma^2
        self.decoder = Decoder(nc, nz, use_cam=False)

    def forward(self, x: torch.Tensor, gen: torch.Generator | None = None):
        mu, logvar = self.encoder(x).chunk(2, dim=1)  # (B, nz) each
        if self.training:
            eps = torch.randn(mu.shape, generator=gen).to(mu.device)
            z = mu + eps * (0.5 * logvar).exp()
        else:
            z = mu
        return self.decoder(z), mu, logvar


def vae_neg_elbo(x: torch.Tensor, x_hat: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-image negative ELBO: sum of squared errors + KL(N(mu, sigma^2) || N(0, I)); (B,)."""
    rec = (x - x_hat).pow(2).flatten(1).sum(1)
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
    return rec + kl


def _ae_step_loss(model: nn.Module, variant: str, x: torch.Tensor, noise: torch.Tensor,
                  gen: torch.Generator) -> torch.Tensor:
    if variant == "dae":
        x_hat, _ = model(x + noise)
        return loss_con(x, x_hat)
    x_hat, mu, logvar = model(x, gen)
    return vae_neg_elbo(x, x_hat, mu, logvar).mean()


@torch.no_grad()
def ae_score(model: nn.Module, variant: str, x: torch.Tensor, device: torch.device, batch: int = 256) -> torch.Tensor:
    """Per-image score of a trained dae (L_con) or vae (negative ELBO, z = mu), eval mode; (N,)."""
    model.eval()
    out = []
    for chunk in x.split(batch):
        xb = chunk.to(device)
        if variant == "dae":
            x_hat, _ = model(xb)
            out.append(loss_con(xb, x_hat, per_image=True).cpu())
        else:
            x_hat, mu, logvar = model(xb)
            out.append(vae_neg_elbo(xb, x_hat, mu, logvar).cpu())
    return torch.cat(out) if out else torch.zeros(0)


def _fit_autoencoder(cfg: TrialConfig, split: Split, device: torch.device, trace: int,
                     on_epoch: Callable[[dict], None] | None, progress: bool) -> BaselineResult:
    from .train import batches, make_deterministic

    make_deterministic(device)
    torch.manual_seed(cfg.seed)
    nc = split.train.shape[1]
    model = Generator(nc, cfg.nz, use_cam=False) if cfg.variant == "dae" else VAE(nc, cfg.nz)
    gen_init = torch.Generator().manual_seed(cfg.seed)
    model.apply(lambda m: weights_init(m, gen_init))
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), cfg.lr, betas=(cfg.beta1, cfg.beta2))
    subset = trace_subset(len(split.test), trace, cfg.seed) if trace else None
    history = []
    for epoch in range(cfg.epochs):
        model.train()
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        t0, seen, total = time.perf_counter(), 0, 0.0
        plan = batches(len(split.train), cfg.batch_size, gen, 1)
        for idx in plan:
            noise = torch.randn((len(idx),) + tuple(split.train.shape[1:]), generator=gen) * cfg.noise_std
            loss = _ae_step_loss(model, cfg.variant, split.train[idx].to(device), noise.to(device), gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if not torch.isfinite(loss):
                from .train import TrainingDiverged

                raise TrainingDiverged(f"{cfg.variant} loss became NaN/inf in epoch {epoch + 1}; try a lower --lr")
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        metrics = {"epoch": epoch + 1, "loss": total / max(seen, 1), "images": seen,
                   "seconds": time.perf_counter() - t0,
                   "val_score": float(ae_score(model, cfg.variant, split.val, device).mean()) if len(split.val)
                   else math.nan}
        if progress:
            print(f"{cfg.variant} epoch {epoch + 1}/{cfg.epochs}: loss {metrics['loss']:.4f}, "
                  f"val score {metrics['val_score']:.4f}, {seen / metrics['seconds']:.0f} img/s", flush=True)
        if subset is not None:  # ORACLE: test labels, a diagnostic only
            labels = split.test_labels[subset].numpy()
            metrics["oracle_auc_score"] = auc(labels, ae_score(model, cfg.variant, split.test[subset], device).numpy())
        history.append(metrics)
        if on_epoch is not None:
            on_epoch({k: v for k, v in metrics.items() if not k.startswith("oracle_")})
    t0 = time.perf_counter()
    raw = ae_score(model, cfg.variant, split.test, device)
    return BaselineResult(_scores(split, raw, time.perf_counter() - t0), history)


def run_baseline(cfg: TrialConfig, split: Split, device: torch.device, trace: int = 0,
                 on_epoch: Callable[[dict], None] | None = None, progress: bool = False) -> BaselineResult:
    """Fit the baseline `cfg.variant` on the normal training images and score the test split."""
    if cfg.variant == "ocsvm":
        return _ocsvm(split)
    if cfg.variant == "kde":
        return _kde(split)
    return _fit_autoencoder(cfg, split, device, trace, on_epoch, progress)
