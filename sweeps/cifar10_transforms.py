"""CIFAR-10, self-supervised transformation prediction (GEOM family; novelty/methods/transforms.py), at its preset
(novelty.grid.SELFSUP_FIXED; docs/selfsup.md says how it was chosen and what a trial costs).

    python sweeps/cifar10_transforms.py --data-root /path/to/data --results results/cifar10-transforms --max-concurrent 2
    python sweeps/cifar10_transforms.py --smoke-test        # 2 classes, 1 seed, 1 epoch

(how the reference set was made; without --results the rows go to runs/cifar10_transforms)
"""
from novelty.grid import selfsup_sweep
from novelty.launch import main

SWEEP = selfsup_sweep("transforms", "cifar10", seeds=(0, 1, 2))  # 10 classes x 3 seeds = 30 trials

if __name__ == "__main__":
    raise SystemExit(main(SWEEP))
