"""MNIST, self-supervised transformation prediction (GEOM family; novelty/methods/transforms.py), at its preset
(novelty.grid.SELFSUP_FIXED; docs/selfsup.md says how it was chosen and what a trial costs).

    python sweeps/mnist_transforms.py --data-root /path/to/data --results results/mnist-transforms --max-concurrent 2
    python sweeps/mnist_transforms.py --smoke-test        # 2 classes, 1 seed, 1 epoch

(how the reference set was made; without --results the rows go to runs/mnist_transforms)
"""
from novelty.grid import selfsup_sweep
from novelty.launch import main

SWEEP = selfsup_sweep("transforms", "mnist", seeds=(0, 1))  # 10 classes x 2 seeds = 20 trials

if __name__ == "__main__":
    raise SystemExit(main(SWEEP))
