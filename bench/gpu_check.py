"""Device check: what one GPU does with this project, printed as one JSON object on stdout.

    make gpu-check                                              # = PYTHONPATH=. python bench/gpu_check.py
    PYTHONPATH=. python bench/gpu_check.py --device cpu --tiny  # a CPU smoke test in well under a minute

On the device (default `cuda`) it measures
  trial_twice  one CIFAR-10 trial at CIFAR-10's preset (variant full, class 0, seed 0), run twice:
               the AUC and wall time of each and the AUC difference between them (0 when the GPU
               path is deterministic);
  selfsup      one CIFAR-10 trial of each method beyond the paper (transforms, deepsvdd) at its sweep
               preset (novelty.sweep.grid.SELFSUP_FIXED): AUC, wall, training seconds;
  train_step   images/s of the full method's training step at batch 64 and at batch 512;
  packed       trials per minute with 4 trials on the device at once: through Ray Tune at
               gpus_per_trial 0.25 where Ray is installed (on CUDA), else 4 worker processes (as a
               job array would run them); the trials cycle the grid's 4 variants;
  projection   the wall time of sweeps/ablation.py's 800-trial grid on one such device, from `packed`.
Meant to take well under 8 minutes on one GPU; `wall_s` says what it took.

It uses whatever torch it finds (any version; it installs nothing and needs no network) and the
project from this checkout (PYTHONPATH=.). Data: CIFAR-10 under --data-root (default ../shared/data
beside the repository: cifar-10-batches-py/ or cifar10-jpeg/{train,test}/), else synthetic
CIFAR-shaped data written to a temporary folder (random images with a tint per class);
`data.kind` in the JSON says which. Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import importlib.util
import json
import os
import pickle
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
NEEDED = ("numpy", "pandas", "pyarrow", "PIL", "tqdm")  # besides torch: what the trials it runs import


def log(msg: str) -> None:
    print(f"gpu_check: {msg}", file=sys.stderr, flush=True)


def find_data(root: Path, work: Path, tiny: bool) -> dict:
    """CIFAR-10 under `root`, else synthetic CIFAR-shaped pickles written under `work`."""
    if (root / "cifar-10-batches-py").is_dir() or (root / "cifar10-jpeg").is_dir():
        return {"kind": "cifar10", "root": str(root), "note": "CIFAR-10 found under the data root"}
    import numpy as np

    per_batch, n_test = (40, 100) if tiny else (10_000, 10_000)
    rng = np.random.default_rng(0)
    tint = rng.integers(0, 96, (10, 3))
    folder = work / "synthetic" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        labels = rng.permutation(np.arange(n) % 10)
        x = rng.integers(0, 160, (n, 3, 32, 32)) + tint[labels][:, :, None, None]
        with open(folder / name, "wb") as fh:  # protocol 2, as the real batches (the reader's unpickler)
            pickle.dump({"data": x.astype(np.uint8).reshape(n, -1), "labels": labels.tolist()}, fh, protocol=2)
    return {"kind": "synthetic", "root": str(folder.parent),
            "note": f"no cifar-10-batches-py/ or cifar10-jpeg/ under {root}: random CIFAR-shaped images "
                    f"({5 * per_batch} train, {n_test} test), so AUCs say nothing about the method"}


def preset_trial(normal_class: int = 0, variant: str = "full"):
    from novelty.config import PRESETS, TrialConfig

    return TrialConfig(dataset="cifar10", normal_class=normal_class, seed=0, variant=variant, **PRESETS["cifar10"])


def one_trial(job: tuple) -> dict:
    """Run one trial; what the check keeps of its row (a top-level function: worker processes call it)."""
    from novelty.trial.run import run_trial

    cfg, opts = job
    t0 = time.perf_counter()
    row = run_trial(cfg, opts, checkpoint=None)
    return {"auc": row["auc"], "wall_s": time.perf_counter() - t0, "train_seconds": row["train_seconds"],
            "started_at": row["started_at"], "finished_at": row["finished_at"], "device": row["device"],
            "device_name": row["device_name"], "variant": cfg.variant}


def trial_twice(data_root: str, cache: str, work: Path, device: str) -> dict:
    from novelty.config import RunOptions

    cfg = preset_trial()
    runs = [one_trial((cfg, RunOptions(data_root=data_root, cache_dir=cache, results=str(work / f"twice{i}"),
                                       device=device, progress=False))) for i in range(2)]
    return {"config": dataclasses.asdict(cfg), "aucs": [r["auc"] for r in runs],
            "walls_s": [round(r["wall_s"], 3) for r in runs], "train_seconds": [r["train_seconds"] for r in runs],
            "auc_difference": abs(runs[0]["auc"] - runs[1]["auc"]), "device": runs[0]["device"],
            "note": "the first run includes decoding the data into the cache"}


def selfsup(data_root: str, cache: str, work: Path, device: str, tiny: bool) -> dict:
    """One CIFAR-10 trial (class 0, seed 0) of each method beyond the paper at its sweep preset
    (novelty.sweep.grid.SELFSUP_FIXED; --tiny: 1 epoch): its AUC, wall and training seconds on the device,
    beside a CPU trial's (docs/selfsup.md)."""
    from novelty.config import RunOptions, TrialConfig
    from novelty.sweep.grid import SELFSUP_FIXED

    out = {}
    for variant, preset in SELFSUP_FIXED.items():
        flat = {"dataset": "cifar10", "normal_class": 0, "seed": 0, "variant": variant, **preset,
                **({"epochs": 1} if tiny else {})}
        r = one_trial((TrialConfig.from_flat(flat), RunOptions(data_root=data_root, cache_dir=cache, device=device,
                                                               results=str(work / variant), progress=False)))
        out[variant] = {"config": flat, "auc": r["auc"], "wall_s": round(r["wall_s"], 3),
                        "train_seconds": r["train_seconds"], "device": r["device"]}
    return out


