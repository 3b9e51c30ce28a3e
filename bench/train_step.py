"""Benchmark: images/s and FLOP/s of one training step (D step + G step of
novelty.trial.loop.train_epoch), against this machine's own fp32 matmul FLOP/s.

    .venv/bin/python bench/train_step.py --threads 2 --steps 10 --repeats 3

The step is the real one: `train_epoch` over `steps * batch_size` random images
(noise, batch indexing, D step, G step, the loss bookkeeping), after a warm-up. Its
FLOPs are counted once with `torch.utils.flop_counter.FlopCounterMode` over a
one-batch epoch (convolutions, matmuls and their backward passes; element-wise ops
such as BatchNorm, activations and Adam count 0 FLOPs there, though they take time).
The matmul reference is a square fp32 `torch.mm` on the same device with the same
thread count. On a shared machine the load changes from second to second, so every
round measures the matmul right before and after each configuration, and the ratio
of a round is taken against the mean of those two; the table gives the median of the
rounds and the spread (min-max) of the ratio.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from novelty.config import TrialConfig
from novelty.trial.distributed import make_deterministic, pick_device
from novelty.trial.loop import Run, train_epoch
from novelty.methods import spec_for


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device, n: int, seconds: float) -> float:
    """fp32 GFLOP/s of an n x n x n torch.mm, looped for about `seconds`."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    c = torch.empty(n, n, device=device)
    torch.mm(a, b, out=c)  # warm-up
    sync(device)
    iters, t0 = 0, time.perf_counter()
    while True:
        torch.mm(a, b, out=c)
        iters += 1
        if iters >= 2:
            sync(device)
            if time.perf_counter() - t0 >= seconds:
                break
    dt = time.perf_counter() - t0
    return 2.0 * n ** 3 * iters / dt / 1e9


class Case:
    """One (variant, channels) configuration with its own model state and data."""

    def __init__(self, variant: str, channels: int, args: argparse.Namespace, device: torch.device):
        self.variant, self.channels = variant, channels
        self.cfg = TrialConfig(variant=variant, batch_size=args.batch_size, epochs=1)
        self.state = Run(spec_for(variant).load()(self.cfg, channels, device))
        gen = torch.Generator().manual_seed(0)
        self.x = torch.rand(args.steps * args.batch_size, channels, 32, 32, generator=gen) * 2 - 1
        self.device = device
        with FlopCounterMode(display=False) as counter:
            train_epoch(self.state, self.cfg, self.x[: args.batch_size], device, False)
        self.flops_per_step = counter.get_total_flops()
        self.warmup(args.warmup)

    def warmup(self, steps: int) -> None:
        if steps > 0:
            train_epoch(self.state, self.cfg, self.x[: steps * self.cfg.batch_size], self.device, False)

    def run(self) -> tuple[float, float]:
        """images/s and GFLOP/s of one epoch over self.x."""
        sync(self.device)
        t0 = time.perf_counter()
        out = train_epoch(self.state, self.cfg, self.x, self.device, False)
        sync(self.device)
        dt = time.perf_counter() - t0
        steps = len(self.x) // self.cfg.batch_size
        return out["images"] / dt, self.flops_per_step * steps / dt / 1e9


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10, help="timed steps per case and round")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per case before the rounds")
    p.add_argument("--repeats", type=int, default=3, help="rounds (each times every case once)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    p.add_argument("--variants", default="full,base")
    p.add_argument("--channels", default="1,3", help="1 = MNIST-like, 3 = CIFAR-like")
    p.add_argument("--mm-size", type=int, default=2048, help="side of the reference square matmul")
    p.add_argument("--mm-seconds", type=float, default=0.5, help="time per matmul measurement")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    make_deterministic(device)  # as fit() does
    cases = [Case(v, int(c), args, device) for c in args.channels.split(",") for v in args.variants.split(",")]
    res: dict[tuple[str, int], list[tuple[float, float, float]]] = {(c.variant, c.channels): [] for c in cases}
    for _ in range(args.repeats):
        for case in cases:
            mm0 = matmul_gflops(device, args.mm_size, args.mm_seconds)
            ips, gfs = case.run()
            mm1 = matmul_gflops(device, args.mm_size, args.mm_seconds)
            res[(case.variant, case.channels)].append((ips, gfs, (mm0 + mm1) / 2))

    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
          f"batch {args.batch_size}, {args.steps} steps x {args.repeats} rounds, matmul {args.mm_size}^3 fp32")
    head = f"{'variant':<8}{'ch':>3}{'GFLOP/step':>12}{'img/s':>9}{'GFLOP/s':>9}{'mm GFLOP/s':>12}{'ratio':>7}  ratio min-max"
    print(head)
    print("-" * len(head))
    for case in cases:
        rows = res[(case.variant, case.channels)]
        ratios = [g / m for _, g, m in rows]
        med = lambda i: statistics.median(r[i] for r in rows)  # noqa: E731
        print(f"{case.variant:<8}{case.channels:>3}{case.flops_per_step / 1e9:>12.2f}{med(0):>9.1f}{med(1):>9.1f}"
              f"{med(2):>12.1f}{statistics.median(ratios):>7.2f}  {min(ratios):.2f}-{max(ratios):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
