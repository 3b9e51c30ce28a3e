"""The own hyper-parameters of the methods beyond the paper (their MethodSpec.params), kept
torch-free so configuration, the CLI and the report read them without importing a network."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError

TF_SETS = ("rot4", "rot4_flip", "geom72", "rot_trans")
TF_SCORES = ("dirichlet", "nll", "pmean", "wrong")


@dataclass(frozen=True)
class TransformsParams:
    """Hyper-parameters of `transforms` (self-supervised transformation prediction)."""

    tf_set: str = "geom72"
    """Transformations to predict: rot4 (4 rotations), rot4_flip (× horizontal flip, 8), geom72 (GEOM's 72: flip × 3×3 translations × 4 rotations), rot_trans (Hendrycks et al.: 4 rotations × 3×3 translations, a rotation head and two translation heads)."""
    tf_shift: int = 8
    """Translation in pixels of geom72 and rot_trans (GEOM and Hendrycks et al.: 8 on 32×32), reflect-padded."""
    tf_depth: int = 10
    """Depth of the wide residual network, 6n+4 (n pre-activation blocks per stage): 10, 16, 22, ..."""
    tf_widen: int = 2
    """Widen factor of the WRN (stage widths 16k, 32k, 64k; GEOM: 8, Hendrycks: 4)."""
    tf_lr: float = 0.05
    """SGD learning rate (Nesterov momentum 0.9, weight decay 5e-4), cosine-annealed over the epochs."""
    tf_score: str = "dirichlet"
    """The score: dirichlet (GEOM's), nll (summed cross-entropy of the true transformations, Hendrycks et al.), pmean (GEOM's simplified), wrong (share of transformations misread)."""

    def __post_init__(self) -> None:
        if self.tf_set not in TF_SETS:
            raise ConfigError(f"unknown --tf-set {self.tf_set!r}; choose one of {', '.join(TF_SETS)}")
        if self.tf_score not in TF_SCORES:
            raise ConfigError(f"unknown --tf-score {self.tf_score!r}; choose one of {', '.join(TF_SCORES)}")
        if self.tf_depth < 10 or (self.tf_depth - 4) % 6:
            raise ConfigError(f"--tf-depth must be 6n+4 with n >= 1 (10, 16, 22, ...; got {self.tf_depth})")
        if self.tf_widen < 1 or self.tf_shift < 0:
            raise ConfigError(f"--tf-widen must be >= 1 and --tf-shift >= 0 (got {self.tf_widen}, {self.tf_shift})")
        if not (math.isfinite(self.tf_lr) and self.tf_lr > 0):
            raise ConfigError(f"--tf-lr must be > 0 (got {self.tf_lr})")


SVDD_OBJECTIVES = ("one-class", "soft-boundary")


@dataclass(frozen=True)
class DeepSVDDParams:
    """Hyper-parameters of `deepsvdd` (Ruff et al., ICML 2018)."""

    svdd_objective: str = "one-class"
    """one-class (minimise the mean squared distance of the images' features to the centre c) or soft-boundary (a radius R with slack: R² + (1/ν)·mean max(0, ‖φ(x) − c‖² − R²))."""
    svdd_nu: float = 0.1
    """ν of the soft-boundary objective, in (0, 1]: the share of training images allowed outside the sphere."""
    svdd_lr: float = 1e-4
    """Adam learning rate (of the autoencoder pretraining too), as Ruff et al."""
    svdd_weight_decay: float = 5e-7
    """Adam weight decay of the Deep SVDD objective (Ruff et al.: 0.5e-6; the pretraining uses their 0.5e-3)."""
    svdd_pretrain_epochs: int = 0
    """Epochs of --epochs spent pretraining the encoder as an autoencoder (Ruff et al.'s pretraining), before the centre is set from the trained encoder; 0: none (the centre from the initial network)."""

    def __post_init__(self) -> None:
        if self.svdd_objective not in SVDD_OBJECTIVES:
            raise ConfigError(f"unknown --svdd-objective {self.svdd_objective!r}; choose one of {', '.join(SVDD_OBJECTIVES)}")
        if not 0.0 < self.svdd_nu <= 1.0:
            raise ConfigError(f"--svdd-nu must be in (0, 1] (got {self.svdd_nu})")
        if not (math.isfinite(self.svdd_lr) and self.svdd_lr > 0):
            raise ConfigError(f"--svdd-lr must be > 0 (got {self.svdd_lr})")
        if not (math.isfinite(self.svdd_weight_decay) and self.svdd_weight_decay >= 0):
            raise ConfigError(f"--svdd-weight-decay must be >= 0 (got {self.svdd_weight_decay})")
        if self.svdd_pretrain_epochs < 0:
            raise ConfigError(f"--svdd-pretrain-epochs must be >= 0 (got {self.svdd_pretrain_epochs})")
