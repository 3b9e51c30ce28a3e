"""The losses of Tian et al. eq. 1-4 and 6 (the score of eq. 7-8 is in `novelty.methods.scoring`)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def loss_adv(logit_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating adversarial loss of G: BCE of D(x_hat) against "real"."""
    return F.binary_cross_entropy_with_logits(logit_fake, torch.ones_like(logit_fake))


def loss_con(x: torch.Tensor, x_hat: torch.Tensor, per_image: bool = False) -> torch.Tensor:
    """Contextual loss (eq. 2): ||x - x_hat||_1, mean over pixels (and batch unless per_image)."""
    err = (x - x_hat).abs().flatten(1).mean(dim=1)  # (B,)
    return err if per_image else err.mean()


def loss_fea(f_x: torch.Tensor, f_x_hat: torch.Tensor, per_image: bool = False) -> torch.Tensor:
    """Feature loss (eq. 3): ||f(x) - f(x_hat)||_2^2, mean over elements (and batch unless per_image)."""
    err = (f_x - f_x_hat).pow(2).flatten(1).mean(dim=1)  # (B,)
    return err if per_image else err.mean()


def loss_inf(h: torch.Tensor) -> torch.Tensor:
    """Entropy loss (eq. 4): p = softmax(h) over nz; mean over batch of -sum p log p."""
    log_p = F.log_softmax(h, dim=1)  # (B, nz)
    return -(log_p.exp() * log_p).sum(dim=1).mean()


def loss_d(logit_real: torch.Tensor, logit_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator: BCE on real (label 1) vs. x_hat.detach() (label 0)."""
    return 0.5 * (
        F.binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real))
        + F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake))
    )
