"""Self-supervised transformation prediction (the GEOM family): a classifier trained on the
normal class only to tell which of K geometric transformations was applied to an image; an
image the classifier cannot read is novel.

- GEOM (Golan & El-Yaniv, NeurIPS 2018): K = 72 = {no flip, flip} × translations {−8, 0, +8}²
  × rotations {0, 90, 180, 270}°, one softmax head; score: per transformation a Dirichlet
  fitted to the softmax outputs of normal images, summed log-likelihoods (Minka's fixed point,
  as their code), or the "simplified" mean probability of the true transformation.
- Rotation + translation (Hendrycks et al., NeurIPS 2019): the 36 = 3 × 3 translations × 4
  rotations, three heads (rotation 4-way, horizontal and vertical translation 3-way each),
  trained on the sum of the heads' cross-entropies; score: that sum over the 36.
- RotNet: the 4 rotations (`rot4`), or with the flip as a label too (`rot4_flip`).

Every training batch holds all K transformations of each of its images, built on the device
(one forward pass per batch): (b, C, H, W) -> (b·K, C, H, W), image-major. Sets without the
flip draw a random horizontal flip per image as augmentation (seeded by the loop's generator).
Network: a wide residual network WRN-depth-widen (Zagoruyko & Komodakis, pre-activation),
whose depth and width are knobs (GEOM: WRN-16-8; Hendrycks: WRN-16-4; CPU trials: WRN-10-1/2).
Optimiser: SGD with Nesterov momentum 0.9, weight decay 5e-4, a cosine learning rate over the
epochs (Hendrycks et al.'s). Deviation, stated: the Dirichlets are fitted on the trial's
held-out normal *validation* images after each epoch (GEOM fits them on the training images,
which the network has memorised); no test image informs them.

Score components (per image, higher = more novel), all stored so the report can re-mix them:
    nll        −Σ_t Σ_h log p_h(label_h(t) | T_t x)       (summed log-likelihood, negated)
    dirichlet  −Σ_t Σ_h Σ_j (α_thj − 1) log p_hj(T_t x)   (GEOM's Dirichlet normality, negated)
    pmean      −mean_t,h p_h(label_h(t) | T_t x)          (GEOM's simplified score, negated)
    wrong      fraction of (t, h) predicted wrongly       (1 − self-supervised accuracy)
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import TrialConfig
from .networks import _layout
from .base import Method, scoring, sync_grads
from .params import TransformsParams  # noqa: F401 (its spec's params)

# ---------------------------------------------------------------- the transformations


@dataclass(frozen=True)
class Transform:
    flip: bool
    tx: int  # pixels right
    ty: int  # pixels down
    rot: int  # quarter turns, counter-clockwise


def transform_set(name: str, shift: int) -> tuple[list[Transform], list[tuple[str, int]], torch.Tensor]:
    """The set's transformations, its heads [(name, classes)], and each transformation's label per
    head (K, n_heads). One head of K classes, except rot_trans (rotation, tx, ty)."""
    moves = (0, -shift, shift)
    if name == "rot4":
        ts = [Transform(False, 0, 0, r) for r in range(4)]
    elif name == "rot4_flip":
        ts = [Transform(f, 0, 0, r) for f, r in itertools.product((False, True), range(4))]
    elif name == "geom72":  # GEOM's order: flip, tx, ty, rotation
        ts = [Transform(f, tx, ty, r) for f, tx, ty, r in itertools.product((False, True), moves, moves, range(4))]
    elif name == "rot_trans":
        ts = [Transform(False, tx, ty, r) for tx, ty, r in itertools.product(moves, moves, range(4))]
        labels = torch.tensor([[t.rot, moves.index(t.tx), moves.index(t.ty)] for t in ts])
        return ts, [("rot", 4), ("tx", 3), ("ty", 3)], labels
    else:
        raise ValueError(f"unknown transformation set {name!r}")  # TransformsParams validated it
    return ts, [("t", len(ts))], torch.arange(len(ts))[:, None]


def shifted(x: torch.Tensor, tx: int, ty: int) -> torch.Tensor:
    """x translated by (tx, ty) pixels, the uncovered border reflected: (B, C, H, W) -> same."""
    if tx == 0 and ty == 0:
        return x
    p = max(abs(tx), abs(ty))
    padded = F.pad(x, (p, p, p, p), mode="reflect")  # (B, C, H+2p, W+2p)
    h, w = x.shape[-2:]
    return padded[..., p - ty: p - ty + h, p - tx: p - tx + w]


def apply_all(x: torch.Tensor, ts: list[Transform]) -> torch.Tensor:
    """Every transformation of every image, image-major: (B, C, H, W) -> (B·K, C, H, W)."""
    out = []
    for t in ts:
        y = x.flip(3) if t.flip else x
        y = shifted(y, t.tx, t.ty)
        out.append(torch.rot90(y, t.rot, dims=(2, 3)) if t.rot else y)
    return torch.stack(out, dim=1).flatten(0, 1)


# ---------------------------------------------------------------- the network


class WideBlock(nn.Module):
    """Pre-activation residual block: BN-ReLU-conv3x3-BN-ReLU-conv3x3, plus a 1x1 projection."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.short = None if cin == cout and stride == 1 else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(x))
        skip = x if self.short is None else self.short(o)
        o = self.conv1(o)
        return self.conv2(F.relu(self.bn2(o))) + skip


