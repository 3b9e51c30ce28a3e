"""Input preprocessing of a one-class split (`--preprocess`), applied after the split and
before any method sees an image.

- `none`: pixels in [-1, 1] as decoded (every trial before this option existed).
- `gcn`: per-image global contrast normalisation with the l1 scale, as Deep SVDD's code
  (Ruff et al. 2018, `global_contrast_normalization(x, scale='l1')`): subtract the image's
  own mean over all its pixels and channels, divide by its mean absolute deviation; then a
  min-max scaling into [-1, 1] whose two constants (the smallest and largest GCN'd pixel)
  come from the trial's own *normal training images* only: never the validation or test
  images, never another class, never a table copied from elsewhere. Validation and test
  images go through the same map and may fall outside [-1, 1].
"""
from __future__ import annotations

import dataclasses

import torch

from .data import Split

MAD_FLOOR = 1e-8  # a flat image has no contrast to normalise: its deviation is floored, not divided by 0


def gcn(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> same shape: each image minus its mean, over its mean absolute deviation
    (so each has mean 0 and mean |x| 1)."""
    flat = x.flatten(1).double()  # (N, C*H*W)
    flat = flat - flat.mean(dim=1, keepdim=True)
    flat = flat / flat.abs().mean(dim=1, keepdim=True).clamp_min(MAD_FLOOR)
    return flat.to(x.dtype).view_as(x)


def gcn_constants(train: torch.Tensor) -> tuple[float, float]:
    """The min-max constants of `gcn`'d normal training images: their smallest and largest pixel."""
    g = gcn(train)
    return float(g.min()), float(g.max())


def apply_preprocess(split: Split, how: str) -> Split:
    """The split with `how` applied to its train, validation and test images."""
    if how == "none":
        return split
    if how != "gcn":
        raise ValueError(f"unknown preprocess {how!r}")  # TrialConfig validated it: our bug
    lo, hi = gcn_constants(split.train)
    if not hi > lo:
        raise ValueError("gcn: the normal training images have no contrast at all (every pixel equal)")

    def scale(x: torch.Tensor) -> torch.Tensor:  # into [-1, 1] by the train images' constants
        return ((gcn(x) - lo) / (hi - lo) * 2.0 - 1.0).to(torch.float32)

    return dataclasses.replace(split, train=scale(split.train), val=scale(split.val), test=scale(split.test))
