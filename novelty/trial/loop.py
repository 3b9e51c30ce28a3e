"""The one training loop every method runs in: epochs of seeded batches (or one fit for a
pixel method), DDP, divergence, the validation figures, the stopping rule, the oracle
trace, per-epoch checkpoints and resume.

Written for torch.distributed: with a process group of W ranks, every global batch of
`batch_size` images is split W ways, the method's step sums gradients with per-rank weights
so the update equals the single-process one, BatchNorm statistics are averaged at each
epoch's end, and rank 0 returns the model to score. All randomness comes from generators
seeded by (seed, epoch), so a trial resumed from its end-of-epoch checkpoint ends exactly
where an uninterrupted one does (on CPU).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .checkpoints import load_checkpoint, save_checkpoint
from ..config import RunOptions, TrialConfig
from ..data.load import Split
from .distributed import barrier, global_mean, make_deterministic, sync_buffers, world
from ..errors import DataError, TrainingDiverged
from ..methods.base import Method
from ..methods.scoring import auc

EpochCallback = Callable[[dict, Path | None], None]
REFCODE_BATCH = 64  # the GANomaly family's test batch size
NORMAL_FIRST_SEED = 0  # the order of the outliers in the normal-first view: one fixed order for every trial


@dataclass
class Run:
    """A method in training, and what its checkpoint holds besides the method's own state."""

    method: Method
    epoch: int = 0  # epochs completed
    history: list[dict] = field(default_factory=list)
    kept: dict | None = None  # --stop other than last: {"epoch", <network>: state dict} of the best epoch
    resumed_from: int = 0  # epochs this process found done in the checkpoint (not saved)

    def state_dict(self, key: str) -> dict:
        return {"key": key, "epoch": self.epoch, "history": self.history, "kept": self.kept,
                "method": self.method.state_dict()}

    def load_state_dict(self, sd: dict) -> None:
        self.method.load_state_dict(sd["method"])
        self.epoch, self.history, self.kept = sd["epoch"], list(sd["history"]), sd.get("kept")

    @property
    def scored_epoch(self) -> int:
        """The epoch whose model is (or will be) scored: the kept one, else the last."""
        return self.kept["epoch"] if self.kept is not None else self.epoch


def batches(n: int, batch_size: int, gen: torch.Generator, n_ranks: int) -> list[torch.Tensor]:
    """Global batches of a seeded permutation; a last batch too small for BatchNorm is dropped."""
    perm = torch.randperm(n, generator=gen)
    out = [perm[i: i + batch_size] for i in range(0, n, batch_size)]
    return [b for b in out if len(b) >= 2 * n_ranks]


def train_epoch(run: Run, cfg: TrialConfig, train_x: torch.Tensor, device: torch.device, progress: bool) -> dict:
    """One pass over the normal training images; returns the epoch's mean losses."""
    rank, n_ranks = world()
    method = run.method
    method.prepare(train_x)
    method.begin_epoch()
    gen = torch.Generator().manual_seed(cfg.seed * 100_003 + run.epoch)
    plan = batches(len(train_x), cfg.batch_size, gen, n_ranks)
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(plan), desc=f"epoch {run.epoch + 1}/{cfg.epochs}", unit="batch", dynamic_ncols=True)
    sums = torch.zeros(len(method.loss_names), dtype=torch.float64)
    t0, seen = time.perf_counter(), 0
    for idx in plan:
        noise = torch.randn((len(idx),) + tuple(train_x.shape[1:]), generator=gen) * cfg.noise_std
        local = idx.tensor_split(n_ranks)[rank]
        weight = len(local) / len(idx)
        x = train_x[local].to(device, non_blocking=True)  # (b, C, 32, 32) clean
        losses = method.step(x, noise.tensor_split(n_ranks)[rank].to(device), weight, gen)
        losses = global_mean(losses, weight)
        if not torch.isfinite(losses).all():
            shown = ", ".join(f"{n}={v:.4g}" for n, v in zip(method.loss_names, losses.tolist()))
            raise TrainingDiverged(f"{cfg.variant}: loss became NaN/inf in epoch {run.epoch + 1} ({shown}); "
                                   "try a lower --lr")
        method.after_step(losses)
        sums += losses
        seen += len(idx)
        if bar is not None:
            bar.set_postfix(**{n.removeprefix("loss_"): f"{v:.3f}" for n, v in zip(method.loss_names, losses.tolist())},
                            img_s=f"{seen / (time.perf_counter() - t0):.0f}")
            bar.update(1)
    if bar is not None:
        bar.close()
    for net in method.networks().values():
        sync_buffers(net)
    out = {n: float(v) / max(len(plan), 1) for n, v in zip(method.loss_names, sums)}
    return {**out, "images": seen, "seconds": time.perf_counter() - t0}


