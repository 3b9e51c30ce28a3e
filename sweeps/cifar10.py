"""CIFAR-10, paper tables 3-4: 10 normal classes x 20 seeds x the 4 variants.

    python sweeps/cifar10.py --data-root /path/to/data --seeds 0 --classes 0,1     # into runs/cifar10
    python sweeps/cifar10.py --data-root /path/to/data --seeds 0,1 --variants full,base --results results/cifar10

(the second is how the reference set results/cifar10 was made; /path/to/data holds
cifar-10-batches-py/ or cifar10-jpeg/{train,test}/<class>/; --download fetches the former with
torchvision where a network exists). On the cloud GPU cluster (cluster/README.md):

    ray submit cluster/gpu.yaml sweeps/cifar10.py -- --data-root '~/data' --download

(the head downloads CIFAR-10 while planning, each worker once before its first trial. '~/data' is
quoted for your own shell: `ray submit` hands the line to the head's shell, which expands it to the
head's home, the same path on every node of gpu.yaml; a '~' that reaches the sweep unexpanded is
expanded on each node, to its own home: cluster/README.md "Data").
"""
from novelty.config import PRESETS
from novelty.methods import VARIANTS
from novelty.grid import Sweep
from novelty.launch import main

SWEEP = Sweep(
    name="cifar10",
    # 10 classes x 20 seeds x 4 variants = 800 trials
    grid={"normal_class": range(10), "seed": range(20), "variant": VARIANTS},
    # CIFAR-10's own preset (GCN, 1 epoch, λ 0.9 on validation-scaled components), chosen by
    # leave-one-class-out within CIFAR-10 (results/study_cifar10); the MNIST defaults' rows are
    # in results/cifar10-mnist-defaults
    fixed={"dataset": "cifar10", **PRESETS["cifar10"]},
    cpus_per_trial=2,
    gpus_per_trial=0.25,  # four trials share one GPU (their GPU memory not yet measured: make gpu-check)
)

if __name__ == "__main__":
    raise SystemExit(main(SWEEP))
