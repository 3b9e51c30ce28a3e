"""What runs in a Ray Tune worker: `trainable`, a plain function of its config dict that runs
one trial (`novelty.trial.run.run_trial`), one `tune.report` per epoch with the epoch's
checkpoint where no local one survives the process, rank 0 of a DDP trial here and its other
ranks as local processes, and where Ray put it (`placement`) in its row."""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import tempfile
from pathlib import Path

import ray
import torch
from ray import tune

from .. import methods
from ..config import RunOptions, TrialConfig
from ..errors import USER_ERRORS
from ..trial.run import default_checkpoint, run_trial

CKPT_NAME = "checkpoint.pt"


def _report_epoch(metrics: dict, checkpoint: Path | None) -> None:
    """One tune.report per epoch, carrying the epoch's checkpoint."""
    if checkpoint is None or not checkpoint.exists():
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        try:  # a hard link, not a copy (~33 MB): save_checkpoint replaces the file, never rewrites it
            os.link(checkpoint, Path(tmp) / CKPT_NAME)
        except OSError:  # another filesystem
            shutil.copy2(checkpoint, Path(tmp) / CKPT_NAME)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def _distributed_trial(cfg: TrialConfig, opts: RunOptions, checkpoint: Path, ranks: int, on_epoch, data: str,
                       where: dict[str, str]) -> dict:
    """Rank 0 runs here (so it can tune.report); ranks 1.. are started as local processes. On
    GPUs, rank r uses cuda:r of the GPUs Ray assigned the trial (CUDA_VISIBLE_DEVICES, inherited)."""
    import torch.distributed as dist
    import torch.multiprocessing as mp

    from ..trial.distributed import backend_for, bind_gpu, free_port, rank_main

    port, backend = free_port(), backend_for(opts.device)
    os.environ.update(RANK="0", LOCAL_RANK="0")
    bind_gpu(backend)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=rank_main, args=(r, ranks, port, backend, run_trial, (cfg, opts, None, checkpoint, True, data)))
             for r in range(1, ranks)]
    for p in procs:
        p.start()
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=ranks,
                            timeout=dt.timedelta(minutes=10))
    try:
        row = run_trial(cfg, opts, on_epoch=on_epoch, checkpoint=checkpoint, expect_data=data, placement=where)
    finally:
        dist.destroy_process_group()
        for p in procs:
            p.join()
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise RuntimeError(f"DDP ranks exited with {bad}")
    return row  # type: ignore[return-value]


def placement(device: str) -> tuple[str, dict[str, str]]:
    """Where Ray put this trial (node, the GPU ids it assigned) and the device the trial trains on:
    on GPUs Ray assigned but torch cannot see (a simulated cluster's fake GPUs, a broken driver)
    the trial trains on the CPU and its row says so."""
    ctx = ray.get_runtime_context()
    gpu_ids = [str(i) for i in ctx.get_accelerator_ids().get("GPU", [])]
    where = {"ray_node_id": ctx.get_node_id(), "node_ip": ray.util.get_node_ip_address(),
             "gpu_ids": ",".join(gpu_ids), "device_note": ""}
    if device == "cuda" and not torch.cuda.is_available():
        where["device_note"] = (f"Ray assigned GPU(s) {where['gpu_ids'] or '(none)'} but torch sees no CUDA "
                                "device: trained on the CPU")
        print(f"novelty: warning: {where['device_note']}", flush=True)
        device = "cpu"
    return device, where


def _run_tune_trial(cfg: TrialConfig, opts: RunOptions, ranks: int, local: Path | None, ckpt: Path,
                    key: str, data: str, where: dict[str, str]) -> dict:
    resumed = tune.get_checkpoint()
    if resumed is not None and local is None:  # a Tune retry of a trial with remote results: its last epoch
        with resumed.as_directory() as d:
            shutil.copy2(Path(d) / CKPT_NAME, ckpt)

    def on_epoch(metrics: dict, path: Path | None) -> None:
        # the checkpoint goes to Tune only when no local one survives the process (remote results),
        # and not after the last epoch: the row follows within the scoring's seconds, and a retry of
        # a trial that fails in them trains its last epoch again (one epoch, not a ~33 MB upload a trial)
        last = metrics.get("epoch") == cfg.epochs
        _report_epoch({**metrics, "key": key, "done": False}, None if local or last else path)

    if ranks > 1:
        return _distributed_trial(cfg, opts, ckpt, ranks, on_epoch, data, where)
    return run_trial(cfg, opts, on_epoch=on_epoch, checkpoint=ckpt, expect_data=data,  # type: ignore[return-value]
                     placement=where)


def trainable(config: dict, trials: dict[str, dict], plugins: tuple = ()) -> None:
    """Tune trainable: a plain function of its config dict (one trial, labelled config["trial"]).

    `trials` maps trial labels to TrialConfig fields; it reaches the workers once through
    tune.with_parameters, so the grid's axis Tune shows and stores is the short label alone.
    `plugins`: the methods the driver registered beyond the built-in ones, registered here too.
    """
    for spec in plugins:  # the driver's current ones (a reused worker may hold an older copy)
        methods.unregister(spec.name)
        methods.register(spec)
    planned = trials[config["trial"]]
    cfg, key, data = TrialConfig(**planned["config"]), planned["key"], planned["data"]
    run = dict(config["run"])
    if "out" in run:  # from a driver started before RunOptions.out was renamed results
        run["results"] = run.pop("out")
    opts = RunOptions(**run)
    device, where = placement(opts.device)
    # no more threads than this machine has, though Ray's CPUs (logical, declared per node) be more
    opts = dataclasses.replace(opts, device=device, threads=min(opts.threads, os.cpu_count() or 1))
    ranks = int(config.get("ranks", 1))
    local = default_checkpoint(key, opts)  # beside local results: reruns and Tune's retries resume from it
    try:
        with tempfile.TemporaryDirectory(prefix="novelty-ckpt-") as scratch:  # remote results: a scratch copy
            row = _run_tune_trial(cfg, opts, ranks, local, local or Path(scratch) / CKPT_NAME, key, data, where)
    except USER_ERRORS as exc:  # it would fail the same way again: no retry, no traceback, no row
        print(f"novelty: error: trial {config['trial']}: {exc}", flush=True)
        tune.report({"error": str(exc), "key": key, "done": True})
        return
    tune.report({"auc": row["auc"], "key": key, "done": True, "epoch": cfg.epochs,
                 "train_seconds": row["train_seconds"]})