def fit_once(run: Run, split: Split) -> dict:
    """A pixel method's one "epoch": its fit on the normal training images."""
    t0 = time.perf_counter()
    run.method.fit(split.train, split.val)
    return {"images": len(split.train), "seconds": time.perf_counter() - t0}


@torch.no_grad()
def val_stats(val: dict[str, torch.Tensor], unscaled: tuple[str, ...] = ()) -> dict[str, float]:
    """Mean and std of each component (less the method's `unscaled` ones) on the normal validation
    images: {con_mean, ...}."""
    stats = {}
    for c, v in val.items():
        if c in unscaled:
            continue
        v = v.double()
        stats[f"{c}_mean"] = float(v.mean()) if len(v) else float("nan")
        stats[f"{c}_std"] = float(v.std()) if len(v) > 1 else float("nan")
    return stats


def validate(method: Method, val_x: torch.Tensor) -> dict:
    """Validation figures on normal-only held-out images (no labels, no test data): the mean and
    std of each score component (the scale `score_norm="val"` uses) and the mean score."""
    comps = method.components(val_x)
    stats = val_stats(comps, method.unscaled)
    score = (float(np.mean(method.score({c: v.numpy() for c, v in comps.items()}, stats)))
             if len(val_x) else float("nan"))
    return {**{f"val_{k}": v for k, v in stats.items()}, **method.val_figures(stats), "val_score": score}


def stats_of(metrics: dict) -> dict[str, float]:
    """The validation component statistics of an epoch's metrics, as `Method.score` takes them."""
    return {k[len("val_"):]: v for k, v in metrics.items() if k.startswith("val_") and k.endswith(("_mean", "_std"))}


def trace_subset(n_test: int, size: int, seed: int) -> torch.Tensor:
    """A fixed, seeded subset of test indices, kept in stored order (the trace's images)."""
    if size <= 0 or size >= n_test:
        return torch.arange(n_test)
    return torch.randperm(n_test, generator=torch.Generator().manual_seed(seed))[:size].sort().values


def normal_first(labels: torch.Tensor, seed: int = NORMAL_FIRST_SEED) -> torch.Tensor:
    """The order the reference code's test loader uses (GANomaly's lib/data.py: the normal
    test images first, then the outliers, never shuffled), so each batch of 64 is (nearly) one
    kind: the normal images in stored order, then the outliers in a fixed seeded order
    (the original datasets store their classes interleaved; our CIFAR-10 copy class by class)."""
    normal = (labels == 0).nonzero().flatten()
    outliers = (labels != 0).nonzero().flatten()
    mixed = outliers[torch.randperm(len(outliers), generator=torch.Generator().manual_seed(seed))]
    return torch.cat([normal, mixed])


@torch.no_grad()
def oracle_trace(method: Method, split: Split, subset: torch.Tensor, stats: dict[str, float]) -> dict[str, float]:
    """ORACLE (looks at test labels; feeds no choice): this epoch's test AUC of each component
    and of the score on `subset`, and for the paper's method "as the reference code scores":
    BatchNorm in train mode, batches of 64, over the subset in stored order and again with the
    normal images first (`normal_first`); on copies, so the model is not touched."""
    x, labels = split.test[subset], split.test_labels[subset].numpy()
    if len(np.unique(labels)) < 2:
        return {}
    comps = {c: v.numpy() for c, v in method.components(x).items()}
    out = {f"oracle_auc_{c}": auc(labels, v) for c, v in comps.items()}
    out["oracle_auc_mix"] = auc(labels, method.score(comps, stats))
    if method.refcode:
        for name, order in (("oracle_refcode_auc_mix", torch.arange(len(x))),
                            ("oracle_refcode_nf_auc_mix", normal_first(split.test_labels[subset]))):
            ref = copy.deepcopy(method).components(x[order], batch=REFCODE_BATCH, train_mode=True)
            raw = method.refcode_score({c: v.double().numpy() for c, v in ref.items()})
            out[name] = auc(labels[order.numpy()], raw)
    return out


