"""A decoded dataset (`ImageSet`): uint8 images at the networks' size and integer labels, what
every reader returns (`novelty.data.readers`) and the cache stores (`novelty.data.load`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IMAGE_SIZE = 32


@dataclass(frozen=True)
class ImageSet:
    """A decoded dataset: uint8 images (N, C, 32, 32) and integer labels (N,)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    n_classes: int
    class_names: tuple[str, ...] = ()
    """Folder names of the classes (ImageFolder trees), index = label; empty for the others."""
    fingerprint: str = ""
    """Hash of the decoded tensors: part of every trial's key (see `fingerprint`)."""


def resize_uint8(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, 32, 32), bilinear, back to uint8."""
    if x.shape[-2:] == (IMAGE_SIZE, IMAGE_SIZE):
        return x.to(torch.uint8)
    out = []
    for chunk in x.split(4096):
        y = F.interpolate(chunk.float(), size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
        out.append(y.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)
