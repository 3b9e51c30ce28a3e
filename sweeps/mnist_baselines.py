"""MNIST, paper table 2's baselines in our harness: OCSVM, KDE, DAE, VAE on the same split.

    python sweeps/mnist_baselines.py --data-root /path/to/data --results results/mnist

(how the reference set's baseline rows were made; without --results they go to runs/mnist_baselines;
/path/to/data holds MNIST/raw/ in torchvision's layout)
"""
from novelty.grid import baselines_sweep
from novelty.launch import main

SWEEP = baselines_sweep("mnist")  # 4 baselines x 10 classes x 1 seed = 40 trials

if __name__ == "__main__":
    raise SystemExit(main(SWEEP))
