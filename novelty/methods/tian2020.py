"""Tian et al. (MMAsia '20), section 3: a denoising auto-encoder G (with channel attention,
`cam`/`full`) trained against a discriminator D (with the latent entropy loss,
`entropy`/`full`), scored by eq. 7-8. The four variants of table 4 are this one method.

    G step:  λ_adv·L_adv + λ_con·L_con + λ_fea·L_fea (+ λ_inf·L_inf)      (eq. 1-4, 6)
    D step:  BCE(D(x), real) + BCE(D(x_hat.detach()), fake)
    score:   A(x) = λ·L_con(x) + (1 − λ)·L_fea(x), min-max over the test split (eq. 7-8)
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ..config import TrialConfig
from .losses import loss_adv, loss_con, loss_d, loss_fea, loss_inf
from .networks import Discriminator, Generator
from .scoring import eq7, mix
from .base import Method, init_weights, scoring, sync_grads

D_COLLAPSE = 1e-5  # re-initialise D when its loss falls below this (GANomaly)


def ink(x: torch.Tensor) -> torch.Tensor:
    """Mean intensity of each image, in [0, 1] (pixels are in [-1, 1]): (N, C, H, W) -> (N,)."""
    return x.float().add(1).div(2).flatten(1).mean(dim=1).cpu()


class Tian2020(Method):
    """G (denoising AE, CAM when cfg.variant is cam/full) and D, trained D step then G step."""

    loss_names = ("loss_d", "loss_g", "loss_adv", "loss_con", "loss_fea", "loss_inf")
    refcode = True
    unscaled = ("ink",)  # the image's own mean intensity: the divisor of score_norm "ink", not an error

    def __init__(self, cfg: TrialConfig, channels: int, device: torch.device) -> None:
        super().__init__(cfg, channels, device)
        self.use_cam = cfg.variant in ("cam", "full")
        self.use_entropy = cfg.variant in ("entropy", "full")
        torch.manual_seed(cfg.seed)  # CAM's Linear layers keep PyTorch's default init
        G = Generator(channels, cfg.nz, self.use_cam, cfg.cam_reduction)
        D = Discriminator(channels)
        init_weights(G, cfg.seed)
        init_weights(D, cfg.seed + 1)
        self.G, self.D = G.to(device), D.to(device)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), cfg.lr, betas=betas)
        self.d_reinits = 0

    def networks(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_g": self.opt_g, "opt_d": self.opt_d}

    def begin_epoch(self) -> None:
        super().begin_epoch()
        # Speed only, same values: on CPU the weights take the channels-last layout the models
        # run their activations in (models._layout), so oneDNN does not reorder them on every call
        if self.device.type == "cpu":
            self.G.to(memory_format=torch.channels_last)
            self.D.to(memory_format=torch.channels_last)

    def step(self, x: torch.Tensor, noise: torch.Tensor, weight: float, gen: torch.Generator) -> torch.Tensor:
        cfg, G, D = self.cfg, self.G, self.D
        x_hat, h = G(x + noise)  # (b, C, 32, 32), (b, nz): the encoder sees x + N(0, σ²)

        # D step: real vs. x_hat.detach()
        logit_real, _ = D(x)
        logit_fake, _ = D(x_hat.detach())
        err_d = loss_d(logit_real, logit_fake)
        self.opt_d.zero_grad(set_to_none=True)
        err_d.backward()
        sync_grads(D, weight)
        self.opt_d.step()

        # G step: fool the updated D, reconstruct x, match D's features, low-entropy latent
        D.requires_grad_(False)
        logit_fake, f_fake = D(x_hat)  # f: (b, 256, 4, 4)
        with torch.no_grad():
            _, f_real = D(x)
        l_adv, l_con, l_fea = loss_adv(logit_fake), loss_con(x, x_hat), loss_fea(f_real, f_fake)
        l_inf = loss_inf(h)
        err_g = cfg.w_adv * l_adv + cfg.w_con * l_con + cfg.w_fea * l_fea
        if self.use_entropy:
            err_g = err_g + cfg.w_inf * l_inf
        self.opt_g.zero_grad(set_to_none=True)
        err_g.backward()
        D.requires_grad_(True)
        sync_grads(G, weight)
        self.opt_g.step()
        return torch.stack([err_d, err_g, l_adv, l_con, l_fea, l_inf]).detach().double().cpu()

    def after_step(self, losses: torch.Tensor) -> None:
        if losses[0] < D_COLLAPSE:  # same decision on every rank: the loss is global
            init_weights(self.D, self.cfg.seed + 7919 * (self.d_reinits + 2))
            self.d_reinits += 1

    def components(self, x: torch.Tensor, batch: int = 256, train_mode: bool = False) -> dict[str, torch.Tensor]:
        """{con, fea, lat, ink} per image: L_con, L_fea, GANomaly's latent distance
        (G_E(x) − G_E(x_hat))² through the same encoder (kept for study), and the image's ink."""
        with scoring():
            return self._components(x, batch, train_mode)

    def _components(self, x: torch.Tensor, batch: int, train_mode: bool) -> dict[str, torch.Tensor]:
        G, D = self.G.train(train_mode), self.D.train(train_mode)
        out: dict[str, list[torch.Tensor]] = {c: [] for c in ("con", "fea", "lat", "ink")}
        for chunk in x.split(batch):
            xb = chunk.to(self.device)
            x_hat, h = G(xb)  # (b, C, 32, 32), (b, nz)
            _, f_x = D(xb)  # (b, 256, 4, 4)
            _, f_hat = D(x_hat)
            h_hat = G.encoder(x_hat)  # (b, nz)
            out["con"].append(loss_con(xb, x_hat, per_image=True).cpu())
            out["fea"].append(loss_fea(f_x, f_hat, per_image=True).cpu())
            out["lat"].append((h - h_hat).pow(2).mean(dim=1).cpu())
            out["ink"].append(ink(chunk))
        return {c: torch.cat(v) if v else torch.zeros(0) for c, v in out.items()}

    def score(self, comps: dict[str, np.ndarray], stats: dict[str, float]) -> np.ndarray:
        return mix(comps, self.cfg.score_lambda, self.cfg.score_norm, stats)

    def refcode_score(self, comps: dict[str, np.ndarray]) -> np.ndarray:
        return eq7(comps["con"], comps["fea"], self.cfg.score_lambda)  # raw, as that code mixed

    def val_figures(self, stats: dict[str, float]) -> dict[str, float]:
        return {"val_loss_con": stats["con_mean"], "val_loss_fea": stats["fea_mean"]}

    def row(self) -> dict:
        return {"d_reinits": self.d_reinits}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "d_reinits": self.d_reinits}

    def load_state_dict(self, sd: dict) -> None:
        super().load_state_dict(sd)
        self.d_reinits = int(sd["d_reinits"])
