"""CIFAR-10, Deep SVDD (Ruff et al. 2018; novelty/methods/deepsvdd.py), at its preset
(novelty.grid.SELFSUP_FIXED; docs/selfsup.md says how it was chosen and what a trial costs).

    python sweeps/cifar10_deepsvdd.py --data-root /path/to/data --results results/cifar10-deepsvdd --max-concurrent 2
    python sweeps/cifar10_deepsvdd.py --smoke-test        # 2 classes, 1 seed, 1 epoch

(how the reference set was made; without --results the rows go to runs/cifar10_deepsvdd)
"""
from novelty.grid import selfsup_sweep
from novelty.launch import main

SWEEP = selfsup_sweep("deepsvdd", "cifar10", seeds=(0, 1, 2))  # 10 classes x 3 seeds = 30 trials

if __name__ == "__main__":
    raise SystemExit(main(SWEEP))
