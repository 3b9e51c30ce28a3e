"""The interface every method implements, and what the training loop (`novelty.trial.loop`)
calls on it. A trained method (`trained = True`) takes optimisation steps on batches the
loop draws; a pixel method (`trained = False`) fits once, as its one "epoch".

    method = Cls(cfg, channels, device)           # its state, seeded by cfg.seed
    losses = method.step(x, noise, weight, gen)   # one optimiser step on this rank's batch
    method.after_step(global_losses)              # e.g. re-initialise a collapsed D
    method.prepare(train); method.end_epoch(train, val)   # before / after each epoch's steps
    comps  = method.components(x)                 # per-image score components, eval mode
    raw    = method.score(comps, stats)           # the per-image score (eq. 7 for the paper)
    sd     = method.state_dict(); method.load_state_dict(sd)   # checkpoints (tensors only)
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from ..config import TrialConfig
from .networks import weights_init


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def sync_grads(module: torch.nn.Module, weight: float) -> None:
    """Sum of weight * grad over ranks = the gradient of the global-batch mean loss."""
    if world()[1] == 1:
        return
    for p in module.parameters():
        if p.grad is not None:
            p.grad.mul_(weight)
            dist.all_reduce(p.grad)


@contextlib.contextmanager
def scoring() -> Iterator[None]:
    """Where `components` runs its forward passes: inference mode (no autograd bookkeeping at
    all), and `torch.empty` without the NaN fill deterministic algorithms turn on (it guards
    kernels that read memory they never wrote; no forward pass does: the training loop turns it
    off for its steps too). Speed only: the same kernels, the same values, bit for bit."""
    fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        with torch.inference_mode():
            yield
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = fill


def init_weights(module: nn.Module, seed: int) -> None:
    """DCGAN init of every conv / BatchNorm of `module`, drawn from a generator seeded by `seed`."""
    gen = torch.Generator().manual_seed(seed)
    module.apply(lambda m: weights_init(m, gen))


class Method:
    """A novelty-detection method behind the loop's interface (see the module docstring)."""

    trained: bool = True
    """True: the loop runs epochs of `step`; False: it calls `fit` once (a pixel method)."""
    loss_names: tuple[str, ...] = ("loss",)
    """Names of the losses `step` returns, in order (the trace's and the epoch's columns)."""
    multi_rank: bool = True
    """Whether it can run under torch.distributed (DDP); a pixel method cannot."""
    refcode: bool = False
    """Whether the trace adds the reference code's view (BatchNorm in train mode, batches of 64,
    scored by `refcode_score`)."""
    unscaled: tuple[str, ...] = ()
    """Components that are no error to scale (e.g. an image's ink): the validation statistics
    (the `stats` of `score`) leave them out."""

    def __init__(self, cfg: TrialConfig, channels: int, device: torch.device) -> None:
        self.cfg, self.device = cfg, device

    # ---------------------------------------------------------------- training
    def networks(self) -> dict[str, nn.Module]:
        """Its networks by name: kept by the stopping rule, synced across ranks, checkpointed."""
        return {}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}

    def begin_epoch(self) -> None:
        """Called before each epoch's steps: networks into train mode."""
        for net in self.networks().values():
            net.train()

    def step(self, x: torch.Tensor, noise: torch.Tensor, weight: float, gen: torch.Generator) -> torch.Tensor:
        """One optimiser step on this rank's images `x` (b, C, 32, 32) with the input noise drawn
        for them; `weight` = this rank's share of the global batch (gradients are summed with it
        across ranks, `novelty.trial.distributed.sync_grads`). Returns the losses (`loss_names`) as a
        1-D tensor."""
        raise NotImplementedError

    def prepare(self, train: torch.Tensor) -> None:
        """Called before each epoch's steps with all the normal training images (e.g. Deep SVDD's
        centre from an initial forward pass). Every rank calls it with the same images."""

    def end_epoch(self, train: torch.Tensor, val: torch.Tensor) -> None:
        """Called after each epoch's steps, before validation, with the normal training and
        validation images (e.g. a score's constants fitted on normal images). Every rank calls it."""

    def after_step(self, losses: torch.Tensor) -> None:
        """Called with the global-mean losses after each step (all ranks see the same values)."""

    def fit(self, train: torch.Tensor, val: torch.Tensor) -> None:
        """A pixel method's one fit on the normal training images (validation images may choose
        its settings: they are normal too)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- scoring
    def components(self, x: torch.Tensor, batch: int = 256, train_mode: bool = False) -> dict[str, torch.Tensor]:
        """Per-image score components of images `x`: {name: (N,)}, eval mode unless `train_mode`,
        in `scoring()`, `batch` images a forward pass. Keep `batch` as it is: with channel
        attention a batch's size can move a score's last bits (the MLP's matrix product takes
        another kernel for some sizes), so another default would change stored scores."""
        raise NotImplementedError

    def score(self, comps: dict[str, np.ndarray], stats: dict[str, float]) -> np.ndarray:
        """The per-image score from the components (float64): its one component by default."""
        return np.asarray(comps["score"], dtype=np.float64)

    def refcode_score(self, comps: dict[str, np.ndarray]) -> np.ndarray:
        """The score as the method's reference code computes it from components taken its way
        (the trace's oracle_refcode views; only called when `refcode`)."""
        raise NotImplementedError

    def val_figures(self, stats: dict[str, float]) -> dict[str, float]:
        """Extra per-epoch validation figures from the components' validation statistics."""
        return {}

    def row(self) -> dict:
        """Its own row columns (MethodSpec.columns) after training."""
        return {}

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict:
        return {**{k: m.state_dict() for k, m in self.networks().items()},
                **{k: o.state_dict() for k, o in self.optimizers().items()}}

    def load_state_dict(self, sd: dict) -> None:
        for k, m in {**self.networks(), **self.optimizers()}.items():
            m.load_state_dict(sd[k])
