"""Benchmark: where one trial's wall time goes, phase by phase, and scoring's speed beside training's.

    .venv/bin/python bench/trial_cost.py --data-root ../shared/data --cache-dir ~/.cache/novelty

For each case (a 1-epoch CIFAR-10 trial at the `cifar10` preset, class 0 seed 0 `full`; a
digits trial at the defaults, class 0 seed 0 `full`; with --cases, `transforms` or `deepsvdd` on
CIFAR-10 at their sweep presets) a fresh Python process (1 torch thread)
imports the package, runs the trial through `novelty.trial.run.run_trial` ("alone": a cold
process, the dataset cache on disk warm), then runs a second trial of the same dataset
(class 1) in the same process ("in a sweep": Ray Tune reuses its trial actors, so a sweep's
trials after the first find the package imported and whatever the process kept; this
second trial stands in for them). Each phase is timed by wrapping the function run_trial
calls for it (exclusive times; nested phases are subtracted from their parents):

    import           import novelty.trial.run and the method's module
    list files       the reader's file listing and the cache's validity check
    data             the rest of loading the dataset (reading the cache file)
    fingerprint      hashing the decoded dataset (the trial key's data part)
    split+preprocess one_class_split and apply_preprocess (GCN for the cifar10 preset)
    build            fit() less its epochs, validation and checkpoints: building the networks
    train            the training epochs (the row's train_seconds)
    validate         scoring the normal validation images after each epoch
    score            Method.components on the test split
    write            checkpoints, the writability probe and the row/score files
    other            the rest of run_trial (the AUC, row assembly, git rev-parse, ...)

Each phase is shown as wall time and as this process's CPU time (on a shared machine other
processes' load stretches wall time unevenly; CPU time is what the trial itself costs).
"fixed" is everything but train and score (validation counted in it); the target is fixed
<= 10% of the CIFAR-10 trial's wall. Then, on the CIFAR-10 split, images per CPU second
(= per thread) of scoring (eval mode, the scoring batch) beside a training step's and beside
the forward passes a training step makes (train-mode BatchNorm, batch 64, no backward), with
each one's GFLOP per image (torch's FlopCounterMode: convolutions and matmuls, backward
included for the step), so that a gap in images/s reads as work per image or as speed per FLOP.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

PHASES = ("import", "list files", "data", "fingerprint", "split+preprocess", "build", "train", "validate",
          "score", "write", "other")
WORK = ("train", "score")


def clocks() -> tuple[float, float]:
    """(wall, CPU) seconds: CPU time is this process's, so other processes' load does not count."""
    return time.perf_counter(), time.process_time()


class Timer:
    """Exclusive wall and CPU time per phase, by wrapping module attributes (undone by `restore`)."""

    def __init__(self) -> None:
        self.t: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        self.undo: list[tuple[object, str, object]] = []
        self.stack: list[str] = []

    def wrap(self, owner: object, name: str, phase: str, item: bool = False, outermost: bool = False) -> None:
        """Time calls of owner.name (owner[name] with `item`) as `phase`; with `outermost`, only
        calls made outside every other phase (Method.components: the test split's scoring, while
        validation's calls stay in validate)."""
        if (name not in owner) if item else not hasattr(owner, name):  # type: ignore[operator]
            return  # not in this version of the code
        orig = owner[name] if item else getattr(owner, name)  # type: ignore[index]

        def timed(*args, **kwargs):
            if outermost and self.stack:
                return orig(*args, **kwargs)
            self.stack.append(phase)
            start = clocks()
            try:
                return orig(*args, **kwargs)
            finally:
                spent = [b - a for a, b in zip(start, clocks())]
                self.stack.pop()
                for i, dt in enumerate(spent):
                    self.t[phase][i] += dt
                    if self.stack:
                        self.t[self.stack[-1]][i] -= dt  # exclusive: the parent does not count its child

        if item:
            owner[name] = timed  # type: ignore[index]
        else:
            setattr(owner, name, timed)
        self.undo.append((owner, name, orig))

    def restore(self) -> None:
        for owner, name, orig in reversed(self.undo):
            if isinstance(owner, dict):
                owner[name] = orig
            else:
                setattr(owner, name, orig)
        self.undo.clear()


def timed_trial(cfg, opts) -> tuple[dict, dict]:
    """Run one trial under the phase timers; returns ({phase: [wall s, CPU s]}, its row)."""
    import novelty.data.load as data
    import novelty.trial.loop as loop
    import novelty.data.readers as readers
    import novelty.trial.run as trial
    from novelty import methods

    timer = Timer()
    timer.wrap(trial, "prepare_data", "data")
    if hasattr(readers, "READERS"):  # code before the dataset registry
        timer.wrap(readers.READERS, cfg.dataset, "list files", item=True)
    timer.wrap(readers, f"read_{cfg.dataset}", "list files")  # looked up by novelty.data.datasets at each call
    for name in ("_fingerprint", "source_stamp"):  # the cache's validity check (old, new)
        timer.wrap(data, name, "list files")
    timer.wrap(data, "fingerprint", "fingerprint")
    timer.wrap(trial, "one_class_split", "split+preprocess")
    timer.wrap(trial, "apply_preprocess", "split+preprocess")
    timer.wrap(trial, "fit", "build")
    timer.wrap(loop, "train_epoch", "train")
    timer.wrap(loop, "validate", "validate")
    timer.wrap(methods.spec_for(cfg.variant).load(), "components", "score", outermost=True)
    for name in ("save_checkpoint", "load_checkpoint"):
        timer.wrap(loop, name, "write")
    timer.wrap(trial, "write_trial", "write")
    timer.wrap(trial, "check_writable", "write")
    start = clocks()
    try:
        row = trial.run_trial(cfg, opts)
    finally:
        timer.restore()
    total = [b - a for a, b in zip(start, clocks())]
    t = {k: list(v) for k, v in timer.t.items()}
    t["other"] = [total[i] - sum(v[i] for v in t.values()) for i in (0, 1)]  # run_trial's own lines
    t["wall"] = total
    return t, row


def throughput(cfg, opts, n_images: int) -> dict:
    """Images/s and forward GFLOP/image of scoring, a training step, and a step's forward passes."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from novelty.data.load import load_imageset, one_class_split
    from novelty.trial.loop import Run, train_epoch
    from novelty.methods import spec_for
    from novelty.data.preprocess import apply_preprocess

    ds = load_imageset(cfg.dataset, opts.data_root, opts.cache_dir)
    split = apply_preprocess(one_class_split(ds, cfg.dataset, cfg.normal_class, cfg.seed, cfg.val_fraction),
                             cfg.preprocess)
    device = torch.device("cpu")
    method = spec_for(cfg.variant).load()(cfg, split.train.shape[1], device)
    run = Run(method)
    x_test, x_train = split.test[:n_images], split.train[: (n_images // 64) * 64]
    train_epoch(run, cfg, x_train[:128], device, False)  # warm-up (and channels-last weights)

    def rate(fn, images: int) -> float:  # per CPU second of this process: images/s per thread
        fn()  # warm-up
        t0 = time.process_time()
        fn()
        return images / (time.process_time() - t0)

    def flops(fn, images: int) -> float:
        with FlopCounterMode(display=False) as counter:
            fn()
        return counter.get_total_flops() / images / 1e9

    def forward_passes():  # the forward passes of Tian2020.step, no backward
        with torch.no_grad():
            for xb in x_train.split(64):
                x_hat, _ = method.G(xb + 0.1 * torch.randn_like(xb))
                method.D(xb), method.D(x_hat), method.D(x_hat), method.D(xb)

    score = lambda: method.components(x_test)  # noqa: E731
    step = lambda: train_epoch(run, cfg, x_train, device, False)  # noqa: E731
    method.G.train(), method.D.train()
    out = {"forward passes of a training step (batch 64, train mode)":
           (rate(forward_passes, len(x_train)), flops(forward_passes, len(x_train)))}
    out["training step (forward + backward + Adam)"] = (rate(step, len(x_train)), flops(step, len(x_train)))
    out["scoring (eval mode, Method.components' batch)"] = (rate(score, len(x_test)), flops(score, len(x_test)))
    return out


def child(case: str, args: argparse.Namespace) -> dict:
    """One case in this (fresh) process: import, the trial alone, a second trial, throughput."""
    start = clocks()
    import torch

    torch.set_num_threads(1)
    from novelty import methods
    from novelty.config import PRESETS, RunOptions, TrialConfig
    import novelty.trial.run  # noqa: F401

    from novelty.sweep.grid import SELFSUP_FIXED

    dataset, _, variant = case.partition("-")  # "cifar10-transforms": the method at its sweep preset
    variant = variant or "full"
    preset = SELFSUP_FIXED[variant] if variant in SELFSUP_FIXED else PRESETS["cifar10"] if dataset == "cifar10" else {}
    cfgs = [TrialConfig.from_flat({"dataset": dataset, "normal_class": k, "seed": 0, "variant": variant, **preset})
            for k in (0, 1)]
    methods.spec_for(variant).load()
    imported = [b - a for a, b in zip(start, clocks())]
    out: dict = {"case": case}
    with tempfile.TemporaryDirectory(prefix="trial_cost-") as tmp:
        opts = RunOptions(data_root=args.data_root, cache_dir=args.cache_dir, results=tmp, threads=1,
                          progress=False, sweep="bench")
        for name, cfg in zip(("alone", "in a sweep"), cfgs):
            t, row = timed_trial(cfg, opts)
            t["import"] = imported if name == "alone" else [0.0, 0.0]
            t["wall"] = [a + b for a, b in zip(t["wall"], t["import"])]
            out[name] = {"phases": t, "auc": row["auc"], "key": row["key"], "class": cfg.normal_class}
        if case == "cifar10" and args.throughput_images > 0:  # the paper's method's passes
            out["throughput"] = throughput(cfgs[0], opts, args.throughput_images)
    return out


def print_case(res: dict) -> None:
    print(f"\n== {res['case']}: 1 thread; 'in a sweep' = a second trial (class 1) in the same process; "
          "CPU = this process's CPU time (the machine's other load does not count)")
    runs = [k for k in ("alone", "in a sweep") if k in res]
    print(f"{'':<18}" + "".join(f"{k:^32}" for k in runs))
    print(f"{'phase':<18}" + f"{'wall s':>8}{'share':>8}{'CPU s':>8}{'share':>8}" * len(runs))
    for phase in (*PHASES, "fixed", "wall"):
        cells = []
        for k in runs:
            t = res[k]["phases"]
            for i in (0, 1):
                total = t["wall"][i]
                v = total - sum(t[w][i] for w in WORK) if phase == "fixed" else t.get(phase, [0.0, 0.0])[i]
                cells.append(f"{v:>8.2f}{100 * v / total:>7.1f}%")
        print(f"{phase:<18}" + "".join(cells))
    for k in runs:
        print(f"{k}: class {res[k]['class']} key {res[k]['key']} AUC {res[k]['auc']!r}")
    for name, (ips, gflop) in res.get("throughput", {}).items():
        print(f"{name:<56} {ips:>7.1f} img/s/thread {gflop:6.3f} GFLOP/img {ips * gflop:6.2f} GFLOP/s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    p.add_argument("--cache-dir", default=os.environ.get("NOVELTY_CACHE", os.path.expanduser("~/.cache/novelty")))
    p.add_argument("--cases", default="cifar10,digits",
                   help="comma-separated: cifar10, digits (the paper's method), cifar10-transforms, cifar10-deepsvdd "
                        "(the methods beyond it, at their sweep presets: novelty.sweep.grid.SELFSUP_FIXED)")
    p.add_argument("--throughput-images", type=int, default=2048, help="test images timed for scoring (0: skip)")
    p.add_argument("--json", default="", help="also write the results here")
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args)))
        return 0
    results = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for case in args.cases.split(","):
        cmd = [sys.executable, __file__, "--child", case, "--data-root", args.data_root, "--cache-dir",
               args.cache_dir, "--throughput-images", str(args.throughput_images)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout + proc.stderr)
            return proc.returncode
        res = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
        results.append(res)
        print_case(res)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
