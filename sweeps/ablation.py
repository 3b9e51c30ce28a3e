"""Paper table 4, completed: the 2x2 ablation (CAM x entropy) on CIFAR-10.

base = DAE + D; entropy = + L_inf; cam = + CAM (the paper skipped it); full = both.
`novelty report` adds the paired differences, bootstrap CIs and Wilcoxon p-values over (class, seed).

    python sweeps/ablation.py --data-root /path/to/data --seeds 0,1,2,3,4          # into runs/ablation
    python sweeps/ablation.py --data-root /path/to/data --seeds 0,1,2,3,4 --results results/ablation

(the second writes into the reference set results/ablation, which holds these 200 trials; /path/to/data holds
cifar-10-batches-py/ or cifar10-jpeg/{train,test}/<class>/). The whole grid on the cloud GPU cluster
(cluster/README.md; --download: each node fetches CIFAR-10 once; '~' quoted: see cluster/README.md "Data"):

    ray submit cluster/gpu.yaml sweeps/ablation.py -- --data-root '~/data' --download
"""
from novelty.config import PRESETS
from novelty.methods import VARIANTS
from novelty.grid import Sweep
from novelty.launch import main

SWEEP = Sweep(
    name="ablation",
    # 20 seeds x 10 classes x 4 variants = 800 trials (the full grid, sized for a GPU cluster; the
    # reference set results/ablation was run seed by seed), at CIFAR-10's own preset (chosen by
    # results/study_cifar10). Seeds outermost: a run stopped part-way has whole seeds, each over
    # every class and variant (the order of the grid's axes changes no trial and no key).
    grid={"seed": range(20), "normal_class": range(10), "variant": VARIANTS},
    fixed={"dataset": "cifar10", **PRESETS["cifar10"]},
    cpus_per_trial=2,
    gpus_per_trial=0.25,
)

if __name__ == "__main__":
    raise SystemExit(main(SWEEP))
