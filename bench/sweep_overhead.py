"""Benchmark: the Ray Tune driver's overhead over running the same trials by hand.

    .venv/bin/python bench/sweep_overhead.py --trials 8 --epochs 3 --concurrency 2

The same N small trials (digits, variant full, normal classes 0..N-1) run
  (a) in a plain loop, one after another, through novelty.trial.run.run_trial with
      `threads = cpus per trial` (1), each one timed: the ideal wall time of running them
      `concurrency` at a time is sum(trial times) / concurrency;
  (b) through novelty.sweep.driver.run_sweep (Ray Tune, `concurrency` trials of 1 CPU at once
      on a local Ray started here with num_cpus = concurrency).
It prints the driver's wall time over that ideal, with and without ray.init (the Ray
start-up). Optionally (--pool) (c): the plain trials run `concurrency` at a time by a
process pool, which separates what Ray adds from what running trials side by side costs
(two trials sharing two cores, memory bandwidth, caches) on this machine.
Results go to temporary folders; RAY_AUTH_MODE=disabled for the local Ray.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throw-away local Ray: no token needed

from novelty.config import RunOptions, TrialConfig  # noqa: E402
from novelty.data.load import load_imageset  # noqa: E402
from novelty.sweep.grid import Sweep, SweepOptions  # noqa: E402
from novelty.store.results import read_rows  # noqa: E402
from novelty.trial.run import run_trial  # noqa: E402


def make_sweep(args: argparse.Namespace) -> Sweep:
    return Sweep(name="overhead", grid={"normal_class": list(range(args.trials))},
                 fixed={"dataset": "digits", "variant": "full", "epochs": args.epochs,
                        "batch_size": args.batch_size, "seed": 0},
                 cpus_per_trial=1, max_failures=0)


def plain_trial(cfg: TrialConfig, out: str, cache: str) -> float:
    """One trial as the driver runs it (1 thread, per-epoch checkpoint, row written); seconds."""
    t0 = time.perf_counter()
    run_trial(cfg, RunOptions(results=out, cache_dir=cache, sweep="overhead", device="cpu", threads=1, progress=False))
    return time.perf_counter() - t0


def plain_loop(trials: list[TrialConfig], cache: str) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory() as out:
        times = [plain_trial(cfg, out, cache) for cfg in trials]
        aucs = list(read_rows(out).set_index("key").loc[[t.key(load_imageset("digits").fingerprint) for t in trials], "auc"])
    return times, aucs


def pool_run(trials: list[TrialConfig], cache: str, workers: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            list(pool.map(plain_trial, trials, [out] * len(trials), [cache] * len(trials)))
        return time.perf_counter() - t0


def driver_run(sweep: Sweep, cache: str) -> tuple[float, list[float]]:
    from novelty.sweep.driver import run_sweep  # imported (and timed) with ray.init in main

    with tempfile.TemporaryDirectory() as out:
        opts = SweepOptions(results=out, cache_dir=cache, report=False)
        t0 = time.perf_counter()
        summary = run_sweep(sweep, opts)
        dt = time.perf_counter() - t0
        if summary.ran != len(sweep.trials()) or summary.failed:
            raise SystemExit(f"the driver did not run every trial: {summary}")
        aucs = list(read_rows(out).set_index("key").loc[[t.key(load_imageset("digits").fingerprint) for t in sweep.trials()], "auc"])
    return dt, aucs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=8, help="N trials (normal classes 0..N-1, at most 10)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16, help="16 as sweeps/digits.py (6 steps an epoch)")
    p.add_argument("--concurrency", type=int, default=2, help="trials at once (Ray num_cpus; 1 CPU each)")
    p.add_argument("--repeats", type=int, default=2, help="rounds of (plain loop, driver)")
    p.add_argument("--pool", action="store_true", help="also run the plain trials in a process pool")
    args = p.parse_args(argv)

    import ray
    import torch

    sweep = make_sweep(args)
    trials = sweep.trials()
    cache = tempfile.mkdtemp(prefix="novelty-cache-")
    load_imageset("digits", "", cache, False)  # warm the dataset cache for both paths
    torch.set_num_threads(1)
    plain_trial(trials[0], tempfile.mkdtemp(), cache)  # warm imports and allocator; not timed

    t0 = time.perf_counter()  # Ray start-up: importing Ray Tune (novelty.sweep.driver) and ray.init
    import novelty.sweep.driver

    ray.init(num_cpus=args.concurrency, include_dashboard=False, log_to_driver=False,
             object_store_memory=100 * 1024**2)
    t_init = time.perf_counter() - t0
    print(f"driver code: {novelty.sweep.driver.__file__}", flush=True)

    rounds = []
    for r in range(args.repeats):
        times, aucs_plain = plain_loop(trials, cache)
        t_drv, aucs_drv = driver_run(sweep, cache)
        t_pool = pool_run(trials, cache, args.concurrency) if args.pool else float("nan")
        ideal = sum(times) / args.concurrency
        rounds.append((sum(times), ideal, t_drv, t_pool, aucs_plain == aucs_drv))
        print(f"round {r + 1}: trial times {' '.join(f'{t:.1f}' for t in times)} s", flush=True)
    ray.shutdown()

    print(f"\n{args.trials} trials (digits, full, {args.epochs} epochs, batch {args.batch_size}), "
          f"concurrency {args.concurrency} x 1 CPU, {os.cpu_count()} cores; Ray start-up (import ray.tune + "
          f"ray.init) {t_init:.1f} s, once, before round 1; torch {torch.__version__}, ray {ray.__version__}")
    head = (f"{'round':<6}{'sum trials':>11}{'ideal':>8}{'driver':>8}{'+init':>8}"
            f"{'ratio':>7}{'ratio+init':>11}{'pool':>7}{'drv/pool':>9}  same AUCs")
    print(head)
    print("-" * len(head))
    for i, (tot, ideal, drv, pool, same) in enumerate(rounds, 1):
        init = t_init if i == 1 else 0.0
        pool_txt = f"{pool:>6.1f}s{drv / pool:>9.3f}" if pool == pool else f"{'-':>7}{'-':>9}"
        print(f"{i:<6}{tot:>10.1f}s{ideal:>7.1f}s{drv:>7.1f}s{drv + init:>7.1f}s"
              f"{drv / ideal:>7.3f}{(drv + init) / ideal:>11.3f}{pool_txt}  {same}")
    ratios = [drv / ideal for _, ideal, drv, _, _ in rounds]
    print(f"driver / ideal: median {statistics.median(ratios):.3f}, min-max {min(ratios):.3f}-{max(ratios):.3f} "
          f"(without Ray start-up; '+init' adds it to round 1, the only one that paid it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
