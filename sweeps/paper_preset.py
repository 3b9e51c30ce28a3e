"""The paper's preset (`--preset paper`: nz 100, 15 epochs, the last epoch scored, λ 0.9),
traced on every class of MNIST and CIFAR-10, so the report puts the honest AUC beside the
oracle views (best epoch on the test labels; the reference code's way of scoring, in stored
and in normal-first test order): "where the paper's numbers come from".

    python sweeps/paper_preset.py --data-root /path/to/data --results results/paper_preset --trace
"""
from novelty.config import PRESETS
from novelty.grid import Sweep
from novelty.launch import main

SWEEP = Sweep(
    name="paper_preset",
    # 2 datasets x 10 classes x 1 seed x 1 variant = 20 trials (CIFAR-10 first: the paper's claims are there)
    grid={"dataset": ["cifar10", "mnist"], "variant": ["full"], "normal_class": range(10), "seed": [0]},
    fixed=PRESETS["paper"],
    cpus_per_trial=1,
)

if __name__ == "__main__":
    raise SystemExit(main(SWEEP))
