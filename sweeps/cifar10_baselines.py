"""CIFAR-10, paper table 3's baselines in our harness: OCSVM, KDE, DAE, VAE on the same split,
with the same settings as on MNIST (`sweeps/mnist_baselines.py`).

    python sweeps/cifar10_baselines.py --data-root ../shared/data --results results/cifar10
"""
from novelty.grid import BASELINES_FIXED, BASELINES_GRID, Sweep
from novelty.launch import main

SWEEP = Sweep(
    name="cifar10_baselines",
    # 4 baselines x 10 classes x 1 seed = 40 trials (add seeds with --seeds 0,1,...)
    grid=BASELINES_GRID,
    fixed={"dataset": "cifar10", **BASELINES_FIXED},
    cpus_per_trial=1,
)

if __name__ == "__main__":
    raise SystemExit(main(SWEEP))
