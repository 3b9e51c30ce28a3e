"""MNIST quality study, second screen: the training knobs the first screen
(`sweeps/study_mnist.py`, nz x variant) left at the GANomaly family's values.

One knob moved at a time (each screen below) from the chosen configuration (full, nz 8,
5 epochs, noise 0.1, w_con 50, the last epoch scored), into the same results folder, so
`novelty report --results results/study_mnist --score-rules` chooses among all of them by
leave-one-class-out. Screened on seed 0; a winner is confirmed
on seed 1 (`novelty array-task <this file> --seeds 1 --index i`, i counting screen by screen, 10 classes each).

    python sweeps/study_mnist_knobs.py --data-root /path/to/data --results results/study_mnist --trace
"""
from novelty.grid import STUDY_MNIST, Sweep
from novelty.launch import main

SWEEP = Sweep(
    name="study_mnist_knobs",
    # 7 screens x 10 classes x 1 seed x 1 variant = 70 trials
    grid={"variant": ["full"], "normal_class": range(10), "seed": [0]},
    fixed={**STUDY_MNIST, "nz": 8},
    screens=(
        {"noise_std": 0.2},  # from 0.1 (the default); screened on seed 0, then run on seed 1
        # each from the default (noise 0.1, w_con 50, the last epoch scored), one knob at a time:
        {"stop": "val_fea"},  # score the epoch of lowest validation L_fea
        {"w_con": 10.0},
        {"w_con": 100.0},
        {"noise_std": 0.05},
        # both (indices 50-59; seed 0, plus seed 1 of classes 8 and 9: two trials that ran while
        # the default was being switched to val_fea); +0.001 over val_fea alone on seed 0
        {"noise_std": 0.05, "stop": "val_fea"},
        # twice the epochs, the stop rule choosing among all ten (indices 60-69); seed 0: -0.009
        {"epochs": 10, "stop": "val_fea"},
    ),
    cpus_per_trial=1,
)

if __name__ == "__main__":
    raise SystemExit(main(SWEEP))
