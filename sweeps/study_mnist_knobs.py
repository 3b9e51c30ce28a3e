"""MNIST quality study, second screen: the training knobs the first screen
(`sweeps/study_mnist.py`, nz x variant) left at the GANomaly family's values.

One knob moved at a time from the chosen configuration (full, nz 8, 5 epochs), one seed,
into the same results folder, so `novelty report results/study_mnist --score-rules` chooses
among all of them by leave-one-class-out.

    python sweeps/study_mnist_knobs.py --data-root ../shared/data --results results/study_mnist --trace
"""
from novelty.grid import STUDY_MNIST, Sweep
from novelty.launch import main

SWEEP = Sweep(
    name="study_mnist_knobs",
    # 1 noise std x 10 classes x 1 seed x 1 variant = 10 trials (next: noise_std 0.05,
    # w_con 10 / 100, w_fea 10, each as its own value list here)
    grid={"noise_std": [0.2], "variant": ["full"], "normal_class": range(10), "seed": [0]},
    fixed={**STUDY_MNIST, "nz": 8},
    cpus_per_trial=1,
)

if __name__ == "__main__":
    raise SystemExit(main(SWEEP))
