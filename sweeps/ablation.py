"""Paper table 4, completed: the 2x2 ablation (CAM x entropy) on CIFAR-10.

base = DAE + D; entropy = + L_inf; cam = + CAM (the paper skipped it); full = both.
`novelty report` adds the paired differences and Wilcoxon p-values over (class, seed).

    python sweeps/ablation.py --data-root ../shared/data
"""
from novelty.methods import VARIANTS
from novelty.grid import Sweep
from novelty.launch import main

SWEEP = Sweep(
    name="ablation",
    # 10 classes x 5 seeds x 4 variants = 200 trials
    grid={"normal_class": range(10), "seed": range(5), "variant": VARIANTS},
    fixed={"dataset": "cifar10"},
    cpus_per_trial=2,
    gpus_per_trial=0.25,
)

if __name__ == "__main__":
    raise SystemExit(main(SWEEP))
