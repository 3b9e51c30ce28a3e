"""The Ray Tune sweep driver: with `trainable.py` (what runs in a Tune worker), the only
modules of `novelty` that import Ray.

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
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import ray
from ray import tune

from .. import methods
from ..config import TrialConfig
from ..data.load import check_trainable, load_imageset
from ..errors import ConfigError, Terminated
from ..store.results import check_writable, existing_keys, open_store
from .grid import Sweep, SweepOptions, trial_labels, trial_resources
from .trainable import trainable

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