class WideResNet(nn.Module):
    """WRN-depth-widen for small images: stem 16, stages 16k/32k/64k at strides 1, 2, 2, global
    average pooling, one linear layer to `n_out` logits (the heads' logits side by side)."""

    def __init__(self, nc: int, n_out: int, depth: int, widen: int):
        super().__init__()
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        layers: list[nn.Module] = [nn.Conv2d(nc, 16, 3, 1, 1, bias=False)]
        for stage in range(3):
            for i in range(n):
                cin = widths[stage] if i == 0 else widths[stage + 1]
                layers.append(WideBlock(cin, widths[stage + 1], (1 if stage == 0 else 2) if i == 0 else 1))
        self.body = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, n_out)
        f = F.relu(self.bn(self.body(_layout(x))))  # (B, 64k, H/4, W/4)
        return self.fc(f.mean(dim=(2, 3)))


def wrn_init(m: nn.Module) -> None:
    """He init of the convolutions (as the WRN code), BatchNorm at (1, 0), linear bias 0."""
    if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Linear):
        nn.init.zeros_(m.bias)


# ---------------------------------------------------------------- the Dirichlet score (GEOM's code, in torch)


def inv_digamma(y: torch.Tensor, iters: int = 5) -> torch.Tensor:
    """ψ⁻¹(y) by Minka's initialisation and Newton steps."""
    x = torch.where(y >= -2.22, y.exp() + 0.5, -1.0 / (y - torch.special.digamma(torch.ones_like(y))))
    for _ in range(iters):
        x = x - (torch.special.digamma(x) - y) / torch.polygamma(1, x)
    return x


def fit_dirichlet(logp: torch.Tensor, iters: int = 1000, tol: float = 1e-9) -> torch.Tensor:
    """Maximum-likelihood α of a Dirichlet over probability vectors given as their logs (N, J),
    float64: the method-of-moments start and Minka's fixed point α = ψ⁻¹(ψ(Σα) + mean log p)."""
    logp = logp.double()
    p, mean_logp = logp.exp(), logp.mean(dim=0)
    f = p.mean(dim=0)
    n, j = logp.shape
    total = (n * (j - 1) * -torch.special.digamma(torch.ones(()).double())) / (
        n * (f * f.log()).sum() - (f * logp.sum(dim=0)).sum())
    alpha = f * total.clamp_min(1e-3)
    for _ in range(iters):
        new = inv_digamma(torch.special.digamma(alpha.sum()) + mean_logp)
        done = float((new - alpha).pow(2).sum().sqrt()) < tol
        alpha = new
        if done:
            break
    return alpha


# ---------------------------------------------------------------- the method


