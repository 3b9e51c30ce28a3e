"""A whole trial, dataset -> split -> training -> scores -> row: what the CLI, the Ray
sweep driver and the Slurm job array all call. Imports no Ray."""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import socket
import time
from pathlib import Path
from typing import Iterator

import pandas as pd
import torch

from .. import __version__, methods
from .. import git_commit as _git_commit
from ..config import ConfigError, RunOptions, TrialConfig
from ..data.load import ImageSet, check_trainable, load_imageset, one_class_split
from .distributed import pick_device, rank_device, world
from ..errors import DataError
from .loop import EpochCallback, fit, stats_of
from ..data.preprocess import apply_preprocess
from ..store.results import check_writable, is_local, open_store, write_trial
from ..methods.scoring import scores_of


def cpu_model() -> str:
    """The CPU's model name (e.g. "AMD EPYC 9B14"): results are bit-identical only on one kind of CPU."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameters
HEAP_MMAP_THRESHOLD = 1 << 30  # activations up to 1 GiB come from the heap, not fresh mmaps
GLIBC_DEFAULTS = {M_MMAP_THRESHOLD: 128 * 1024, M_TRIM_THRESHOLD: 128 * 1024, M_TOP_PAD: 128 * 1024}


@contextlib.contextmanager
def kept_heap() -> Iterator[None]:
    """Speed only, same values: glibc's malloc hands every block over 32 MB back to the kernel when
    freed and maps a fresh one on the next step, so each training step page-faults its activations
    in again (a geom72 batch of 576 images on a WRN-10-1: half of a CPU trial's time in the kernel,
    measured). Within this block freed memory stays in the heap; after it, glibc's defaults come
    back and the heap is trimmed (a Tune actor running trial after trial does not keep each one's
    peak). Nothing changes where the C library is not glibc."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 (glibc's, or AttributeError)
    except (OSError, AttributeError):
        yield
        return
    libc.mallopt(M_MMAP_THRESHOLD, HEAP_MMAP_THRESHOLD)
    libc.mallopt(M_TRIM_THRESHOLD, 1 << 40)
    libc.mallopt(M_TOP_PAD, 1 << 26)
    try:
        yield
    finally:
        for param, value in GLIBC_DEFAULTS.items():
            libc.mallopt(param, value)
        libc.malloc_trim(0)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


NAN = float("nan")
# Every row, scores file and trace has the same columns whatever the method (NaN where a
# column does not apply), so `pd.read_parquet(<results>/rows)` over a folder that mixes
# methods keeps them all (pyarrow takes one file's schema for the folder). The methods'
# own columns come from the registry (novelty.methods); these are the loop's.
LOOP_COLUMNS = ("val_score", "scored_epoch", "d_reinits", "resumed_from_epoch")
LOOP_TRACE = ("epoch", "seconds", "images", "val_score", "oracle_auc_mix", "oracle_refcode_auc_mix",
              "oracle_refcode_nf_auc_mix")


def trace_columns() -> tuple[str, ...]:
    """Every registered method's losses and validation figures, and the oracle views of each component."""
    losses = (*(n for spec in methods.specs() for n in spec.load().loss_names),)
    vals = (*(c for c in methods.method_columns() if c.startswith("val_")),)
    oracle = tuple(f"oracle_auc_{c}" for c in methods.component_names())
    return tuple(dict.fromkeys((*LOOP_TRACE[:3], *losses, "d_reinits", *vals, *LOOP_TRACE[3:], *oracle)))


def row_columns() -> tuple[str, ...]:
    return tuple(dict.fromkeys((*methods.method_columns(), *LOOP_COLUMNS)))


def score_columns() -> tuple[str, ...]:
    return tuple(f"c_{c}" for c in methods.component_names())


def default_checkpoint(key: str, opts: RunOptions) -> Path | None:
    """Where the trial's per-epoch checkpoint lives (None: results are remote and none was given)."""
    if opts.checkpoint_dir:
        return Path(opts.checkpoint_dir) / key / "checkpoint.pt"
    if is_local(opts.results):
        _, base = open_store(opts.results)
        return Path(base) / "checkpoints" / key / "checkpoint.pt"
    return None


def prepare_data(cfg: TrialConfig, opts: RunOptions, expect_data: str = "") -> tuple[ImageSet, str]:
    """Load the trial's dataset and check it can train; returns it and the trial's key."""
    data = load_imageset(cfg.dataset, opts.data_root, opts.cache_dir, opts.download)
    if expect_data and data.fingerprint != expect_data:
        raise DataError(f"the {cfg.dataset} data under {opts.data_root or '(embedded)'} is not the data this trial "
                        f"was planned on (fingerprint {data.fingerprint}, expected {expect_data}): "
                        "did it change during the sweep, or differ between nodes?")
    _, n_ranks = world()
    check_trainable(data, cfg.dataset, cfg.normal_class, cfg.val_fraction, 2 * n_ranks)
    return data, cfg.key(data.fingerprint)


# Where a trial ran, as the Ray sweep driver tells it (novelty.sweep.driver.placement); empty outside Ray.
PLACEMENT_COLUMNS = ("ray_node_id", "node_ip", "gpu_ids", "device_note")


