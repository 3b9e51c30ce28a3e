"""Deep SVDD (Ruff et al., ICML 2018): a bias-free CNN φ maps the normal images close to a
centre c; an image far from c is novel.

    c           mean φ(x) over the normal training images in one initial forward pass (eval
                mode), entries with |c_j| < 0.1 pushed to ±0.1 (their code's eps)
    one-class   loss = mean ‖φ(x) − c‖²                                   (their eq. 4)
    soft        loss = R² + (1/ν)·mean max(0, ‖φ(x) − c‖² − R²)           (their eq. 3)
    score       ‖φ(x) − c‖²  (the soft-boundary's ‖φ(x) − c‖² − R² ranks the same)

The networks are theirs (bias-free, BatchNorm without affine, leaky ReLU, max-pooling): for
3-channel images CIFAR10_LeNet (32/64/128 5×5 filters, a 128-d linear output), for 1-channel
images MNIST_LeNet (8/4 filters, 32-d), on our 32×32 inputs. Optional autoencoder pretraining
(`svdd_pretrain_epochs`, of the trial's --epochs): the encoder and a mirrored decoder trained on
the per-image sum of squared errors (Adam, weight decay 0.5e-3 as theirs; a tanh output for our
[-1, 1] pixels where theirs is a sigmoid for [0, 1]), after which c is set from the trained
encoder. Deviations, stated: R is updated at each epoch's end (theirs: each batch after 10
warm-up epochs) to the (1 − ν) quantile of the training images' distances; no learning-rate
milestone. Their preprocessing (GCN, l1, and a min-max scaling from the normal class) is this
project's `--preprocess gcn`.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ConfigError, TrialConfig
from .base import Method, scoring, sync_grads
from .params import DeepSVDDParams  # noqa: F401 (its spec's params)

CENTRE_EPS = 0.1  # |c_j| below this is pushed to ±eps: a zero feature would be trivially matched
AE_WEIGHT_DECAY = 5e-4  # Ruff et al.'s ae_weight_decay


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-4, affine=False)


class LeNetEncoder(nn.Module):
    """φ: per width a 5×5 bias-free conv, BatchNorm (no affine), leaky ReLU, 2×2 max-pool; then a
    bias-free linear layer to `rep_dim`. (B, nc, 32, 32) -> (B, rep_dim)."""

    def __init__(self, nc: int, widths: tuple[int, ...], rep_dim: int):
        super().__init__()
        chans = (nc, *widths)
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 5, padding=2, bias=False) for a, b in zip(chans, chans[1:]))
        self.bns = nn.ModuleList(_bn(b) for b in widths)
        side = 32 // 2 ** len(widths)
        self.fc = nn.Linear(widths[-1] * side * side, rep_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, bn in zip(self.convs, self.bns):
            x = F.max_pool2d(F.leaky_relu(bn(conv(x))), 2)  # halves the side
        return self.fc(x.flatten(1))


class LeNetDecoder(nn.Module):
    """The mirror: rep_dim as (rep_dim/16, 4, 4), then 5×5 bias-free transposed convs through the
    widths reversed to nc channels, ×2 upsampling up to 32×32, tanh. (B, rep_dim) -> (B, nc, 32, 32)."""

    def __init__(self, nc: int, widths: tuple[int, ...], rep_dim: int):
        super().__init__()
        chans = (rep_dim // 16, *reversed(widths), nc)
        self.deconvs = nn.ModuleList(nn.ConvTranspose2d(a, b, 5, padding=2, bias=False)
                                     for a, b in zip(chans, chans[1:]))
        self.bns = nn.ModuleList(_bn(b) for b in chans[1:-1])
        self.first_ups = 3 - len(self.bns)  # 4 -> 32 is three doublings: those no stage makes come first

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(h.view(len(h), -1, 4, 4))  # (B, rep_dim/16, 4, 4)
        for _ in range(self.first_ups):
            x = F.interpolate(x, scale_factor=2)
        for deconv, bn in zip(self.deconvs, self.bns):
            x = F.interpolate(F.leaky_relu(bn(deconv(x))), scale_factor=2)
        return torch.tanh(self.deconvs[-1](x))


def lenet(channels: int) -> tuple[tuple[int, ...], int]:
    """Ruff et al.'s widths and feature size for the images' channels: CIFAR-10's or MNIST's LeNet."""
    return ((32, 64, 128), 128) if channels == 3 else ((8, 4), 32)


class DeepSVDD(Method):
    """φ trained to pull the normal images to c (after optional autoencoder pretraining)."""

    loss_names = ("loss_svdd",)

    def __init__(self, cfg: TrialConfig, channels: int, device: torch.device) -> None:
        super().__init__(cfg, channels, device)
        p = self.p = cfg.params
        if p.svdd_pretrain_epochs >= cfg.epochs:
            raise ConfigError(f"--svdd-pretrain-epochs {p.svdd_pretrain_epochs} leaves none of --epochs "
                              f"{cfg.epochs} for Deep SVDD itself; raise --epochs")
        widths, rep_dim = lenet(channels)
        torch.manual_seed(cfg.seed)  # PyTorch's default init, as theirs
        self.encoder = LeNetEncoder(channels, widths, rep_dim).to(device)
        self.decoder = LeNetDecoder(channels, widths, rep_dim).to(device)
        ae_params = [*self.encoder.parameters(), *self.decoder.parameters()]
        self.opt_ae = torch.optim.Adam(ae_params, p.svdd_lr, weight_decay=AE_WEIGHT_DECAY)
        self.opt = torch.optim.Adam(self.encoder.parameters(), p.svdd_lr, weight_decay=p.svdd_weight_decay)
        self.epochs_done = 0
        self.c = torch.zeros(0)  # the centre, set by `prepare` before the first Deep SVDD epoch
        self.radius = 0.0  # R of the soft-boundary objective

    @property
    def pretraining(self) -> bool:
        return self.epochs_done < self.p.svdd_pretrain_epochs

    def networks(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, "decoder": self.decoder}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_ae": self.opt_ae, "opt": self.opt}

    def dist(self, x: torch.Tensor) -> torch.Tensor:
        """‖φ(x) − c‖² per image: (b,)."""
        return (self.encoder(x) - self.c).pow(2).sum(1)

    def recon_error(self, x: torch.Tensor) -> torch.Tensor:
        """The autoencoder's per-image sum of squared errors: (b,)."""
        return (self.decoder(self.encoder(x)) - x).pow(2).flatten(1).sum(1)

    def distances(self, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
        """‖φ(x) − c‖² per image, eval mode: (N,)."""
        self.encoder.eval()
        with scoring():
            out = [self.dist(chunk.to(self.device)).cpu() for chunk in x.split(batch)]
        return torch.cat(out) if out else torch.zeros(0)

    def prepare(self, train: torch.Tensor) -> None:
        """Before the first Deep SVDD epoch: c from one forward pass over the training images."""
        if self.pretraining or len(self.c):
            return
        self.encoder.eval()
        with scoring():
            total = sum(self.encoder(chunk.to(self.device)).double().sum(0) for chunk in train.split(256))
        c = (total / len(train)).float()
        c[(c.abs() < CENTRE_EPS) & (c < 0)] = -CENTRE_EPS
        c[(c.abs() < CENTRE_EPS) & (c >= 0)] = CENTRE_EPS
        self.c = c

    def step(self, x: torch.Tensor, noise: torch.Tensor, weight: float, gen: torch.Generator) -> torch.Tensor:
        if self.pretraining:  # the autoencoder: per-image sum of squared errors, batch mean
            loss = self.recon_error(x).mean()
            opt, nets = self.opt_ae, (self.encoder, self.decoder)
        else:
            dist = self.dist(x)  # (b,)
            if self.p.svdd_objective == "soft-boundary":
                loss = self.radius ** 2 + (dist - self.radius ** 2).clamp_min(0).mean() / self.p.svdd_nu
            else:
                loss = dist.mean()
            opt, nets = self.opt, (self.encoder,)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for net in nets:
            sync_grads(net, weight)
        opt.step()
        return loss.detach().double().cpu().reshape(1)

    def end_epoch(self, train: torch.Tensor, val: torch.Tensor) -> None:
        """One more epoch done; the soft boundary's R to the (1 − ν) quantile of the training distances."""
        was_svdd = not self.pretraining
        self.epochs_done += 1
        if was_svdd and self.p.svdd_objective == "soft-boundary":
            dist = self.distances(train).double()
            self.radius = float(np.quantile(dist.sqrt().numpy(), 1 - self.p.svdd_nu))

    def components(self, x: torch.Tensor, batch: int = 256, train_mode: bool = False) -> dict[str, torch.Tensor]:
        if not len(self.c):  # validation during pretraining: no centre yet, the reconstruction error
            self.encoder.train(train_mode)
            self.decoder.train(train_mode)
            with scoring():
                out = [self.recon_error(chunk.to(self.device)).cpu() for chunk in x.split(batch)]
            return {"score": torch.cat(out) if out else torch.zeros(0)}
        return {"score": self.distances(x, batch)}

    def val_figures(self, stats: dict[str, float]) -> dict[str, float]:
        return {"val_svdd_dist": stats["score_mean"] if len(self.c) else float("nan")}

    def row(self) -> dict:
        return {"svdd_radius": self.radius}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "epochs_done": self.epochs_done, "c": self.c, "radius": self.radius}

    def load_state_dict(self, sd: dict) -> None:
        super().load_state_dict(sd)
        self.epochs_done, self.c, self.radius = int(sd["epochs_done"]), sd["c"].clone(), float(sd["radius"])
