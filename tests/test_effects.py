"""novelty.report.effects: the ablation's effects with bootstrap CIs and the minimum detectable difference."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from novelty.report.effects import bootstrap_ci, effects_by_seeds, effects_table, min_detectable, paper_claim, seeds_needed


def _pairs(diffs: np.ndarray) -> pd.DataFrame:
    """(classes, seeds) differences -> long pairs."""
    c, s = np.meshgrid(np.arange(diffs.shape[0]), np.arange(diffs.shape[1]), indexing="ij")
    return pd.DataFrame({"normal_class": c.ravel(), "seed": s.ravel(), "diff": diffs.ravel()})


def test_bootstrap_ci_covers_the_true_mean_of_a_hand_made_table():
    # true effect 0.02; class effects and seed noise each sum to zero, so the sample mean is exactly 0.02
    class_effect = np.array([-0.03, -0.02, -0.01, 0.0, 0.0, 0.0, 0.0, 0.01, 0.02, 0.03])
    noise = np.array([-0.01, 0.01, -0.005, 0.005, 0.0])
    diffs = 0.02 + class_effect[:, None] + noise[None, :]
    lo, hi = bootstrap_ci(_pairs(diffs))
    assert lo < 0.02 < hi
    # the interval is about ±1.96 standard errors of the class means (0.0183 / √10 = 0.0058)
    assert 0.008 < hi - lo < 0.035
    assert bootstrap_ci(_pairs(diffs)) == (lo, hi)  # fixed seed: tables rebuild identically
    # shifting every difference shifts the interval by as much
    lo2, hi2 = bootstrap_ci(_pairs(diffs + 0.1))
    assert (lo2, hi2) == pytest.approx((lo + 0.1, hi + 0.1))


def test_zero_differences_give_a_zero_width_interval():
    assert bootstrap_ci(_pairs(np.zeros((10, 5)))) == (0.0, 0.0)


def test_min_detectable_matches_a_hand_computation():
    d = np.array([0.01, -0.02, 0.03, 0.0, 0.015])
    se = np.std(d, ddof=1) / np.sqrt(5)
    assert min_detectable(d) == pytest.approx((1.959964 + 0.841621) * se, rel=1e-5)
    assert np.isnan(min_detectable(d[:1]))


def test_effects_table_on_rows():
    rng = np.random.default_rng(0)
    rows = []
    for c in range(4):
        for s in range(3):
            base = 0.6 + 0.05 * rng.standard_normal()
            for v, shift in (("base", 0.0), ("entropy", 0.01), ("cam", -0.02), ("full", 0.03)):
                rows.append({"dataset": "cifar10", "config": "", "normal_class": c, "seed": s,
                             "variant": v, "auc": base + shift})
    effects, per_class = effects_table(pd.DataFrame(rows))
    eff = effects.set_index("comparison")
    assert list(eff.index) == ["entropy − base", "cam − base", "full − base", "full − entropy", "full − cam"]
    assert eff.loc["full − cam", "effect"] == pytest.approx(0.05)
    assert eff.loc["full − base", "ci_low"] == pytest.approx(0.03) and eff.loc["full − base", "ci_high"] == pytest.approx(0.03)
    assert eff.loc["full − base", "n_pairs"] == 12 and eff.loc["full − base", "n_classes"] == 4
    assert eff.loc["full − base", "paper_claim"] == pytest.approx(0.036)
    assert np.isnan(eff.loc["cam − base", "paper_claim"])  # the paper has no cam row
    assert paper_claim("mnist", "full", "base") != paper_claim("mnist", "full", "base")  # NaN off CIFAR-10
    fb = per_class[per_class["comparison"] == "full − base"]
    assert list(fb["mean"]) == pytest.approx([0.03] * 4) and list(fb["n"]) == [3] * 4


def test_seeds_needed_from_the_two_variance_components():
    z2 = (1.959964 + 0.841621) ** 2
    # no class effect, seed noise of variance exactly 0.0004 in every class: σ²_b = 0 after the
    # correction, so n = z² σ²_w / (classes · target²)
    noise = np.array([-0.02, 0.02, -0.02, 0.02])  # var (ddof=1) 0.000533
    diffs = np.tile(noise, (10, 1))
    w = noise.var(ddof=1)
    assert seeds_needed(_pairs(diffs), 0.01) == np.ceil(z2 * w / (10 * 0.01**2))
    # a smaller claim needs more seeds; a claim of 0 or none needs no answer
    assert seeds_needed(_pairs(diffs), 0.005) > seeds_needed(_pairs(diffs), 0.01)
    assert np.isnan(seeds_needed(_pairs(diffs), float("nan"))) and np.isnan(seeds_needed(_pairs(diffs), 0.0))
    # classes that differ by far more than the claim: no number of seeds reaches it
    spread = diffs + np.linspace(-0.2, 0.2, 10)[:, None]
    assert seeds_needed(_pairs(spread), 0.01) == float("inf")


def test_effects_by_seeds_uses_only_each_prefix_of_the_seeds():
    rows = []
    for c in range(3):
        for s in range(12):
            shift = 0.1 if s < 5 else 0.0  # full beats base by 0.1 on seeds 0-4 only
            for v, extra in (("base", 0.0), ("full", shift)):
                rows.append({"dataset": "cifar10", "config": "", "normal_class": c, "seed": s, "variant": v,
                             "auc": 0.6 + 0.01 * c + extra})
    moves = effects_by_seeds(pd.DataFrame(rows)).set_index("seeds")
    assert list(moves.index) == [5, 10, 12] and set(moves["comparison"]) == {"full − base"}
    assert moves["effect"].tolist() == pytest.approx([0.1, 0.05, 0.1 * 5 / 12])
    assert moves["n_pairs"].tolist() == [15, 30, 36]
    few = pd.DataFrame(rows)
    assert effects_by_seeds(few[few["seed"] < 5]).empty  # nothing moved: one table is the answer
