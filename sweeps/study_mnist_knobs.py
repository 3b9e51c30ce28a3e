"""MNIST quality study, second screen: the training knobs the first screen
(`sweeps/study_mnist.py`, nz x variant) left at the GANomaly family's values.

One knob moved at a time from the chosen configuration (full, nz 8, 5 epochs), one seed,
into the same results folder, so `novelty report results/study_mnist --score-rules` chooses
among all of them by leave-one-class-out. score_lambda is pinned as in the first screen (the
score rule is re-mixed from stored components, not trained).

    python sweeps/study_mnist_knobs.py --data-root ../shared/data --results results/study_mnist --trace
"""
from novelty.grid import Sweep
from novelty.launch import main

SWEEP = Sweep(
    name="study_mnist_knobs",
    # 1 noise std x 10 classes x 1 seed x 1 variant = 10 trials (next: noise_std 0.05,
    # w_con 10 / 100, w_fea 10, each as its own value list here)
    grid={"noise_std": [0.2], "variant": ["full"], "normal_class": range(10), "seed": [0]},
    fixed={"dataset": "mnist", "epochs": 5, "nz": 8, "score_lambda": 0.9},
    cpus_per_trial=1,
)

if __name__ == "__main__":
    raise SystemExit(main(SWEEP))
