"""The networks of Tian et al. section 3, DCGAN-style, for 32x32 inputs.

G = G_D(G_E(x + noise)): a denoising auto-encoder whose blocks are each followed by a
channel-attention module (CAM, eq. 5) when `use_cam`; D = the DCGAN encoder with one
logit, whose penultimate 256x4x4 map is the feature f(.) of L_fea and the score.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class CAM(nn.Module):
    """Channel gate (CBAM, eq. 5): F' = sigmoid(MLP(avgpool F) + MLP(maxpool F)) * F."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(  # shared "three-layer" MLP: C -> hidden -> C
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels)
        )

    def forward(self, f: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        avg = self.mlp(f.mean(dim=(2, 3)))  # (B, C)
        mx = self.mlp(f.amax(dim=(2, 3)))  # (B, C)
        gate = torch.sigmoid(avg + mx)[:, :, None, None]  # (B, C, 1, 1)
        return f * gate


def _gate(channels: int, use_cam: bool, reduction: int) -> nn.Module:
    return CAM(channels, reduction) if use_cam else nn.Identity()


class Encoder(nn.Module):
    """G_E: (B, nc, 32, 32) -> h (B, nz)."""

    def __init__(self, nc: int, nz: int, use_cam: bool, reduction: int = 16):
        super().__init__()
        lrelu = lambda: nn.LeakyReLU(0.2, inplace=True)  # noqa: E731
        self.blocks = nn.Sequential(
            nn.Conv2d(nc, 64, 4, 2, 1, bias=False), lrelu(),  # (B, 64, 16, 16)
            _gate(64, use_cam, reduction),
            nn.Conv2d(64, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), lrelu(),  # (B, 128, 8, 8)
            _gate(128, use_cam, reduction),
            nn.Conv2d(128, 256, 4, 2, 1, bias=False), nn.BatchNorm2d(256), lrelu(),  # (B, 256, 4, 4)
            _gate(256, use_cam, reduction),
            nn.Conv2d(256, nz, 4, 1, 0, bias=False),  # (B, nz, 1, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x).flatten(1)  # (B, nz)


class Decoder(nn.Module):
    """G_D: h (B, nz) -> x_hat (B, nc, 32, 32) in [-1, 1]."""

    def __init__(self, nc: int, nz: int, use_cam: bool, reduction: int = 16):
        super().__init__()
        relu = lambda: nn.ReLU(inplace=True)  # noqa: E731
        self.blocks = nn.Sequential(
            nn.ConvTranspose2d(nz, 256, 4, 1, 0, bias=False), nn.BatchNorm2d(256), relu(),  # (B, 256, 4, 4)
            _gate(256, use_cam, reduction),
            nn.ConvTranspose2d(256, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), relu(),  # (B, 128, 8, 8)
            _gate(128, use_cam, reduction),
            nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False), nn.BatchNorm2d(64), relu(),  # (B, 64, 16, 16)
            _gate(64, use_cam, reduction),
            nn.ConvTranspose2d(64, nc, 4, 2, 1, bias=False), nn.Tanh(),  # (B, nc, 32, 32)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.blocks(h[:, :, None, None])


class Generator(nn.Module):
    """Denoising auto-encoder: returns (x_hat, h) for a (noisy) input."""

    def __init__(self, nc: int, nz: int = 100, use_cam: bool = True, reduction: int = 16):
        super().__init__()
        self.encoder = Encoder(nc, nz, use_cam, reduction)
        self.decoder = Decoder(nc, nz, use_cam, reduction)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)  # (B, nz)
        return self.decoder(h), h  # (B, nc, 32, 32), (B, nz)


class Discriminator(nn.Module):
    """DCGAN encoder without CAM: returns (logit (B,), features f(x) (B, 256, 4, 4))."""

    def __init__(self, nc: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(nc, 64, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),  # (B, 64, 16, 16)
            nn.Conv2d(64, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.LeakyReLU(0.2, inplace=True),  # (B, 128, 8, 8)
            nn.Conv2d(128, 256, 4, 2, 1, bias=False), nn.BatchNorm2d(256), nn.LeakyReLU(0.2, inplace=True),  # (B, 256, 4, 4)
        )
        self.classifier = nn.Conv2d(256, 1, 4, 1, 0, bias=False)  # (B, 1, 1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return self.classifier(f).flatten(), f


def weights_init(m: nn.Module, generator: torch.Generator | None = None) -> None:
    """DCGAN init: conv weights N(0, 0.02); BatchNorm weight N(1, 0.02), bias 0."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02, generator=generator)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02, generator=generator)
        nn.init.zeros_(m.bias)