def keep_if_best(run: Run, stop: str) -> None:
    """The stopping rule (--stop): after each epoch, keep a copy of the networks when the normal
    validation images' mean L_fea (val_fea) or L_con (val_con) is the lowest so far. Reads
    `run.history[-1]`'s validation figures only: no test image informs it."""
    if stop == "last":
        return
    metric = f"val_{stop.removeprefix('val_')}_mean"  # val_fea -> val_fea_mean
    if run.kept is None or run.history[-1][metric] < run.history[run.kept["epoch"] - 1][metric]:
        run.kept = {"epoch": run.epoch, **{k: {n: t.detach().clone() for n, t in m.state_dict().items()}
                                           for k, m in run.method.networks().items()}}


def fit(method_cls: type, cfg: TrialConfig, opts: RunOptions, split: Split, device: torch.device, key: str,
        checkpoint: Path | None = None, on_epoch: EpochCallback | None = None) -> Run:
    """Train for cfg.epochs (a pixel method: one fit), resuming from `checkpoint` if it holds this
    trial's state (`key`); returns the run with the networks of the epoch `cfg.stop` picks.

    With `opts.trace`, every epoch also records ORACLE test AUCs (`oracle_trace`) on a fixed
    subset of the test split; they are kept apart from the validation figures and feed nothing."""
    rank, n_ranks = world()
    if len(split.train) < 2 * n_ranks:
        raise DataError(f"{len(split.train)} training images cannot make a batch of >= 2 per rank on {n_ranks} rank(s)")
    if cfg.batch_size < 2 * n_ranks:
        raise ValueError(f"batch_size {cfg.batch_size} is too small for {n_ranks} ranks (need >= {2 * n_ranks})")
    make_deterministic(device)
    channels = split.train.shape[1]
    run = Run(method_cls(cfg, channels, device))
    checkpoint = checkpoint if method_cls.trained else None  # a pixel fit is one step: nothing to resume
    if checkpoint is not None:
        if not load_checkpoint(checkpoint, key, run.load_state_dict):
            run = Run(method_cls(cfg, channels, device))  # nothing half-loaded survives
        run.resumed_from = run.epoch
    subset = trace_subset(len(split.test), opts.trace_images, cfg.seed) if opts.trace else None
    epochs = cfg.epochs if method_cls.trained else 1
    # Speed only, same values: `torch.empty` skips the NaN fill that deterministic algorithms
    # turn on (it guards kernels that read memory they never wrote; no training step does).
    fill_uninitialized = torch.utils.deterministic.fill_uninitialized_memory
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        while run.epoch < epochs:
            if method_cls.trained:
                metrics = train_epoch(run, cfg, split.train, device, opts.progress)
                run.method.end_epoch(split.train, split.val)
            else:
                metrics = fit_once(run, split)
            run.epoch += 1
            metrics.update(validate(run.method, split.val), epoch=run.epoch, **run.method.row())
            if subset is not None and rank == 0:
                metrics.update(oracle_trace(run.method, split, subset, stats_of(metrics)))
            run.history.append(metrics)
            keep_if_best(run, cfg.stop)
            if rank == 0 and checkpoint is not None:
                save_checkpoint(run.state_dict(key), checkpoint)
            barrier()
            if on_epoch is not None and rank == 0:
                on_epoch({k: v for k, v in metrics.items() if not k.startswith("oracle_")}, checkpoint)
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = fill_uninitialized
    if run.kept is not None:  # score the kept epoch's networks
        for k, m in run.method.networks().items():
            m.load_state_dict(run.kept[k])
    return run
