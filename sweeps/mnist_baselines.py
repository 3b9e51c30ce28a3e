"""MNIST, paper table 2's baselines in our harness: OCSVM, KDE, DAE, VAE on the same split.

    python sweeps/mnist_baselines.py --data-root ../shared/data --results results/mnist
"""
from novelty.grid import BASELINES_FIXED, BASELINES_GRID, Sweep
from novelty.launch import main

SWEEP = Sweep(
    name="mnist_baselines",
    # 4 baselines x 10 classes x 1 seed = 40 trials (add seeds with --seeds 0,1,...)
    grid=BASELINES_GRID,
    fixed={"dataset": "mnist", **BASELINES_FIXED},
    cpus_per_trial=1,
)

if __name__ == "__main__":
    raise SystemExit(main(SWEEP))
