"""The trained baselines of the paper's tables 2-3, on the paper's own encoder and decoder
(no CAM, no discriminator, no entropy loss):

- `dae`: the generator alone, a denoising auto-encoder trained on L_con (input noise
  σ = noise_std). Score: per-image L_con.
- `vae`: a convolutional VAE on the same encoder (2·nz outputs: μ, log σ²) and decoder, no
  input noise. Loss: the negative ELBO, Σ (x − x̂)² + KL(q(z|x) ‖ N(0, I)), batch mean.
  Score: the negative ELBO with z = μ (deterministic), per image.

Both use TrialConfig's lr, betas, batch size, epochs, nz and seed, and run in the one loop
(checkpoints, resume, DDP, the trace); they score their last epoch.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..config import TrialConfig
from .losses import loss_con
from .networks import Decoder, Encoder, Generator
from .base import Method, init_weights, scoring, sync_grads, world


class VAENet(nn.Module):
    """Convolutional VAE on the generator's encoder and decoder (no CAM)."""

    def __init__(self, nc: int, nz: int):
        super().__init__()
        self.nz = nz
        self.encoder = Encoder(nc, 2 * nz, use_cam=False)  # (B, 2nz): mu, log sigma^2
        self.decoder = Decoder(nc, nz, use_cam=False)

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None):
        """eps (B, nz): the reparameterisation's noise in training (z = mu + eps * sigma); z = mu without."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)  # (B, nz) each
        z = mu + eps.to(mu.device) * (0.5 * logvar).exp() if eps is not None else mu
        return self.decoder(z), mu, logvar


def vae_neg_elbo(x: torch.Tensor, x_hat: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-image negative ELBO: sum of squared errors + KL(N(mu, sigma^2) || N(0, I)); (B,)."""
    rec = (x - x_hat).pow(2).flatten(1).sum(1)
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
    return rec + kl


class _AutoEncoder(Method):
    """One network, one Adam, one loss; the subclass says which network and which loss."""

    def __init__(self, cfg: TrialConfig, channels: int, device: torch.device) -> None:
        super().__init__(cfg, channels, device)
        torch.manual_seed(cfg.seed)
        net = self.build(channels, cfg.nz)
        init_weights(net, cfg.seed)
        self.net = net.to(device)
        self.opt = torch.optim.Adam(self.net.parameters(), cfg.lr, betas=(cfg.beta1, cfg.beta2))

    def build(self, channels: int, nz: int) -> nn.Module:
        raise NotImplementedError

    def loss(self, x: torch.Tensor, noise: torch.Tensor, gen: torch.Generator, weight: float) -> torch.Tensor:
        """The batch's loss; `weight` = this rank's share of the global batch (1 in one process)."""
        raise NotImplementedError

    def per_image(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def networks(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.opt}

    def step(self, x: torch.Tensor, noise: torch.Tensor, weight: float, gen: torch.Generator) -> torch.Tensor:
        loss = self.loss(x, noise, gen, weight)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        sync_grads(self.net, weight)
        self.opt.step()
        return loss.detach().double().cpu().reshape(1)

    def components(self, x: torch.Tensor, batch: int = 256, train_mode: bool = False) -> dict[str, torch.Tensor]:
        self.net.train(train_mode)
        with scoring():
            out = [self.per_image(chunk.to(self.device)).cpu() for chunk in x.split(batch)]
        return {"score": torch.cat(out) if out else torch.zeros(0)}


class DAE(_AutoEncoder):
    """The generator alone, trained on L_con of its denoised reconstruction; score L_con."""

    def build(self, channels: int, nz: int) -> nn.Module:
        return Generator(channels, nz, use_cam=False)

    def loss(self, x: torch.Tensor, noise: torch.Tensor, gen: torch.Generator, weight: float) -> torch.Tensor:
        x_hat, _ = self.net(x + noise)  # (b, C, 32, 32)
        return loss_con(x, x_hat)

    def per_image(self, x: torch.Tensor) -> torch.Tensor:
        x_hat, _ = self.net(x)
        return loss_con(x, x_hat, per_image=True)


class VAE(_AutoEncoder):
    """A VAE on the same encoder/decoder (no input noise); score the negative ELBO at z = μ."""

    def build(self, channels: int, nz: int) -> nn.Module:
        return VAENet(channels, nz)

    def loss(self, x: torch.Tensor, noise: torch.Tensor, gen: torch.Generator, weight: float) -> torch.Tensor:
        x_hat, mu, logvar = self.net(x, self.eps(len(x), weight, gen))  # no input noise: the VAE samples its own
        return vae_neg_elbo(x, x_hat, mu, logvar).mean()

    def eps(self, b: int, weight: float, gen: torch.Generator) -> torch.Tensor:
        """This rank's rows of the global batch's reparameterisation noise (global_b, nz), split
        as the loop splits the batch: every rank draws the whole of it from the shared generator and
        keeps its own part, so W ranks use the noise one process would (not W copies of one part)."""
        rank, n_ranks = world()
        global_b = round(b / weight)
        return torch.randn((global_b, self.net.nz), generator=gen).tensor_split(n_ranks)[rank]

    def per_image(self, x: torch.Tensor) -> torch.Tensor:
        x_hat, mu, logvar = self.net(x)
        return vae_neg_elbo(x, x_hat, mu, logvar)
