"""The Ray Tune sweep driver: the only module of `novelty` that imports Ray.

Trials whose key already has a row under the results folder are skipped, so a sweep
killed at any point and rerun with the same command finishes with no trial run twice
to completion and no duplicate rows. Each trial checkpoints every epoch (to Tune, and
beside the results when they are local), so Tune's retries and reruns both resume.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import ray
import torch
from ray import tune

from . import methods
from .config import RunOptions, TrialConfig
from .data import check_trainable, load_imageset
from .errors import USER_ERRORS, ConfigError, Terminated
from .grid import Sweep, SweepOptions, trial_labels, trial_resources
from .results import check_writable, existing_keys, open_store
from .trial import default_checkpoint, run_trial

CKPT_NAME = "checkpoint.pt"


@dataclass(frozen=True)
class SweepSummary:
    total: int
    skipped: int
    ran: int
    failed: list[str]


class Progress(tune.Callback):
    """One line per finished trial instead of Tune's tables: done / running / failed, the
    trial's AUC, the elapsed time and an estimate of the time left."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.failed, self.running = total, 0, 0, set()
        self.t0 = time.monotonic()

    def _line(self, label: str, what: str) -> None:
        elapsed = time.monotonic() - self.t0
        finished = self.done + self.failed
        left = elapsed / finished * (self.total - finished) if finished else float("nan")
        eta = f", ~{_mmss(left)} left" if finished and finished < self.total else ""
        print(f"[{self.done}/{self.total} done, {len(self.running)} running, {self.failed} failed] "
              f"{label}: {what} ({_mmss(elapsed)} elapsed{eta})", flush=True)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.running.add(trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.running.discard(trial.trial_id)
        self.done += 1
        result = trial.last_result or {}
        label = trial.config.get("trial", trial.trial_id)
        if result.get("error"):
            self.done -= 1
            self.failed += 1
            self._line(label, f"FAILED, not retried (it would fail again): {result['error']}")
        else:
            self._line(label, f"AUC {result['auc']:.4f}" if result.get("auc") is not None else "done")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.running.discard(trial.trial_id)
        self.failed += 1
        self._line(trial.config.get("trial", trial.trial_id), "FAILED (traceback above; no row)")


class StopOnSigterm(tune.Stopper):
    """Ends the whole run at Tune's next step once SIGTERM arrived; trials stop where they are
    (their rows, and their checkpoints beside local results, are kept)."""

    def __init__(self) -> None:
        self.requested = False

    def request(self, signum, frame) -> None:
        self.requested = True

    def __call__(self, trial_id, result) -> bool:
        return self.requested

    def stop_all(self) -> bool:
        return self.requested


def _mmss(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


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

    from .distributed import backend_for, bind_gpu, free_port, rank_main

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


def _plugins(trials: list[TrialConfig]) -> tuple:
    """The methods registered from outside novelty that these trials use, marked to be pickled by
    value: a worker need not be able to import the module that registered them (a test file, a
    notebook, a user's script)."""
    used = {t.variant for t in trials}
    out = tuple(s for s in methods.plugins() if used & set(s.variants))
    for spec in out:
        module = sys.modules.get(spec.load().__module__)
        if module is not None and module.__name__ != "__main__":
            ray.cloudpickle.register_pickle_by_value(module)
    return out


def _answers(address: str, timeout: float = 2.0) -> bool:
    """Whether something listens at host:port (a GCS that is up), within `timeout` seconds."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def recorded_ray_address() -> str:
    """The address of the cluster `ray start` recorded on this machine (Ray's file
    ray_current_cluster in its temp folder: $RAY_TMPDIR/ray, else $TMPDIR/ray, else /tmp/ray, as
    Ray looks for it), or "": read here, not through Ray's private API (ray._private)."""
    base = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    try:
        return (Path(base) / "ray" / "ray_current_cluster").read_text().strip()
    except OSError:
        return ""


def _ensure_ray(address: str) -> None:
    """Join the given cluster (--ray-address, else RAY_ADDRESS); else the cluster `ray start` on
    this machine recorded, if it answers; else start a local one (node address 127.0.0.1) that
    sends no usage statistics. A record left by a head that died (killed, not `ray stop`ped) is
    passed over with one line instead of a minutes-long wait for its GCS. Beware: Ray still binds
    its GCS, raylet and object-manager ports on every interface (measured, README "Security"); on
    a shared machine firewall them or use Ray's token authentication, which stays on outside tests."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    common = {"include_dashboard": False, "log_to_driver": False}
    address = address or os.environ.get("RAY_ADDRESS", "")
    if not address:
        recorded = recorded_ray_address()  # written by `ray start` (a head on this machine, e.g. `ray submit`'s)
        if recorded and _answers(recorded):
            print(f"novelty: joining the Ray cluster at {recorded} (started by `ray start` on this machine; "
                  "--ray-address local starts a new one instead)", flush=True)
            address = recorded
        else:
            if recorded:
                print(f"novelty: the Ray cluster recorded at {recorded} does not answer (a head that was not "
                      "stopped with `ray stop`); starting a local one", flush=True)
            address = "local"
    if address == "local":
        ray.init(address="local", _node_ip_address="127.0.0.1", **common)
    else:
        ray.init(address=address, **common)


def plan(sweep: Sweep, opts: SweepOptions) -> tuple[list[TrialConfig], dict[str, str]]:
    """Every trial of the sweep and the fingerprint of each dataset it uses, checked before Ray
    starts: bad data or a trial that cannot train fails here, once, not in Tune's retries."""
    trials = sweep.trials(opts)
    fingerprints = {}
    for dataset in sorted({t.dataset for t in trials}):  # fail fast on bad data; warm the cache
        data = load_imageset(dataset, opts.data_root, opts.cache_dir, opts.download)  # --download: here first
        fingerprints[dataset] = data.fingerprint
        for t in trials:
            if t.dataset == dataset:
                check_trainable(data, dataset, t.normal_class, t.val_fraction, 2 * max(1, sweep.ranks_per_trial))
    return trials, fingerprints


def _remove_tune_state(uri: str, storage: str, name: str) -> None:
    """Delete this run's Tune folder (<results>/_ray/<run name>): locally, or in the bucket."""
    if "://" not in uri:
        shutil.rmtree(Path(storage) / "_ray" / name, ignore_errors=True)
        return
    fs, base = open_store(uri)
    try:
        fs.delete_dir(f"{base}/_ray/{name}")
    except (OSError, pa.ArrowException) as exc:  # a bucket that refuses: the run's results stand
        print(f"novelty: warning: Tune's state {uri}/_ray/{name} was left in place: {exc}", flush=True)


def _check_a_node_fits(sweep: Sweep, res) -> None:
    """Refuse, before Tune schedules anything, a trial no node of the cluster can hold: Tune asks for
    one bundle of `res.cpus` CPUs and `res.gpus` GPUs on one node and would wait for ever (a DDP
    trial wider than a node: --ranks-per-trial 8 on 4-GPU nodes, 16 ranks on a 2-core machine).
    An autoscaling cluster whose GPU nodes are not up yet (NOVELTY_GPU_CLUSTER=1) is not checked."""
    if os.environ.get("NOVELTY_GPU_CLUSTER") == "1":
        return
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if any(n.get("CPU", 0) >= res.cpus and n.get("GPU", 0) >= res.gpus for n in nodes):
        return
    largest = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={})
    raise ConfigError(f"sweep {sweep.name}: each trial needs {res.cpus:g} CPU(s) and {res.gpus:g} GPU(s) on one node "
                      f"({res.ranks} rank(s)), but the largest node of this cluster has {largest.get('CPU', 0):g} "
                      f"CPU(s) and {largest.get('GPU', 0):g} GPU(s): lower --ranks-per-trial or --cpus-per-trial "
                      "(a DDP trial's ranks share one node)")


def run_sweep(sweep: Sweep, opts: SweepOptions) -> SweepSummary:
    """Run every trial of `sweep` that has no row yet through Ray Tune."""
    trial_resources(sweep, have_gpu=True)  # a GPU request that cannot be right fails before Ray starts
    uri = opts.results_uri(sweep)
    check_writable(uri)
    trials, fingerprints = plan(sweep, opts)
    done = existing_keys(uri)
    pending = [t for t in trials if t.key(fingerprints[t.dataset]) not in done]
    print(f"sweep {sweep.name}: {len(trials)} trials, {len(trials) - len(pending)} already have rows, "
          f"{len(pending)} to run -> {uri}", flush=True)
    if not pending:
        return SweepSummary(len(trials), len(trials), 0, [])
    _ensure_ray(opts.ray_address)
    # ray.init installed its own SIGTERM handler (a C++ stack dump, exit 134); from here SIGTERM
    # asks Tune to end the run as Ctrl+C would (an exception raised inside Ray's wait would not be clean)
    stopper = StopOnSigterm()
    signal.signal(signal.SIGTERM, stopper.request)
    # an autoscaling cluster may have no GPU node up yet: NOVELTY_GPU_CLUSTER=1 says one will come
    have_gpu = ray.cluster_resources().get("GPU", 0) > 0 or os.environ.get("NOVELTY_GPU_CLUSTER") == "1"
    res = trial_resources(sweep, have_gpu)
    _check_a_node_fits(sweep, res)
    print(f"sweep {sweep.name}: each trial reserves {res.cpus:g} CPU(s) and {res.gpus:g} GPU(s), "
          f"{res.ranks} rank(s) on {res.device}, {res.threads} thread(s) per rank", flush=True)
    run = opts.run_options(sweep, device=res.device, threads=res.threads)
    _, base = open_store(uri)
    storage = base if "://" not in uri else uri.rstrip("/")
    by_label = trial_labels(pending, fingerprints)
    name = f"{sweep.name}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trainable, trials=by_label, plugins=_plugins(pending)), {"cpu": res.cpus, "gpu": res.gpus}),
        # one Tune trial per pending (class x seed x variant x ...) tuple of the grid, by short label
        param_space={"trial": tune.grid_search(list(by_label)),
                     "run": dataclasses.asdict(run), "ranks": res.ranks},
        # reuse_actors: the next trial runs in the finished trial's warm worker instead of a new
        # process that imports torch again (seconds per trial; see bench/sweep_overhead.py). A
        # trial leaves no state there that the next one reads; a failed trial's actor is not reused.
        tune_config=tune.TuneConfig(max_concurrent_trials=opts.max_concurrent or None, reuse_actors=True),
        run_config=tune.RunConfig(
            name=name, storage_path=f"{storage}/_ray",
            failure_config=tune.FailureConfig(max_failures=sweep.max_failures), stop=stopper,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            verbose=0,  # Progress prints one line per trial instead of Tune's tables
            callbacks=[Progress(len(pending))],
        ),
    )
    grid = tuner.fit()
    if stopper.requested:
        now_done = existing_keys(uri)
        landed = sum(t.key(fingerprints[t.dataset]) in now_done for t in pending)
        raise Terminated(f"sweep {sweep.name}: {len(trials) - len(pending) + landed} of {len(trials)} trials have "
                         f"rows in {uri} ({landed} landed in this run)")
    # a trial that failed before Tune stored its config (its worker died while starting) has none
    failed = [(r.config or {}).get("trial", r.path) for r in grid if r.error is not None]
    now_done = existing_keys(uri)
    missing = [t.run_name(fingerprints[t.dataset]) for t in pending if t.key(fingerprints[t.dataset]) not in now_done]
    if not failed and not missing:  # finished: Tune's state (and any checkpoint it kept) is not needed
        _remove_tune_state(uri, storage, name)
    print(f"sweep {sweep.name}: ran {len(pending) - len(missing)} of {len(pending)}; "
          f"{len(missing)} without a row" + (f": {', '.join(missing)}" if missing else ""), flush=True)
    return SweepSummary(len(trials), len(trials) - len(pending), len(pending) - len(missing), missing)