def train_step(device_name: str, batch_sizes: tuple[int, ...], steps: int, warmup: int) -> dict:
    """images/s of the full method's training step (novelty.trial.loop.train_epoch) on random images."""
    import torch

    from novelty.trial.distributed import make_deterministic, pick_device
    from novelty.trial.loop import Run, train_epoch
    from novelty.methods import spec_for

    device = pick_device(device_name)
    make_deterministic(device)  # as a trial does
    out = {}
    for batch in batch_sizes:
        cfg = dataclasses.replace(preset_trial(), batch_size=batch)
        run = Run(spec_for("full").load()(cfg, 3, device))
        x = torch.rand((steps + warmup) * batch, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
        train_epoch(run, cfg, x[: warmup * batch], device, False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        done = train_epoch(run, cfg, x[warmup * batch:], device, False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        out[str(batch)] = done["images"] / (time.perf_counter() - t0)
    return {"variant": "full", "steps": steps, "images_per_s": out}


def _span(rows: list[dict]) -> tuple[float, int]:
    """Seconds from the first trial's start to the last one's end, and the most trials running at
    once ((0.0, 0) for no rows: every packed trial failed)."""
    if not rows:
        return 0.0, 0
    t = [(dt.datetime.fromisoformat(r["started_at"]), dt.datetime.fromisoformat(r["finished_at"])) for r in rows]
    span = (max(e for _, e in t) - min(s for s, _ in t)).total_seconds()
    most = max(sum(s2 <= s < e2 for s2, e2 in t) for s, _ in t)
    return span, most


def packed(data_root: str, cache: str, work: Path, device: str, at_once: int, classes: int, how: str) -> dict:
    """`classes` x the 4 variants, `at_once` at a time on the device."""
    from novelty.config import PRESETS, RunOptions
    from novelty.methods import VARIANTS

    cfgs = [preset_trial(k, v) for k in range(classes) for v in VARIANTS]
    cpus = max(1, (os.cpu_count() or 1) // at_once)
    out = work / "packed"
    if how == "tune":
        import ray

        from novelty.sweep.grid import Sweep, SweepOptions
        from novelty.store.results import read_rows
        from novelty.sweep.driver import run_sweep

        sweep = Sweep(name="gpu_check", grid={"normal_class": range(classes), "variant": VARIANTS},
                      fixed={"dataset": "cifar10", "seed": 0, **PRESETS["cifar10"]}, cpus_per_trial=cpus,
                      gpus_per_trial=1.0 / at_once if device.startswith("cuda") else 0.0)
        opts = SweepOptions(data_root=data_root, results=str(out), cache_dir=cache, report=False,
                            ray_address="local", max_concurrent=at_once)
        with contextlib.redirect_stdout(sys.stderr):
            run_sweep(sweep, opts)
        ray.shutdown()
        rows = read_rows(str(out)).to_dict("records")
    else:
        import multiprocessing as mp

        jobs = [(c, RunOptions(data_root=data_root, cache_dir=cache, results=str(out), device=device,
                               threads=cpus, progress=False)) for c in cfgs]
        with ProcessPoolExecutor(at_once, mp_context=mp.get_context("spawn")) as pool:
            rows = list(pool.map(one_trial, jobs))
    span, most = _span(rows)
    return {"how": how, "at_once": at_once, "trials": len(rows), "cpus_per_trial": cpus, "span_s": round(span, 3),
            "trials_per_minute": len(rows) / span * 60 if span > 0 else None, "max_seen_at_once": most,
            "devices": sorted({str(r["device"]) for r in rows}),
            "note": "span: first trial's start to last trial's end (Ray's start-up and worker imports outside it, "
                    "except a worker's first trial)"}


def projection(pack: dict) -> dict:
    from novelty.sweep.grid import load_sweep

    if "error" in pack:
        raise RuntimeError("no packed rate to project from: the packed step failed")
    n = len(load_sweep(str(REPO / "sweeps" / "ablation.py")).trials())
    tpm = pack["trials_per_minute"]
    minutes = n / tpm if tpm else None
    return {"grid": "sweeps/ablation.py", "trials": n, "minutes_on_one_device": minutes,
            "hours_on_one_device": minutes / 60 if minutes else None,
            "note": f"{n} trials at the packed rate on one device ({pack['at_once']} at once); N devices: divide by N"}


def step(report: dict, name: str, fn) -> dict:
    """Run one step of the check into report[name]; a step that fails is {"error": ...} there (its
    exception's type, message and the last lines of its traceback) and the check goes on, so the
    JSON comes out whatever fails. Each step's outcome goes to stderr as it ends."""
    import traceback

    t0 = time.perf_counter()
    try:
        report[name] = fn()
    except Exception as exc:  # noqa: BLE001 (any failure of a step is the check's finding: recorded, then on)
        report[name] = {"error": f"{type(exc).__name__}: {exc}"[:500],
                        "traceback": traceback.format_exc().strip().splitlines()[-6:]}
    log(f"{name}: {'error: ' + report[name]['error'] if 'error' in report[name] else 'ok'} "
        f"({time.perf_counter() - t0:.1f} s)")
    return report[name]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="torch device to check (default cuda; cpu for a smoke test)")
    p.add_argument("--tiny", action="store_true", help="a smoke test of the check itself: synthetic data of 200 "
                   "train images, train steps at batch 8 and 16, 4 packed trials")
    p.add_argument("--data-root", default=str(DEFAULT_DATA), help="folder with CIFAR-10 (default ../shared/data)")
    p.add_argument("--pack", choices=("auto", "tune", "processes"), default="auto",
                   help="how to pack trials on the device (auto: Ray Tune on CUDA where Ray is installed)")
    p.add_argument("--at-once", type=int, default=4, help="trials on the device at once (default 4)")
    p.add_argument("--out", default="", help="also write the JSON to this file")
    args = p.parse_args(argv)

    t_start = time.perf_counter()
    missing = [m for m in ("torch", *NEEDED) if importlib.util.find_spec(m) is None]
    if missing:
        print(json.dumps({"error": f"missing Python packages: {', '.join(missing)} (this check installs "
                                   "nothing: run it with a Python that has them)"}))
        return 2
    import torch

    report: dict = {"check": "bench/gpu_check.py", "tiny": args.tiny, "device": args.device,
                    "torch": torch.__version__, "torch_cuda": torch.version.cuda, "gpus": torch.cuda.device_count(),
                    "cpus": os.cpu_count()}
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        report["error"] = f"torch {torch.__version__} sees no CUDA device; use --device cpu for a smoke test"
        print(json.dumps(report))
        return 2
    report["device_name"] = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    how = args.pack
    if how == "auto":
        how = "tune" if args.device.startswith("cuda") and importlib.util.find_spec("ray") else "processes"
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        work = Path(tmp)
        cache = str(work / "cache")
        data = step(report, "data", lambda: find_data(Path(args.data_root), work, args.tiny))
        root = data.get("root", "")
        log(f"data: {data.get('kind')} ({root})")
        step(report, "trial_twice", lambda: trial_twice(root, cache, work, args.device))
        step(report, "selfsup", lambda: selfsup(root, cache, work, args.device, args.tiny))
        step(report, "train_step", lambda: train_step(args.device, (8, 16) if args.tiny else (64, 512),
                                                      steps=2 if args.tiny else 30, warmup=1 if args.tiny else 5))
        pack = step(report, "packed", lambda: packed(root, cache, work, args.device, args.at_once,
                                                     1 if args.tiny else 2, how))
        step(report, "projection", lambda: projection(pack))
    report["wall_s"] = round(time.perf_counter() - t_start, 1)
    text = json.dumps(report, indent=1, default=str)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 1 if any(isinstance(v, dict) and "error" in v for v in report.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
