"""The ablation's effects as a reviewer wants them: for each comparison of two variants
(a − b), the mean paired AUC difference with a 95% bootstrap confidence interval, the
Wilcoxon p over (class, seed) pairs, the paper's claimed difference, the per-class
differences, and the smallest true difference these pairs could have detected.

- Pairs: (class, seed) cells both variants ran, within one dataset and configuration.
- The effect is the mean over classes of each class's mean difference over its seeds (the
  tables' own "mean" column, differenced).
- The bootstrap (`bootstrap_ci`) resamples classes with replacement and, within each drawn
  class, its seeds with replacement (classes are the population the paper generalises over;
  seeds are repetitions inside a class), `BOOT` times, with a fixed seed so tables rebuild
  identically; the interval is the 2.5 and 97.5 percentiles of the resampled effects.
- Minimum detectable difference (`min_detectable`): the smallest true effect a two-sided test
  at α 0.05 detects with 80% power, (z_0.975 + z_0.80) × SE, with SE = std (ddof=1) of the
  per-class mean differences / √classes (the same unit the bootstrap resamples): a null
  result says how null it is.
- Seeds for the claim (`seeds_needed`): the seeds per class at which that minimum detectable
  difference, over these classes, reaches the paper's claimed difference.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.stats import norm, wilcoxon

from .paper import table4_means

BOOT = 10_000
BOOT_SEED = 0
ALPHA, POWER = 0.05, 0.80
CLASS_COLUMNS = ["dataset", "config", "comparison", "normal_class", "mean", "std", "n", "ci_low", "ci_high"]
COMPARISONS = (("entropy", "base"), ("cam", "base"), ("full", "base"), ("full", "entropy"), ("full", "cam"))


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> tuple[float, str]:
    """Two-sided Wilcoxon signed-rank p-value of a − b, or (NaN, why) when it is undefined."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if len(diff) < 2:
        return float("nan"), f"{len(diff)} pair(s): no test"
    if np.all(diff == 0):
        return float("nan"), "all differences are zero: no test"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = float(wilcoxon(a, b).pvalue)
    return p, "; ".join(sorted({str(w.message) for w in caught}))


def per_class_differences(pairs: pd.DataFrame) -> pd.DataFrame:
    """`pairs`: columns normal_class, seed, diff. Per class: mean and std (ddof=1) over seeds, n,
    and the 95% bootstrap interval over its seeds (`bootstrap_ci` on that class alone)."""
    out = pairs.groupby("normal_class")["diff"].agg(["mean", "std", "count"]).reset_index()
    cis = [bootstrap_ci(g) for _, g in pairs.groupby("normal_class")]
    return out.rename(columns={"count": "n"}).assign(ci_low=[c[0] for c in cis], ci_high=[c[1] for c in cis])


def bootstrap_ci(pairs: pd.DataFrame, level: float = 0.95, n_boot: int = BOOT,
                 seed: int = BOOT_SEED) -> tuple[float, float]:
    """Percentile interval of the mean-over-classes difference, resampling classes and, within
    each, seeds (both with replacement). `pairs`: columns normal_class, seed, diff."""
    rng = np.random.default_rng(seed)
    groups = [g["diff"].to_numpy(dtype=float) for _, g in pairs.groupby("normal_class")]
    if not groups:
        return float("nan"), float("nan")
    # class_means[b, c]: class c's mean over its seeds, resampled (n_boot, n_classes)
    class_means = np.stack([d[rng.integers(0, len(d), (n_boot, len(d)))].mean(axis=1) for d in groups], axis=1)
    drawn = rng.integers(0, len(groups), (n_boot, len(groups)))  # which classes each resample holds
    effects = np.take_along_axis(class_means, drawn, axis=1).mean(axis=1)  # (n_boot,)
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(effects, [tail, 100 - tail])
    return float(lo), float(hi)


