"""CIFAR-10, paper tables 3-4: 10 normal classes x 20 seeds x the 4 variants.

    ray submit cluster/gpu.yaml sweeps/cifar10.py -- --data-root /data
    python sweeps/cifar10.py --data-root ../shared/data --seeds 0 --variants full
"""
from novelty.methods import VARIANTS
from novelty.grid import Sweep
from novelty.launch import main

SWEEP = Sweep(
    name="cifar10",
    # 10 classes x 20 seeds x 4 variants = 800 trials
    grid={"normal_class": range(10), "seed": range(20), "variant": VARIANTS},
    fixed={"dataset": "cifar10"},  # the defaults chosen on MNIST, untouched (no CIFAR-10 number chose them)
    cpus_per_trial=2,
    gpus_per_trial=0.25,  # four trials share one GPU; each needs well under 2 GB
)

if __name__ == "__main__":
    raise SystemExit(main(SWEEP))
