"""One trial: train G and D on the normal class (D step, then G step), score the test split.

Written for torch.distributed: with a process group of W ranks, every global batch of
`batch_size` images is split W ways, gradients are summed with per-rank weights so the
update equals the single-process one, and rank 0 scores and returns the row. All
randomness comes from generators seeded by (seed, epoch), so a trial resumed from its
end-of-epoch checkpoint ends exactly where an uninterrupted one does (on CPU).
"""
from __future__ import annotations

import os
import pickle
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from .config import ConfigError, RunOptions, TrialConfig, first_line
from .data import DataError, Split
from .losses import loss_adv, loss_con, loss_d, loss_fea, loss_inf
from .models import Discriminator, Generator, weights_init
from .scoring import oracle_trace, per_image_errors, trace_subset, val_stats

D_COLLAPSE = 1e-5  # re-initialise D when its loss falls below this (GANomaly)
EpochCallback = Callable[[dict, Path | None], None]


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite."""


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read back."""


def pick_device(name: str) -> torch.device:
    """The torch device for `--device`; a device this machine lacks is the user's error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"--device {name!r} is not a torch device (use auto, cpu, cuda or cuda:N)") from exc
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index or 0) >= count:
            raise ConfigError(f"--device {name}: this machine has {count} CUDA device(s); use --device cpu or auto")
    elif device.type != "cpu":
        raise ConfigError(f"--device {name}: only cpu and cuda devices are supported")
    return device


def make_deterministic(device: torch.device) -> None:
    """Deterministic kernels: exact on CPU; on CUDA cuDNN/cuBLAS are pinned but atomics may differ."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    # torch.use_deterministic_algorithms(True, ...) would also import torch._inductor (~2 s in
    # every fresh sweep worker) to set torch.compile's flag; nothing here is compiled.
    torch._C._set_deterministic_algorithms(True, warn_only=device.type != "cpu")


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _init_weights(module: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    module.apply(lambda m: weights_init(m, gen))


@dataclass
class TrainState:
    """Everything a checkpoint holds."""

    G: Generator
    D: Discriminator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    epoch: int = 0  # epochs completed
    d_reinits: int = 0
    history: list[dict] = field(default_factory=list)
    resumed_from: int = 0  # epochs this process found done in the checkpoint (not saved)
    kept: dict | None = None  # --stop other than last: {"epoch", "G", "D"} of the best epoch so far

    def state_dict(self, key: str) -> dict:
        return {"key": key, "epoch": self.epoch, "d_reinits": self.d_reinits, "history": self.history,
                "G": self.G.state_dict(), "D": self.D.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "kept": self.kept}

    def load_state_dict(self, sd: dict) -> None:
        self.G.load_state_dict(sd["G"])
        self.D.load_state_dict(sd["D"])
        self.opt_g.load_state_dict(sd["opt_g"])
        self.opt_d.load_state_dict(sd["opt_d"])
        self.epoch, self.d_reinits, self.history = sd["epoch"], sd["d_reinits"], list(sd["history"])
        self.kept = sd.get("kept")

    @property
    def scored_epoch(self) -> int:
        """The epoch whose model is (or will be) scored: the kept one, else the last."""
        return self.kept["epoch"] if self.kept is not None else self.epoch


def build_state(cfg: TrialConfig, channels: int, device: torch.device) -> TrainState:
    torch.manual_seed(cfg.seed)  # CAM's Linear layers keep PyTorch's default init
    G = Generator(channels, cfg.nz, cfg.use_cam, cfg.cam_reduction)
    D = Discriminator(channels)
    _init_weights(G, cfg.seed)
    _init_weights(D, cfg.seed + 1)
    G, D = G.to(device), D.to(device)
    betas = (cfg.beta1, cfg.beta2)
    return TrainState(G, D, torch.optim.Adam(G.parameters(), cfg.lr, betas=betas),
                      torch.optim.Adam(D.parameters(), cfg.lr, betas=betas))


def save_checkpoint(state: TrainState, key: str, path: Path) -> None:
    """Atomic: a trial killed while saving keeps its previous checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        torch.save(state.state_dict(key), tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # full disk, quota, folder gone: leave no partial file
        tmp.unlink(missing_ok=True)
        why = first_line(exc, 160)
        try:
            free = f"{shutil.disk_usage(path.parent).free / 1e6:.1f} MB free there"
        except OSError:
            free = "the folder is not usable"
        raise CheckpointError(f"cannot write the checkpoint {path} ({free}; {why}): free space there, or pass "
                              f"--checkpoint-dir elsewhere") from exc


def load_checkpoint(state: TrainState, key: str, path: Path, device: torch.device) -> bool:
    """Resume from `path` if it holds this trial's state. Loaded with weights_only=True: a
    checkpoint holds tensors and plain values only, so a planted pickle cannot run code. An
    unreadable file (truncated, empty, foreign, malicious) is set aside with a warning and
    False is returned: the caller trains from a fresh state."""
    if not path.exists():
        return False
    try:
        sd = torch.load(path, map_location=device, weights_only=True)
        if not isinstance(sd, dict) or sd.get("key") != key:
            return False
        state.load_state_dict(sd)
    except (OSError, RuntimeError, EOFError, KeyError, ValueError, TypeError, AttributeError,
            pickle.UnpicklingError) as exc:
        bad = path.with_name(path.name + ".unreadable")
        os.replace(path, bad)
        why = first_line(exc, 200)
        print(f"novelty: warning: checkpoint {path} is unreadable ({why}); "
              f"moved it to {bad.name} and training this trial from scratch", flush=True)
        return False
    return True


def _sync_grads(module: torch.nn.Module, weight: float, world: int) -> None:
    """Sum of weight * grad over ranks = the gradient of the global-batch mean loss."""
    if world == 1:
        return
    for p in module.parameters():
        if p.grad is not None:
            p.grad.mul_(weight)
            dist.all_reduce(p.grad)


def _sync_buffers(module: torch.nn.Module, world: int) -> None:
    """Average BatchNorm running statistics so every rank scores with the same model."""
    if world == 1:
        return
    for b in module.buffers():
        if b.dtype.is_floating_point:
            dist.all_reduce(b)
            b.div_(world)


def _global_mean(values: torch.Tensor, weight: float, world: int) -> torch.Tensor:
    if world > 1:
        values = values * weight
        dist.all_reduce(values)
    return values


def batches(n: int, batch_size: int, gen: torch.Generator, world: int) -> list[torch.Tensor]:
    """Global batches of a seeded permutation; a last batch too small for BatchNorm is dropped."""
    perm = torch.randperm(n, generator=gen)
    out = [perm[i: i + batch_size] for i in range(0, n, batch_size)]
    return [b for b in out if len(b) >= 2 * world]


def train_epoch(state: TrainState, cfg: TrialConfig, train_x: torch.Tensor, device: torch.device,
                progress: bool) -> dict:
    """One pass over the normal training images; returns the epoch's mean losses."""
    rank, world = _world()
    G, D = state.G.train(), state.D.train()
    # Speed only, same values: on CPU the weights take the channels-last layout the models
    # run their activations in (models._layout), so oneDNN does not reorder them on every
    # call; and `torch.empty` skips the NaN fill that use_deterministic_algorithms turns on
    # (it guards kernels that read memory they never wrote; none in this step does).
    if device.type == "cpu":
        G.to(memory_format=torch.channels_last)
        D.to(memory_format=torch.channels_last)
    fill_uninitialized = torch.utils.deterministic.fill_uninitialized_memory
    torch.utils.deterministic.fill_uninitialized_memory = False
    gen = torch.Generator().manual_seed(cfg.seed * 100_003 + state.epoch)
    plan = batches(len(train_x), cfg.batch_size, gen, world)
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(plan), desc=f"epoch {state.epoch + 1}/{cfg.epochs}", unit="batch", dynamic_ncols=True)
    sums = torch.zeros(6, dtype=torch.float64)
    t0, seen = time.perf_counter(), 0
    for idx in plan:
        noise = torch.randn((len(idx),) + tuple(train_x.shape[1:]), generator=gen) * cfg.noise_std
        local = idx.tensor_split(world)[rank]
        part = noise.tensor_split(world)[rank]
        weight = len(local) / len(idx)
        x = train_x[local].to(device, non_blocking=True)  # (b, C, 32, 32) clean target
        x_noisy = x + part.to(device)  # encoder input

        x_hat, h = G(x_noisy)  # (b, C, 32, 32), (b, nz)

        # D step: real vs. x_hat.detach()
        logit_real, _ = D(x)
        logit_fake, _ = D(x_hat.detach())
        err_d = loss_d(logit_real, logit_fake)
        state.opt_d.zero_grad(set_to_none=True)
        err_d.backward()
        _sync_grads(D, weight, world)
        state.opt_d.step()

        # G step: fool the updated D, reconstruct x, match D's features, low-entropy latent
        D.requires_grad_(False)
        logit_fake, f_fake = D(x_hat)
        with torch.no_grad():
            _, f_real = D(x)
        l_adv, l_con, l_fea = loss_adv(logit_fake), loss_con(x, x_hat), loss_fea(f_real, f_fake)
        l_inf = loss_inf(h)
        err_g = cfg.w_adv * l_adv + cfg.w_con * l_con + cfg.w_fea * l_fea
        if cfg.use_entropy:
            err_g = err_g + cfg.w_inf * l_inf
        state.opt_g.zero_grad(set_to_none=True)
        err_g.backward()
        D.requires_grad_(True)
        _sync_grads(G, weight, world)
        state.opt_g.step()

        losses = torch.stack([err_d, err_g, l_adv, l_con, l_fea, l_inf]).detach().double().cpu()
        losses = _global_mean(losses, weight, world)
        if not torch.isfinite(losses).all():
            raise TrainingDiverged(f"loss became NaN/inf in epoch {state.epoch + 1} "
                                   f"(loss_d={losses[0]:.4g}, loss_g={losses[1]:.4g}); try a lower --lr")
        if losses[0] < D_COLLAPSE:  # same decision on every rank: the loss is global
            _init_weights(D, cfg.seed + 7919 * (state.d_reinits + 2))
            state.d_reinits += 1
        sums += losses
        seen += len(idx)
        if bar is not None:
            rate = seen / (time.perf_counter() - t0)
            bar.set_postfix(loss_d=f"{losses[0]:.3f}", loss_g=f"{losses[1]:.3f}",
                            loss_con=f"{losses[3]:.3f}", img_s=f"{rate:.0f}")
            bar.update(1)
    if bar is not None:
        bar.close()
    torch.utils.deterministic.fill_uninitialized_memory = fill_uninitialized
    _sync_buffers(G, world)
    _sync_buffers(D, world)
    n = max(len(plan), 1)
    names = ("loss_d", "loss_g", "loss_adv", "loss_con", "loss_fea", "loss_inf")
    out = {k: float(v) / n for k, v in zip(names, sums)}
    out["images"] = seen
    out["seconds"] = time.perf_counter() - t0
    return out