def min_detectable(class_diffs: np.ndarray, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest true mean difference detected with `power` by a two-sided test at `alpha`:
    (z_{1-α/2} + z_power) × std(class_diffs, ddof=1) / √len(class_diffs)."""
    d = np.asarray(class_diffs, dtype=float)
    if len(d) < 2:
        return float("nan")
    se = d.std(ddof=1) / np.sqrt(len(d))
    return float((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * se)


def seeds_needed(pairs: pd.DataFrame, target: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Seeds per class at which `min_detectable` over these classes reaches |target|, from the
    pairs' two variance components: within a class, across seeds (σ²_w: the mean over classes of
    the variance of its differences), and between classes (σ²_b = var of the class means − σ²_w /
    seeds per class, at least 0). With n seeds a class mean varies by σ²_b + σ²_w / n, so
    (z_{1-α/2} + z_power)² (σ²_b + σ²_w / n) / classes ≤ target² gives n. Infinite when σ²_b alone
    is too large (only more classes help); NaN without a target or with < 2 classes or seeds."""
    groups = [g["diff"].to_numpy(dtype=float) for _, g in pairs.groupby("normal_class")]
    if not np.isfinite(target) or target == 0 or len(groups) < 2 or min(len(d) for d in groups) < 2:
        return float("nan")
    z2 = (norm.ppf(1 - alpha / 2) + norm.ppf(power)) ** 2
    within = float(np.mean([d.var(ddof=1) for d in groups]))
    seeds = float(np.mean([len(d) for d in groups]))
    between = max(0.0, float(np.var([d.mean() for d in groups], ddof=1)) - within / seeds)
    room = len(groups) * target**2 / z2 - between  # what σ²_w / n may be
    return float(max(2, np.ceil(within / room))) if room > 0 else float("inf")


def paper_claim(dataset: str, a: str, b: str) -> float:
    """The difference the paper's table 4 claims for a − b (NaN where it has no such rows)."""
    t4 = table4_means(dataset)
    if a not in t4 or b not in t4:
        return float("nan")
    return round(t4[a] - t4[b], 4)


def _pairs(part: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    aucs = part.pivot_table(index=["normal_class", "seed"], columns="variant", values="auc", aggfunc="mean")
    if a not in aucs or b not in aucs:
        return pd.DataFrame(columns=["normal_class", "seed", "diff"])
    both = aucs[[a, b]].dropna()
    return (both[a] - both[b]).rename("diff").reset_index()


def effects_table(labelled: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For each (dataset, config) and each comparison both of whose variants ran: the effect,
    its bootstrap CI, Wilcoxon p, the minimum detectable difference and the paper's claim;
    and, long form, each class's difference (mean, std, n over seeds). `labelled`: rows with
    `config` (`novelty.report.write.label_rows`)."""
    records, classes = [], []
    for (dataset, config), part in labelled.groupby(["dataset", "config"], sort=False):
        present = set(part["variant"])
        for a, b in COMPARISONS:
            if a not in present or b not in present:
                continue
            pairs = _pairs(part, a, b)
            if pairs.empty:
                continue
            claim = paper_claim(dataset, a, b)
            per_class = per_class_differences(pairs)
            lo, hi = bootstrap_ci(pairs)
            p, note = wilcoxon_p(pairs["diff"].to_numpy(), np.zeros(len(pairs)))
            records.append({"dataset": dataset, "config": config, "comparison": f"{a} − {b}", "a": a, "b": b,
                            "effect": per_class["mean"].mean(), "ci_low": lo, "ci_high": hi,
                            "n_classes": len(per_class), "n_pairs": len(pairs), "wilcoxon_p": p,
                            "min_detectable": min_detectable(per_class["mean"].to_numpy()),
                            "paper_claim": claim, "seeds_for_claim": seeds_needed(pairs, abs(claim)),
                            "note": note})
            classes.append(per_class.assign(dataset=dataset, config=config, comparison=f"{a} − {b}"))
    effects = pd.DataFrame(records, columns=["dataset", "config", "comparison", "a", "b", "effect", "ci_low",
                                             "ci_high", "n_classes", "n_pairs", "wilcoxon_p", "min_detectable",
                                             "paper_claim", "seeds_for_claim", "note"])
    per_class = (pd.concat(classes, ignore_index=True) if classes else
                 pd.DataFrame(columns=CLASS_COLUMNS))
    return effects, per_class[CLASS_COLUMNS]


def effects_by_seeds(labelled: pd.DataFrame, step: int = 5) -> pd.DataFrame:
    """How the effects moved as seeds were added: `effects_table` on the first 5, 10, … seeds
    (each a prefix of the seeds run, in order) and on all of them, with the number of seeds as
    column `seeds`. Empty when the rows hold `step` seeds or fewer (one table is the answer)."""
    seeds = sorted(labelled["seed"].unique())
    if len(seeds) <= step:
        return pd.DataFrame()
    counts = [*range(step, len(seeds), step), len(seeds)]
    parts = [effects_table(labelled[labelled["seed"].isin(seeds[:n])])[0].assign(seeds=n) for n in counts]
    order = {f"{a} − {b}": i for i, (a, b) in enumerate(COMPARISONS)}  # the effects table's order
    return pd.concat(parts, ignore_index=True).sort_values(
        ["dataset", "config", "comparison", "seeds"], kind="stable", ignore_index=True,
        key=lambda col: col.map(order) if col.name == "comparison" else col)
