"""MNIST, paper table 2's baselines in our harness: OCSVM, KDE, DAE, VAE on the same split.

    python sweeps/mnist_baselines.py --data-root ../shared/data --results results/mnist
"""
from novelty.grid import baselines_sweep
from novelty.launch import main

SWEEP = baselines_sweep("mnist")  # 4 baselines x 10 classes x 1 seed = 40 trials

if __name__ == "__main__":
    raise SystemExit(main(SWEEP))