def validate(state: TrainState, val_x: torch.Tensor, device: torch.device) -> dict:
    """Validation figures on normal-only held-out images (no labels, no test data): the mean of
    each score component, and (val_*_mean/std) the scale `score_norm="val"` uses."""
    comps = per_image_errors(state.G, state.D, val_x, device)
    stats = val_stats(comps)
    return {"val_loss_con": stats["con_mean"], "val_loss_fea": stats["fea_mean"],
            **{f"val_{k}": v for k, v in stats.items()}}


def stats_of(metrics: dict) -> dict[str, float]:
    """The validation component statistics of an epoch's metrics, as `scoring.mix` takes them."""
    return {k[len("val_"):]: v for k, v in metrics.items() if k.startswith("val_") and k.endswith(("_mean", "_std"))}


def keep_if_best(state: TrainState, stop: str) -> None:
    """The stopping rule (--stop): after each epoch, keep a copy of G and D when its normal
    validation images' mean L_fea (val_fea) or L_con (val_con) is the lowest so far. Reads
    `state.history[-1]`'s validation figures only: no test image informs it."""
    if stop == "last":
        return
    metric = "val_loss_" + stop.removeprefix("val_")  # val_fea -> val_loss_fea
    if state.kept is None or state.history[-1][metric] < state.history[state.kept["epoch"] - 1][metric]:
        copy = lambda m: {k: v.detach().clone() for k, v in m.state_dict().items()}  # noqa: E731
        state.kept = {"epoch": state.epoch, "G": copy(state.G), "D": copy(state.D)}


