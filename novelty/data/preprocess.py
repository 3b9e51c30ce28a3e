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

from .load import Split

MAD_FLOOR = 1e-8  # a flat image has no contrast to normalise: its deviation is floored, not divided by 0
GCN_CHUNK = 256  # images normalised at a time: their float64 copy stays in cache (each image's own row: same values)


def gcn(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> same shape and dtype: each image minus its mean, over its mean absolute
    deviation (so each has mean 0 and mean |x| 1), computed in float64, a chunk of images at
    a time (each image's mean and deviation are reductions over its own row: the values are
    those of the whole batch at once, bit for bit)."""
    out = torch.empty(x.shape, dtype=x.dtype)
    for src, dst in zip(x.flatten(1).split(GCN_CHUNK), out.flatten(1).split(GCN_CHUNK)):  # dst: views of out
        flat = src.double()  # (chunk, C*H*W), a copy
        flat -= flat.mean(dim=1, keepdim=True)
        flat /= flat.abs().mean(dim=1, keepdim=True).clamp_min(MAD_FLOOR)
        dst.copy_(flat)
    return out


def gcn_constants(train: torch.Tensor) -> tuple[float, float]:
    """The min-max constants of `gcn`'d normal training images: their smallest and largest pixel."""
    return _constants(gcn(train))


def _constants(g: torch.Tensor) -> tuple[float, float]:
    return float(g.min()), float(g.max())


def apply_preprocess(split: Split, how: str) -> Split:
    """The split with `how` applied to its train, validation and test images."""
    if how == "none":
        return split
    if how != "gcn":
        raise ValueError(f"unknown preprocess {how!r}")  # TrialConfig validated it: our bug
    train = gcn(split.train)  # normalised once: for the constants and as the train images
    lo, hi = _constants(train)
    if not hi > lo:
        raise ValueError("gcn: the normal training images have no contrast at all (every pixel equal)")

    def scale(g: torch.Tensor) -> torch.Tensor:  # gcn'd images into [-1, 1] by the train images' constants, in place
        return g.sub_(lo).div_(hi - lo).mul_(2.0).sub_(1.0).to(torch.float32)

    return dataclasses.replace(split, train=scale(train), val=scale(gcn(split.val)), test=scale(gcn(split.test)))
