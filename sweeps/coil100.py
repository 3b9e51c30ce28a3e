"""COIL-100, paper table 1: 20 repetitions, each with a normal object drawn by its seed.

    python sweeps/coil100.py --data-root DATA   (DATA holds obj<K>__<angle>.png)
"""
from novelty.grid import Sweep
from novelty.launch import main

SWEEP = Sweep(
    name="coil100",
    # 1 (seeded object) x 20 repetitions x 1 variant = 20 trials
    grid={"normal_class": [-1], "seed": range(20), "variant": ["full"]},
    fixed={"dataset": "coil100", "batch_size": 15},
    cpus_per_trial=2,
    gpus_per_trial=0.25,
)

if __name__ == "__main__":
    raise SystemExit(main(SWEEP))
