"""Fashion-MNIST: 10 normal classes x 5 seeds, the paper's method (full).

    python sweeps/fashion_mnist.py --data-root DATA  (torchvision layout: DATA/FashionMNIST/raw)
    python sweeps/fashion_mnist.py --data-root DATA --download   # fetches it there first (needs a network)
"""
from novelty.grid import Sweep
from novelty.launch import main

SWEEP = Sweep(
    name="fashion_mnist",
    # 10 classes x 5 seeds x 1 variant = 50 trials
    grid={"normal_class": range(10), "seed": range(5), "variant": ["full"]},
    fixed={"dataset": "fashion_mnist"},
    cpus_per_trial=2,
    gpus_per_trial=0.25,
)

if __name__ == "__main__":
    raise SystemExit(main(SWEEP))