def run_trial(cfg: TrialConfig, opts: RunOptions, on_epoch: EpochCallback | None = None,
              checkpoint: Path | None | str = "default", write: bool = True, expect_data: str = "",
              placement: dict[str, str] | None = None) -> dict | None:
    """`_run_trial` with freed memory kept in the heap while it runs (`kept_heap`: speed only)."""
    with kept_heap():
        return _run_trial(cfg, opts, on_epoch, checkpoint, write, expect_data, placement)


def _run_trial(cfg: TrialConfig, opts: RunOptions, on_epoch: EpochCallback | None = None,
               checkpoint: Path | None | str = "default", write: bool = True, expect_data: str = "",
               placement: dict[str, str] | None = None) -> dict | None:
    """Train and score one trial; rank 0 writes and returns its row (other ranks return None).

    `placement`: where a scheduler put the trial (PLACEMENT_COLUMNS), written into the row.
    `checkpoint`: a file to resume from and save to each epoch, "default" for
    `default_checkpoint`, or None for no checkpointing. `expect_data`: the fingerprint the
    sweep planned this trial's key on (a mismatch is an error, never a silent new key).
    """
    started = _now()
    rank, n_ranks = world()
    if write and rank == 0:
        check_writable(opts.results)
    if opts.threads > 0:
        torch.set_num_threads(opts.threads)
    device = rank_device(pick_device(opts.device))
    data, key = prepare_data(cfg, opts, expect_data)
    split = apply_preprocess(one_class_split(data, cfg.dataset, cfg.normal_class, cfg.seed, cfg.val_fraction),
                             cfg.preprocess)
    ckpt = default_checkpoint(key, opts) if checkpoint == "default" else checkpoint
    ckpt = Path(ckpt) if ckpt is not None else None
    method_cls = methods.spec_for(cfg.variant).load()
    if n_ranks > 1 and not method_cls.multi_rank:
        raise ConfigError(f"{cfg.variant} runs single-process; run it without torchrun / ranks_per_trial")
    run = fit(method_cls, cfg, opts, split, device, key, ckpt, on_epoch)
    if rank != 0:
        return None
    scored = run.history[run.scored_epoch - 1]  # the epoch --stop picked (the last for stop=last)
    t0 = time.perf_counter()
    comps = {c: v.numpy() for c, v in run.method.components(split.test).items()}
    raw = run.method.score(comps, stats_of(scored))
    scores = scores_of(split.test_labels.numpy(), raw, comps, time.perf_counter() - t0)
    hist = run.history
    train_seconds = sum(h["seconds"] for h in hist)
    images = sum(h["images"] for h in hist)
    spec = methods.spec_for(cfg.variant)
    last = {f"final_{n}": hist[-1][n] for n in run.method.loss_names if n in hist[-1]}
    extra = {**{c: v for c, v in {**scored, **last}.items() if c in row_columns()}, **run.method.row(),
             "scored_epoch": run.scored_epoch, "resumed_from_epoch": run.resumed_from}
    row = {
        "key": key, "sweep": opts.sweep, "run_name": cfg.run_name(data.fingerprint),
        **{c: None for c in methods.param_columns()}, **cfg.flat(),  # other methods' own knobs: null
        "method": spec.name,
        "normal_class": split.normal_class,  # COIL-100's seeded draw resolved
        "class_drawn": cfg.normal_class < 0,  # the seed drew the class: a repetition, not a per-class cell
        "auc": scores.auc,
        "data_root": os.path.abspath(os.path.expanduser(opts.data_root)) if opts.data_root else "",  # as read here
        "data_fingerprint": data.fingerprint,
        **{c: NAN for c in row_columns()}, "d_reinits": 0, **extra,
        "n_train": len(split.train), "n_val": len(split.val), "n_test": len(split.test),
        "n_outliers": int(split.test_labels.sum()),
        "train_seconds": train_seconds, "score_seconds": scores.seconds,
        "images_per_second": images / train_seconds if train_seconds > 0 else float("nan"),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "world_size": n_ranks, "threads": torch.get_num_threads(), "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # e.g. AVX512: picks torch's CPU kernels
        **{c: "" for c in PLACEMENT_COLUMNS}, **(placement or {}),
        "torch_version": torch.__version__, "package_version": __version__,
        "git_commit": _git_commit(), "hostname": socket.gethostname(),
        "started_at": started, "finished_at": _now(), "epochs_run": len(hist),
        "traced": bool(opts.trace),
    }
    if write:
        frame = pd.DataFrame({"key": key, "index": range(len(scores.labels)), "label": scores.labels,
                              "score": scores.score, "raw_score": scores.raw,
                              **{c: NAN for c in score_columns()},
                              **{f"c_{c}": v for c, v in scores.components.items()}})
        trace = None
        if opts.trace:
            trace = pd.DataFrame(hist)
            columns = trace_columns()
            trace = trace.reindex(columns=[*columns, *(c for c in trace if c not in columns)])
            trace = trace.astype({c: float for c in columns}).assign(key=key)
        write_trial(opts.results, row, frame, trace)
        if ckpt is not None and ckpt.exists():
            ckpt.unlink()  # the row is the result; the checkpoint was only for resuming
            try:
                ckpt.parent.rmdir()
            except OSError:
                pass  # the folder holds something else: leave it
    return row
