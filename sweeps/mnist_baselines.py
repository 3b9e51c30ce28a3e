"""MNIST, paper table 2's baselines in our harness: OCSVM, KDE, DAE, VAE on the same split.

    python sweeps/mnist_baselines.py --data-root ../shared/data --results results/mnist
"""
from novelty.config import BASELINES
from novelty.grid import Sweep
from novelty.launch import main

SWEEP = Sweep(
    name="mnist_baselines",
    # 4 baselines x 10 classes x 1 seed = 40 trials (add seeds with --seeds 0,1,...);
    # the variant axis first, so the quick pixel methods finish before the trained ones
    grid={"variant": BASELINES[::-1], "normal_class": range(10), "seed": [0]},
    # dae / vae: the generator's encoder/decoder, nz 32 (a VAE's latent; the DAE shares it),
    # batch 64, Adam 1e-3, 4 epochs (a 2-core CPU budget: ~45 s an epoch on one busy thread);
    # ocsvm / kde ignore these (see novelty/baselines.py)
    fixed={"dataset": "mnist", "epochs": 4, "nz": 32},
    cpus_per_trial=1,
)

if __name__ == "__main__":
    raise SystemExit(main(SWEEP))