def restore_kept(state: TrainState) -> None:
    """Load the kept epoch's G and D (if the rule kept one) for scoring."""
    if state.kept is not None:
        state.G.load_state_dict(state.kept["G"])
        state.D.load_state_dict(state.kept["D"])


def fit(cfg: TrialConfig, opts: RunOptions, split: Split, device: torch.device, key: str,
        checkpoint: Path | None = None, on_epoch: EpochCallback | None = None) -> TrainState:
    """Train for cfg.epochs, resuming from `checkpoint` if it holds this trial's state (`key`);
    returns the state with G and D of the epoch `cfg.stop` picks (`state.scored_epoch`).

    With `opts.trace`, every epoch also records ORACLE test AUCs (scoring.oracle_trace) on a
    fixed subset of the test split; they are kept apart from the validation figures and feed
    nothing in training."""
    rank, world = _world()
    if len(split.train) < 2 * world:
        raise DataError(f"{len(split.train)} training images cannot make a batch of >= 2 per rank on {world} rank(s)")
    if cfg.batch_size < 2 * world:
        raise ValueError(f"batch_size {cfg.batch_size} is too small for {world} ranks (need >= {2 * world})")
    make_deterministic(device)
    state = build_state(cfg, split.train.shape[1], device)
    if checkpoint is not None:
        if not load_checkpoint(state, key, checkpoint, device):
            state = build_state(cfg, split.train.shape[1], device)  # nothing half-loaded survives
        state.resumed_from = state.epoch
    subset = trace_subset(len(split.test), opts.trace_images, cfg.seed) if opts.trace else None
    while state.epoch < cfg.epochs:
        metrics = train_epoch(state, cfg, split.train, device, opts.progress)
        state.epoch += 1
        metrics.update(validate(state, split.val, device), epoch=state.epoch, d_reinits=state.d_reinits)
        if subset is not None and rank == 0:
            metrics.update(oracle_trace(state.G, state.D, split, subset, cfg.score_lambda, cfg.score_norm,
                                        stats_of(metrics), device))
        state.history.append(metrics)
        keep_if_best(state, cfg.stop)
        if rank == 0 and checkpoint is not None:
            save_checkpoint(state, key, checkpoint)
        if world > 1:
            dist.barrier()
        if on_epoch is not None and rank == 0:
            on_epoch({k: v for k, v in metrics.items() if not k.startswith("oracle_")}, checkpoint)
    restore_kept(state)
    return state
