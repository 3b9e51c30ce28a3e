"""CIFAR-10, paper table 3's baselines in our harness: OCSVM, KDE, DAE, VAE on the same split,
with the same settings as on MNIST (`sweeps/mnist_baselines.py`).

    python sweeps/cifar10_baselines.py --data-root /path/to/data --results results/cifar10

(how the reference set's baseline rows were made; without --results they go to runs/cifar10_baselines)
"""
from novelty.grid import baselines_sweep
from novelty.launch import main

SWEEP = baselines_sweep("cifar10")  # 4 baselines x 10 classes x 1 seed = 40 trials

if __name__ == "__main__":
    raise SystemExit(main(SWEEP))
