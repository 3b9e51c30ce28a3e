"""The paper's published numbers (Tian et al., MMAsia '20, tables 1-4), read from the one file
that holds them, `paper_tables.csv` (table, dataset, method, normal_class, auc): no module
repeats a number of it. Rows of table 0 are other papers' one-class numbers on the same protocol
(the method column cites them: GEOM, Deep SVDD, Hendrycks et al., CSI), the marks the methods
beyond the paper (novelty/methods/transforms.py, deepsvdd.py) are read against."""
from __future__ import annotations

import functools
from importlib import resources

import pandas as pd


@functools.lru_cache(maxsize=1)
def _published() -> pd.DataFrame:
    with resources.files("novelty.report").joinpath("paper_tables.csv").open("r") as fh:
        return pd.read_csv(fh, dtype={"normal_class": str})


def published() -> pd.DataFrame:
    """Every published AUC: table, dataset, method, normal_class (str: a class, or "mean"), auc."""
    return _published().copy()


def table4_means(dataset: str) -> dict[str, float]:
    """Table 4's ablation (the paper's CIFAR-10 means): {variant: AUC}; empty for another dataset."""
    t4 = _published().query("table == 4 and normal_class == 'mean'")
    t4 = t4[t4["dataset"] == dataset]
    return dict(zip(t4["method"], t4["auc"].astype(float)))