class Transforms(Method):
    """A WRN trained to name the transformation applied to each normal image."""

    loss_names = ("loss_tf",)

    def __init__(self, cfg: TrialConfig, channels: int, device: torch.device) -> None:
        super().__init__(cfg, channels, device)
        p = self.p = cfg.params
        self.ts, self.heads, self.labels = transform_set(p.tf_set, p.tf_shift)  # labels: (K, n_heads)
        torch.manual_seed(cfg.seed)  # the WRN's init
        self.net = WideResNet(channels, sum(c for _, c in self.heads), p.tf_depth, p.tf_widen)
        self.net.apply(wrn_init)
        self.net = self.net.to(device)
        self.opt = torch.optim.SGD(self.net.parameters(), p.tf_lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
        self.epochs_done = 0
        self.alpha = [torch.ones(c, dtype=torch.float64) for _, c in self.heads for _ in self.ts]  # (K·H) Dirichlets

    def networks(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.opt}

    def begin_epoch(self) -> None:
        super().begin_epoch()
        if self.device.type == "cpu":  # speed only (1.7x a step on CPU): weights in the activations' NHWC layout
            self.net.to(memory_format=torch.channels_last)
        lr = self.p.tf_lr * 0.5 * (1 + math.cos(math.pi * self.epochs_done / self.cfg.epochs))  # cosine
        for group in self.opt.param_groups:
            group["lr"] = lr

    def log_probs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per head, log-softmax of every transformation of `x`: [(B, K, classes)]."""
        b, k = len(x), len(self.ts)
        logits = self.net(apply_all(x, self.ts))  # (B·K, Σ classes)
        return [F.log_softmax(part, dim=1).view(b, k, -1) for part in logits.split([c for _, c in self.heads], 1)]

    def step(self, x: torch.Tensor, noise: torch.Tensor, weight: float, gen: torch.Generator) -> torch.Tensor:
        if not any(t.flip for t in self.ts):  # augmentation: a random horizontal flip per image
            flip = (torch.rand(len(x), generator=gen) < 0.5).to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        labels = self.labels.to(x.device)  # (K, n_heads)
        loss_tf = sum(F.nll_loss(lp.flatten(0, 1), labels[:, h].repeat(len(x)))  # mean CE of each head
                      for h, lp in enumerate(self.log_probs(x)))
        self.opt.zero_grad(set_to_none=True)
        loss_tf.backward()
        sync_grads(self.net, weight)
        self.opt.step()
        return loss_tf.detach().double().cpu().reshape(1)

    def end_epoch(self, train: torch.Tensor, val: torch.Tensor) -> None:
        """After each epoch: one more epoch done (the cosine), and the Dirichlets refitted on the
        normal validation images (the training images when there are none)."""
        self.epochs_done += 1
        logps = self._log_probs_of(val if len(val) >= 2 else train)
        self.alpha = [fit_dirichlet(lp[:, t]) for lp in logps for t in range(len(self.ts))]

    def _log_probs_of(self, x: torch.Tensor, batch: int = 256) -> list[torch.Tensor]:
        self.net.eval()
        with scoring():
            parts = [self.log_probs(chunk.to(self.device)) for chunk in x.split(max(batch // len(self.ts), 1))]
        return [torch.cat([p[h] for p in parts]).cpu() for h in range(len(self.heads))]

    def components(self, x: torch.Tensor, batch: int = 256, train_mode: bool = False) -> dict[str, torch.Tensor]:
        """{nll, dirichlet, pmean, wrong} per image (see the module docstring); `batch` transformed
        images a forward pass."""
        logps = self._log_probs_of(x, batch) if len(x) else [torch.zeros(0, len(self.ts), c) for _, c in self.heads]
        k, n = len(self.ts), len(x)
        nll, dirichlet = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
        pmean, wrong = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
        for h, lp in enumerate(logps):  # lp: (N, K, classes)
            true = lp.gather(2, self.labels[:, h].expand(n, k)[:, :, None]).squeeze(2).double()  # (N, K)
            nll -= true.sum(1)
            pmean -= true.exp().sum(1)
            wrong += (lp.argmax(2) != self.labels[:, h]).double().sum(1)
            alpha = torch.stack(self.alpha[h * k:(h + 1) * k])  # (K, classes)
            dirichlet -= ((alpha - 1) * lp.double()).sum(dim=(1, 2))
        count = k * len(self.heads)
        return {"nll": nll, "dirichlet": dirichlet, "pmean": pmean / count, "wrong": wrong / count}

    def score(self, comps: dict[str, np.ndarray], stats: dict[str, float]) -> np.ndarray:
        return np.asarray(comps[self.p.tf_score], dtype=np.float64)

    def val_figures(self, stats: dict[str, float]) -> dict[str, float]:
        """The self-supervised signal on held-out normal images: mean cross-entropy a
        transformation (and head) and the accuracy of naming it."""
        count = len(self.ts) * len(self.heads)
        return {"val_tf_loss": stats["nll_mean"] / count, "val_tf_acc": 1.0 - stats["wrong_mean"]}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "epochs_done": self.epochs_done, "alpha": list(self.alpha)}

    def load_state_dict(self, sd: dict) -> None:
        super().load_state_dict(sd)
        self.epochs_done = int(sd["epochs_done"])
        self.alpha = [a.clone() for a in sd["alpha"]]
