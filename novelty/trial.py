"""A whole trial, dataset -> split -> training -> scores -> row: what the CLI, the Ray
sweep driver and the Slurm job array all call. Imports no Ray."""
from __future__ import annotations

import dataclasses
import datetime as dt
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist

from . import __version__
from .config import RunOptions, TrialConfig
from .data import load_imageset, one_class_split
from .results import check_writable, is_local, open_store, write_trial
from .scoring import score_test
from .train import EpochCallback, fit, pick_device


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def default_checkpoint(cfg: TrialConfig, opts: RunOptions) -> Path | None:
    """Where the trial's per-epoch checkpoint lives (None: results are remote and none was given)."""
    if opts.checkpoint_dir:
        return Path(opts.checkpoint_dir) / cfg.key() / "checkpoint.pt"
    if is_local(opts.out):
        _, base = open_store(opts.out)
        return Path(base) / "checkpoints" / cfg.key() / "checkpoint.pt"
    return None


def run_trial(cfg: TrialConfig, opts: RunOptions, on_epoch: EpochCallback | None = None,
              checkpoint: Path | None | str = "default", write: bool = True) -> dict | None:
    """Train and score one trial; rank 0 writes and returns its row (other ranks return None).

    `checkpoint`: a file to resume from and save to each epoch, "default" for
    `default_checkpoint`, or None for no checkpointing.
    """
    started = _now()
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if write and rank == 0:
        check_writable(opts.out)
    if opts.threads > 0:
        torch.set_num_threads(opts.threads)
    device = pick_device(opts.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", rank % torch.cuda.device_count())
    data = load_imageset(cfg.dataset, opts.data_root, opts.cache_dir, opts.download)
    split = one_class_split(data, cfg.dataset, cfg.normal_class, cfg.seed, cfg.val_fraction)
    ckpt = default_checkpoint(cfg, opts) if checkpoint == "default" else checkpoint
    ckpt = Path(ckpt) if ckpt is not None else None
    state = fit(cfg, opts, split, device, ckpt, on_epoch)
    if rank != 0:
        return None
    scores = score_test(state.G, state.D, split, cfg.score_lambda, device)
    hist = state.history
    train_seconds = sum(h["seconds"] for h in hist)
    images = sum(h["images"] for h in hist)
    last = hist[-1]
    row = {
        "key": cfg.key(), "sweep": opts.sweep, "run_name": cfg.run_name(),
        **dataclasses.asdict(cfg),
        "normal_class": split.normal_class,  # COIL-100's seeded draw resolved
        "class_drawn": cfg.normal_class < 0,  # the seed drew the class: a repetition, not a per-class cell
        "auc": scores.auc,
        "val_loss_con": last["val_loss_con"], "val_loss_fea": last["val_loss_fea"],
        "final_loss_d": last["loss_d"], "final_loss_g": last["loss_g"], "final_loss_con": last["loss_con"],
        "final_loss_fea": last["loss_fea"], "final_loss_inf": last["loss_inf"],
        "n_train": len(split.train), "n_val": len(split.val), "n_test": len(split.test),
        "n_outliers": int(split.test_labels.sum()),
        "train_seconds": train_seconds, "score_seconds": scores.seconds,
        "images_per_second": images / train_seconds if train_seconds > 0 else float("nan"),
        "d_reinits": state.d_reinits, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "world_size": world, "torch_version": torch.__version__, "package_version": __version__,
        "git_commit": _git_commit(), "hostname": socket.gethostname(),
        "started_at": started, "finished_at": _now(),
    }
    row["epochs_run"] = len(hist)
    row["resumed_from_epoch"] = state.resumed_from  # 0: trained from scratch in one go
    if write:
        frame = pd.DataFrame({"key": cfg.key(), "index": range(len(scores.labels)), "label": scores.labels,
                              "score": scores.score, "raw_score": scores.raw})
        write_trial(opts.out, row, frame)
        if ckpt is not None and ckpt.exists():
            ckpt.unlink()  # the row is the result; the checkpoint was only for resuming
            try:
                ckpt.parent.rmdir()
            except OSError:
                pass  # the folder holds something else: leave it
    return row
