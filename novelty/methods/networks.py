"""The networks of Tian et al. section 3, DCGAN-style, for 32x32 inputs.

G = G_D(G_E(x + noise)): a denoising auto-encoder whose blocks are each followed by a
channel-attention module (CAM, eq. 5) when `use_cam`; D = the DCGAN encoder with one
logit, whose penultimate 256x4x4 map is the feature f(.) of L_fea and the score.

On CPU the networks run in channels-last (NHWC) memory format: a training step is ~10%
faster there (oneDNN reorders NCHW tensors on every call). The forward methods set the
layout of their input, so training, validation, scoring and a resumed trial all see the
same layout, and so sum in the same order, whatever the layout of the weights (checked
bit for bit). NHWC sums in another order than NCHW did, so results differ from the NCHW
code's in the last bits (and GAN training can grow that, as a reseed would), never
between two runs.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class _SpatialMax(torch.autograd.Function):
    """f.amax(dim=(2, 3)) with the same gradient as autograd's, bit for bit, computed faster.

    Autograd's amax backward is (g / mask.sum()) * mask with a bool mask; on CPU building
    and converting that bool tensor costs ~4x the float ops. Here the mask is written as
    floats (1.0 / 0.0) straight away: same count (exact small integers), same division,
    same product, so the same bits, ties (e.g. an all-zero ReLU map) included.
    """

    @staticmethod
    def forward(ctx, f: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C)
        mx = f.amax(dim=(2, 3))
        ctx.save_for_backward(f, mx)
        return mx

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        f, mx = ctx.saved_tensors
        mask = torch.empty_like(f)
        torch.eq(f, mx[:, :, None, None], out=mask)  # 1.0 where f is its map's max
        count = mask.sum(dim=(2, 3), keepdim=True)
        return (g[:, :, None, None] / count) * mask


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
        mx = self.mlp(_SpatialMax.apply(f))  # (B, C): f.amax(dim=(2, 3))
        gate = torch.sigmoid(avg + mx)[:, :, None, None]  # (B, C, 1, 1)
        return f * gate


def _layout(x: torch.Tensor) -> torch.Tensor:
    """The activation layout of the networks: channels-last (NHWC) on CPU, unchanged elsewhere.

    Built explicitly with the canonical NHWC strides: for C == 1 or H == W == 1 a plain
    `.contiguous(memory_format=torch.channels_last)` keeps NCHW strides (both layouts
    match), which PyTorch then reads as NCHW.
    """
    if x.device.type != "cpu" or x.dim() != 4:
        return x
    b, c, h, w = x.shape
    if x.stride() == (h * w * c, 1, w * c, c):
        return x
    nhwc = x.new_empty((b, h, w, c))
    nhwc.copy_(x.permute(0, 2, 3, 1))
    return nhwc.permute(0, 3, 1, 2)


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
        return self.blocks(_layout(h[:, :, None, None]))


class Generator(nn.Module):
    """Denoising auto-encoder: returns (x_hat, h) for a (noisy) input."""

    def __init__(self, nc: int, nz: int, use_cam: bool = True, reduction: int = 16):
        super().__init__()
        self.encoder = Encoder(nc, nz, use_cam, reduction)
        self.decoder = Decoder(nc, nz, use_cam, reduction)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(_layout(x))  # (B, nz)
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
        f = self.features(_layout(x))
        return self.classifier(f).flatten(), f


def _normal_(t: torch.Tensor, mean: float, std: float, generator: torch.Generator | None) -> None:
    """t <- N(mean, std), drawn in NCHW order on the generator's device, whatever t's layout/device."""
    where = generator.device if generator is not None else t.device
    draw = torch.empty(t.shape, dtype=t.dtype, device=where)
    nn.init.normal_(draw, mean, std, generator=generator)
    with torch.no_grad():
        t.copy_(draw)


def weights_init(m: nn.Module, generator: torch.Generator | None = None) -> None:
    """DCGAN init: conv weights N(0, 0.02); BatchNorm weight N(1, 0.02), bias 0.

    The draws do not depend on the weights' memory layout (normal_ fills in memory
    order, so a channels-last weight filled in place would get permuted values) nor on
    their device (a CPU generator can re-initialise a CUDA D).
    """
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        _normal_(m.weight, 0.0, 0.02, generator)
    elif isinstance(m, nn.BatchNorm2d):
        _normal_(m.weight, 1.0, 0.02, generator)
        nn.init.zeros_(m.bias)
