"""A whole trial, dataset -> split -> training -> scores -> row: what the CLI, the Ray
sweep driver and the Slurm job array all call. Imports no Ray."""
from __future__ import annotations

import dataclasses
import datetime as dt
import socket
import subprocess
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist

from . import __version__
from .baselines import run_baseline
from .config import ConfigError, RunOptions, TrialConfig
from .data import DataError, ImageSet, check_trainable, load_imageset, one_class_split
from .preprocess import apply_preprocess
from .results import check_writable, is_local, open_store, write_trial
from .scoring import COMPONENTS, Scores, score_test
from .train import EpochCallback, fit, pick_device, stats_of


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


NAN = float("nan")
# Every row, scores file and trace has the same columns whatever the method (NaN where a
# column does not apply), so `pd.read_parquet(<results>/rows)` over a folder that mixes
# variants and baselines keeps them all (pyarrow takes one file's schema for the folder).
METHOD_COLUMNS = ("val_loss_con", "val_loss_fea", *(f"val_{c}_{s}" for c in COMPONENTS for s in ("mean", "std")),
                  "final_loss_d", "final_loss_g", "final_loss_con", "final_loss_fea", "final_loss_inf",
                  "val_score", "final_loss", "kde_bandwidth", "ocsvm_nu", "scored_epoch")
SCORE_COLUMNS = tuple(f"c_{c}" for c in (*COMPONENTS, "score", "ink"))
TRACE_COLUMNS = ("epoch", "seconds", "images", "loss_d", "loss_g", "loss_adv", "loss_con", "loss_fea", "loss_inf",
                 "loss", "d_reinits", *METHOD_COLUMNS[:8], "val_score",
                 *(f"oracle_auc_{c}" for c in (*COMPONENTS, "ink", "mix", "score")), "oracle_refcode_auc_mix",
                 "oracle_refcode_nf_auc_mix")


def default_checkpoint(key: str, opts: RunOptions) -> Path | None:
    """Where the trial's per-epoch checkpoint lives (None: results are remote and none was given)."""
    if opts.checkpoint_dir:
        return Path(opts.checkpoint_dir) / key / "checkpoint.pt"
    if is_local(opts.out):
        _, base = open_store(opts.out)
        return Path(base) / "checkpoints" / key / "checkpoint.pt"
    return None


def prepare_data(cfg: TrialConfig, opts: RunOptions, expect_data: str = "") -> tuple[ImageSet, str]:
    """Load the trial's dataset and check it can train; returns it and the trial's key."""
    data = load_imageset(cfg.dataset, opts.data_root, opts.cache_dir, opts.download)
    if expect_data and data.fingerprint != expect_data:
        raise DataError(f"the {cfg.dataset} data under {opts.data_root or '(embedded)'} is not the data this trial "
                        f"was planned on (fingerprint {data.fingerprint}, expected {expect_data}): "
                        "did it change during the sweep, or differ between nodes?")
    _, world = _world()
    check_trainable(data, cfg.dataset, cfg.normal_class, cfg.val_fraction, 2 * world)
    return data, cfg.key(data.fingerprint)


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gan_trial(cfg: TrialConfig, opts: RunOptions, split, device: torch.device, key: str,
               ckpt: Path | None, on_epoch: EpochCallback | None) -> tuple[Scores, list[dict], dict] | None:
    """The paper's method (a variant): train G and D, score with eq. 7-8. Rank 0 returns."""
    state = fit(cfg, opts, split, device, key, ckpt, on_epoch)
    if _world()[0] != 0:
        return None
    last, scored = state.history[-1], state.history[state.scored_epoch - 1]  # scored: the model --stop picked
    stats = stats_of(scored)
    scores = score_test(state.G, state.D, split, cfg.score_lambda, device, cfg.score_norm, stats)
    extra = {"val_loss_con": scored["val_loss_con"], "val_loss_fea": scored["val_loss_fea"],
             **{f"val_{k}": v for k, v in stats.items()},
             "final_loss_d": last["loss_d"], "final_loss_g": last["loss_g"], "final_loss_con": last["loss_con"],
             "final_loss_fea": last["loss_fea"], "final_loss_inf": last["loss_inf"],
             "d_reinits": state.d_reinits, "resumed_from_epoch": state.resumed_from,
             "scored_epoch": state.scored_epoch}
    return scores, state.history, extra


