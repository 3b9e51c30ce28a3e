"""MNIST quality study (screen): the knobs the paper leaves open, chosen by leave-one-class-out.

Training knobs are grid axes here; the score rule (the mix lambda and each component's
scale) needs no retraining: every trial stores its per-image components, and
`novelty report --score-rules` re-mixes them (see novelty/selection.py). Every choice is
made by leave-one-class-out in `novelty report`; the per-epoch traces are oracle
diagnostics and choose nothing.

    python sweeps/study_mnist.py --data-root /path/to/data --results results/study_mnist --trace
"""
from novelty.grid import STUDY_MNIST, Sweep
from novelty.launch import main

SWEEP = Sweep(
    name="study_mnist",
    # 2 latent sizes x 10 classes x 1 seed x 2 variants = 40 trials, 5 epochs each (a screen:
    # the provisional nz 100 loses test AUC after epoch 1-2; nz 8 held it over epochs 1-5)
    grid={"nz": [8, 32], "variant": ["full", "base"], "normal_class": range(10), "seed": [0]},
    fixed=STUDY_MNIST,
    cpus_per_trial=1,
)

if __name__ == "__main__":
    raise SystemExit(main(SWEEP))