def _baseline_trial(cfg: TrialConfig, opts: RunOptions, split, device: torch.device,
                    on_epoch: EpochCallback | None) -> tuple[Scores, list[dict], dict]:
    if _world()[1] > 1:
        raise ConfigError(f"baseline {cfg.variant} runs single-process; run it without torchrun / ranks_per_trial")
    res = run_baseline(cfg, split, device, opts.trace_images if opts.trace else 0,
                       (lambda m: on_epoch(m, None)) if on_epoch else None, opts.progress)
    last = res.history[-1]
    extra = {"val_score": last.get("val_score"), "final_loss": last.get("loss", float("nan")),
             "d_reinits": 0, "resumed_from_epoch": 0, **res.extra}
    return res.scores, res.history, extra


def run_trial(cfg: TrialConfig, opts: RunOptions, on_epoch: EpochCallback | None = None,
              checkpoint: Path | None | str = "default", write: bool = True, expect_data: str = "") -> dict | None:
    """Train and score one trial; rank 0 writes and returns its row (other ranks return None).

    `checkpoint`: a file to resume from and save to each epoch, "default" for
    `default_checkpoint`, or None for no checkpointing. `expect_data`: the fingerprint the
    sweep planned this trial's key on (a mismatch is an error, never a silent new key).
    """
    started = _now()
    rank, world = _world()
    if write and rank == 0:
        check_writable(opts.out)
    if opts.threads > 0:
        torch.set_num_threads(opts.threads)
    device = pick_device(opts.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", rank % torch.cuda.device_count())
    data, key = prepare_data(cfg, opts, expect_data)
    split = apply_preprocess(one_class_split(data, cfg.dataset, cfg.normal_class, cfg.seed, cfg.val_fraction),
                             cfg.preprocess)
    ckpt = default_checkpoint(key, opts) if checkpoint == "default" else checkpoint
    ckpt = Path(ckpt) if ckpt is not None else None
    if cfg.is_baseline:
        result = _baseline_trial(cfg, opts, split, device, on_epoch)
    else:
        result = _gan_trial(cfg, opts, split, device, key, ckpt, on_epoch)
    if result is None:
        return None
    scores, hist, extra = result
    train_seconds = sum(h["seconds"] for h in hist)
    images = sum(h["images"] for h in hist)
    row = {
        "key": key, "sweep": opts.sweep, "run_name": cfg.run_name(data.fingerprint),
        **dataclasses.asdict(cfg),
        "method": cfg.variant if cfg.is_baseline else "tian2020",
        "normal_class": split.normal_class,  # COIL-100's seeded draw resolved
        "class_drawn": cfg.normal_class < 0,  # the seed drew the class: a repetition, not a per-class cell
        "auc": scores.auc,
        "data_root": str(Path(opts.data_root).absolute()) if opts.data_root else "",
        "data_fingerprint": data.fingerprint,
        **{c: NAN for c in METHOD_COLUMNS}, **extra,
        "n_train": len(split.train), "n_val": len(split.val), "n_test": len(split.test),
        "n_outliers": int(split.test_labels.sum()),
        "train_seconds": train_seconds, "score_seconds": scores.seconds,
        "images_per_second": images / train_seconds if train_seconds > 0 else float("nan"),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "world_size": world, "torch_version": torch.__version__, "package_version": __version__,
        "git_commit": _git_commit(), "hostname": socket.gethostname(),
        "started_at": started, "finished_at": _now(), "epochs_run": len(hist),
        "traced": bool(opts.trace),
    }
    if write:
        frame = pd.DataFrame({"key": key, "index": range(len(scores.labels)), "label": scores.labels,
                              "score": scores.score, "raw_score": scores.raw,
                              **{c: NAN for c in SCORE_COLUMNS},
                              **{f"c_{c}": v for c, v in scores.components.items()}})
        trace = None
        if opts.trace:
            trace = pd.DataFrame(hist)
            trace = trace.reindex(columns=[*TRACE_COLUMNS, *(c for c in trace if c not in TRACE_COLUMNS)])
            trace = trace.astype({c: float for c in TRACE_COLUMNS}).assign(key=key)
        write_trial(opts.out, row, frame, trace)
        if ckpt is not None and ckpt.exists():
            ckpt.unlink()  # the row is the result; the checkpoint was only for resuming
            try:
                ckpt.parent.rmdir()
            except OSError:
                pass  # the folder holds something else: leave it
    return row
