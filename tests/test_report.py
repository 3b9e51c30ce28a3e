"""novelty.report.write / novelty.report.plots on synthetic result rows (no training)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon
from sklearn.metrics import roc_curve

from novelty.cli import main
from novelty.config import TrialConfig
from novelty.report.plots import roc_points
from novelty.report.effects import wilcoxon_p
from novelty.report.write import write_report
from novelty.report.tables import class_mean_table, paired_differences, summary_table, wide_tables
from novelty.store.results import ResultsError, read_rows, read_scores, write_trial

CLASSES, SEEDS, VARIANTS = (0, 1, 2), (0, 1, 2, 3), ("base", "entropy", "full")


def _write(uri: Path, rng: np.random.Generator, auc: float, n_images: int = 40, **fields) -> str:
    cfg = TrialConfig(**fields)
    row = {"key": cfg.key("synthetic"), "sweep": "test", **cfg.flat(), "auc": auc,
           "n_train": 10, "train_seconds": 1.0}
    labels = rng.integers(0, 2, n_images)
    labels[:2] = (0, 1)  # both labels present
    scores = pd.DataFrame({"key": cfg.key("synthetic"), "index": range(n_images), "label": labels,
                           "score": rng.random(n_images), "raw_score": rng.random(n_images)})
    write_trial(str(uri), row, scores)
    return cfg.key("synthetic")


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """digits: 3 classes x 4 seeds x 3 variants, with known random AUCs, epochs=2."""
    rng = np.random.default_rng(0)
    uri = tmp_path / "res"
    for cls in CLASSES:
        for seed in SEEDS:
            for i, variant in enumerate(VARIANTS):
                _write(uri, rng, float(0.6 + 0.1 * i + 0.05 * rng.standard_normal()), dataset="digits",
                       normal_class=cls, seed=seed, variant=variant, epochs=2)
    return uri


def test_summary_matches_groupby(results: Path) -> None:
    rows = read_rows(str(results))
    expected = rows.groupby(["variant", "normal_class"])["auc"].agg(["mean", "std", "count"])
    got = summary_table(rows).set_index(["variant", "normal_class"])
    assert len(got) == len(CLASSES) * len(VARIANTS)
    for idx, exp in expected.iterrows():
        assert got.loc[idx, "mean"] == pytest.approx(exp["mean"])
        assert got.loc[idx, "std"] == pytest.approx(exp["std"])  # ddof=1
        assert got.loc[idx, "std"] == pytest.approx(np.std(rows.loc[(rows.variant == idx[0]) & (
            rows.normal_class == idx[1]), "auc"], ddof=1))
        assert got.loc[idx, "n"] == exp["count"] == len(SEEDS)
    assert set(got["label"]) == set(VARIANTS)  # nothing varies but variant: plain labels


def test_class_mean_column(results: Path) -> None:
    rows = read_rows(str(results))
    means = class_mean_table(rows).set_index("variant")
    full = rows[rows.variant == "full"]
    assert means.loc["full", "mean"] == pytest.approx(full.groupby("normal_class")["auc"].mean().mean())
    assert means.loc["full", "std"] == pytest.approx(full.groupby("seed")["auc"].mean().std(ddof=1))
    assert means.loc["full", "n"] == len(SEEDS)
    # a seed missing one class: no std for the mean column, mean still over the per-class means
    partial = rows.drop(rows[(rows.variant == "full") & (rows.seed == 0) & (rows.normal_class == 1)].index)
    means = class_mean_table(partial).set_index("variant")
    pf = partial[partial.variant == "full"]
    assert np.isnan(means.loc["full", "std"])
    assert means.loc["full", "mean"] == pytest.approx(pf.groupby("normal_class")["auc"].mean().mean())
    assert not np.isnan(means.loc["base", "std"])


def test_drawn_class_mean_is_over_repetitions(tmp_path: Path) -> None:
    """COIL-100: each seed draws its object, so the mean column is mean ± std over repetitions."""
    uri, aucs = tmp_path / "coil", [0.91, 0.95, 0.97, 0.99]
    for seed, (obj, auc) in enumerate(zip((4, 17, 4, 60), aucs)):  # objects 4, 17, 4, 60 drawn
        cfg = TrialConfig(dataset="coil100", normal_class=-1, seed=seed, variant="full")
        row = {"key": cfg.key("synthetic"), "sweep": "test", **dataclasses.asdict(cfg), "normal_class": obj,
               "class_drawn": True, "auc": auc}
        write_trial(str(uri), row, pd.DataFrame({"key": cfg.key("synthetic"), "index": [0, 1], "label": [0, 1],
                                                 "score": [0.1, 0.9], "raw_score": [0.1, 0.9]}))
    means = class_mean_table(read_rows(str(uri))).iloc[0]
    assert means["mean"] == pytest.approx(np.mean(aucs))  # not the mean of per-object means (0.943)
    assert means["std"] == pytest.approx(np.std(aucs, ddof=1)) and means["n"] == 4
    assert wide_tables(read_rows(str(uri)))["coil100"].loc["full", "mean"] == \
        f"{np.mean(aucs):.3f} ± {np.std(aucs, ddof=1):.3f} (4)"


def test_differing_hyperparameter_is_never_averaged(results: Path) -> None:
    rng = np.random.default_rng(1)
    for cls in CLASSES:
        _write(results, rng, 0.1, dataset="digits", normal_class=cls, seed=0, variant="full", epochs=5)
    rows = read_rows(str(results))
    summary = summary_table(rows)
    labels = set(summary["label"])
    assert {"full (epochs=2)", "full (epochs=5)", "base (epochs=2)"} <= labels
    five = summary[summary["label"] == "full (epochs=5)"]
    assert list(five["mean"]) == pytest.approx([0.1] * 3) and list(five["n"]) == [1] * 3
    assert five["std"].isna().all()
    table = wide_tables(rows)["digits"]
    assert table.loc["full (epochs=5)", "0"] == "0.100 (1)"
    assert list(table.columns) == ["0", "1", "2", "mean"]


def test_paired_differences_match_scipy(results: Path) -> None:
    rows = read_rows(str(results))
    paired = paired_differences(rows).set_index("comparison")
    assert set(paired.index) == {"entropy − base", "full − base", "full − entropy"}
    piv = rows.pivot_table(index=["normal_class", "seed"], columns="variant", values="auc")
    diff = piv["full"] - piv["base"]
    got = paired.loc["full − base"]
    assert got["n_pairs"] == len(CLASSES) * len(SEEDS)
    assert got["mean_diff"] == pytest.approx(diff.mean())
    assert got["std_diff"] == pytest.approx(diff.std(ddof=1))
    assert got["wilcoxon_p"] == pytest.approx(wilcoxon(piv["full"], piv["base"]).pvalue)


def test_wilcoxon_undefined_cases() -> None:
    p, note = wilcoxon_p(np.array([0.7]), np.array([0.6]))
    assert np.isnan(p) and "1 pair" in note
    p, note = wilcoxon_p(np.array([0.7, 0.8]), np.array([0.7, 0.8]))
    assert np.isnan(p) and "zero" in note
    p, _ = wilcoxon_p(np.array([0.7, 0.9, 0.5]), np.array([0.6, 0.7, 0.6]))
    assert p == pytest.approx(wilcoxon([0.7, 0.9, 0.5], [0.6, 0.7, 0.6]).pvalue)


def test_roc_points_match_sklearn(results: Path) -> None:
    scores = read_scores(str(results))
    key = scores["key"].iloc[0]
    fpr, tpr = roc_points(scores, key)
    part = scores[scores["key"] == key]
    efpr, etpr, _ = roc_curve(part["label"], part["score"])
    np.testing.assert_allclose(fpr, efpr)
    np.testing.assert_allclose(tpr, etpr)
    with pytest.raises(ResultsError):
        roc_points(scores, "no-such-key")


def test_write_report_files(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "tables"
    report = write_report(str(results), str(out), plots=True)
    for name in ("digits.md", "digits.csv", "digits.tex", "ablation.md", "ablation.csv", "ablation.tex",
                 "summary.csv", "report.md", "digits_auc.png", "digits_roc.png"):
        assert (out / name).stat().st_size > 0, name
        assert str(out / name) in report.files
    for png in ("digits_auc.png", "digits_roc.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = read_rows(str(results))
    full0 = rows[(rows.variant == "full") & (rows.normal_class == 0)]["auc"]
    cell = f"{full0.mean():.3f} ± {full0.std(ddof=1):.3f} ({len(SEEDS)})"
    assert f"| full | {cell} |" in (out / "digits.md").read_text()
    tex = (out / "digits.tex").read_text()  # the compact form; n (the same in every cell) in the caption
    std = f"{full0.std(ddof=1):.3f}".removeprefix("0")
    assert f"{full0.mean():.3f}{{\\scriptsize$\\pm${std}}}" in tex
    assert f"n = {len(SEEDS)} seeds" in tex
    csv = pd.read_csv(out / "digits.csv", index_col=0)
    assert csv.loc["full", "0"] == cell
    pairs = len(CLASSES) * len(SEEDS)
    ablation_md = (out / "ablation.md").read_text()
    full_base = report.paired.set_index("comparison").loc["full − base", "mean_diff"]
    assert f"| digits: full − base | {full_base:+.4f} |" in ablation_md
    assert f"| {pairs} | " in ablation_md and "nan" not in ablation_md
    ablation = pd.read_csv(out / "ablation.csv")
    assert set(ablation["comparison"]) == {"entropy − base", "full − base", "full − entropy"}
    effects = pd.read_csv(out / "effects.csv").set_index("comparison")
    assert set(effects.index) == {"entropy − base", "full − base", "full − entropy"}  # cam never ran
    assert effects.loc["full − base", "effect"] == pytest.approx(full_base)  # every class has every seed
    assert effects.loc["full − base", "ci_low"] < full_base < effects.loc["full − base", "ci_high"]
    assert "| digits: full − base | " in (out / "effects.md").read_text()
    assert (out / "digits_forest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(pd.read_csv(out / "effects_per_class.csv")) == 3 * len(CLASSES)


def test_paper_rows_for_mnist(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    uri = tmp_path / "mnist"
    for seed in (0, 1):
        _write(uri, rng, 0.95 + 0.01 * seed, dataset="mnist", normal_class=0, seed=seed, variant="full")
    report = write_report(str(uri), plots=False)
    table = report.tables["mnist"]
    assert table.loc["paper: full (Tian et al.)", "0"] == "0.994"
    assert table.loc["paper: full (Tian et al.)", "mean"] == "0.967"
    assert table.loc["paper: OCSVM", "0"] == "0.988"
    assert table.loc["full", "0"].startswith("0.955 ± 0.007 (2)")
    assert "paper: OCSVM" in (uri / "tables" / "mnist.md").read_text()
    assert not any("cifar10" in lab for lab in table.index) and "paper T4: base" not in table.index
    assert not (uri / "tables" / "ablation.md").exists()  # one variant: nothing to pair


def test_empty_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match=str(tmp_path / "empty")):
        write_report(str(tmp_path / "empty"))
    assert main(["report", "--results", str(tmp_path / "empty")]) == 5


def test_cli_report(results: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cli-tables"
    assert main(["report", "--results", str(results), "--tables", str(out), "--no-plots"]) == 0
    assert (out / "digits.md").stat().st_size > 0 and not (out / "digits_auc.png").exists()
    assert "full − base" in capsys.readouterr().out


def test_file_uri(results: Path, tmp_path: Path) -> None:
    report = write_report(f"file://{results}", f"file://{tmp_path / 'uri-out'}", plots=False)
    assert (tmp_path / "uri-out" / "digits.csv").stat().st_size > 0
    assert str(tmp_path / "uri-out" / "digits.csv") in report.files


def test_each_row_of_ours_sits_above_the_papers_row_for_it(tmp_path: Path) -> None:
    """mnist: our full rows (two configs) are followed by the paper's full row; a pixel
    baseline carries no training config in its label, however the trials' epochs differ; the
    score mix labels the variants (it varies among them); the DAE, run at one configuration,
    carries none (the variants' epochs vary, its own do not)."""
    rng = np.random.default_rng(2)
    uri = tmp_path / "res"
    for epochs in (2, 5):
        lam = 0.0 if epochs == 2 else 0.9
        _write(uri, rng, 0.9, dataset="mnist", normal_class=0, seed=0, variant="full", epochs=epochs,
               score_lambda=lam)
        _write(uri, rng, 0.8, dataset="mnist", normal_class=0, seed=0, variant="base", epochs=epochs,
               score_lambda=lam)
    _write(uri, rng, 0.7, dataset="mnist", normal_class=0, seed=0, variant="ocsvm", epochs=3)
    _write(uri, rng, 0.6, dataset="mnist", normal_class=0, seed=0, variant="dae", epochs=5)
    labels = list(wide_tables(read_rows(str(uri)))["mnist"].index)
    assert "ours: DAE" in labels
    assert labels[:5] == ["base (epochs=2, score_lambda=0)", "base (epochs=5, score_lambda=0.9)",
                          "full (epochs=2, score_lambda=0)", "full (epochs=5, score_lambda=0.9)",
                          "paper: full (Tian et al.)"]
    assert labels[labels.index("ours: OCSVM") + 1] == "paper: OCSVM"
    assert not any(lab.startswith("ours: OCSVM (") for lab in labels)


def test_a_method_is_labelled_by_its_own_varying_knobs(tmp_path: Path) -> None:
    """A knob labels a method's rows only when it varies among that method's rows (all the
    variants of the paper's method together, so their configs stay comparable), not because
    another method of the dataset ran at another value."""
    rng = np.random.default_rng(3)
    uri = tmp_path / "res"
    for cls in (0, 1):
        for seed in (0, 1):
            for variant in ("full", "base"):
                _write(uri, rng, 0.9, dataset="mnist", normal_class=cls, seed=seed, variant=variant, epochs=5, nz=8)
            _write(uri, rng, 0.8, dataset="mnist", normal_class=cls, seed=seed, variant="dae", epochs=4, nz=32)
    rows = read_rows(str(uri))
    assert set(wide_tables(rows)["mnist"].index) >= {"full", "base", "ours: DAE"}
    paired = paired_differences(rows).set_index("comparison")
    assert paired.loc["full − base", "config"] == "" and paired.loc["full − base", "n_pairs"] == 4
    # a second DAE configuration labels the DAE rows, and only them
    _write(uri, rng, 0.7, dataset="mnist", normal_class=0, seed=0, variant="dae", epochs=8, nz=32)
    labels = set(wide_tables(read_rows(str(uri)))["mnist"].index)
    assert {"full", "base", "ours: DAE (epochs=4)", "ours: DAE (epochs=8)"} <= labels
    # full at a second nz: both variants of the method are labelled by nz, and full − base pairs like with like
    _write(uri, rng, 0.5, dataset="mnist", normal_class=0, seed=0, variant="full", epochs=5, nz=100)
    rows = read_rows(str(uri))
    labels = set(wide_tables(rows)["mnist"].index)
    assert {"full (nz=8)", "full (nz=100)", "base (nz=8)", "ours: DAE (epochs=4)"} <= labels
    paired = paired_differences(rows)
    assert list(paired["config"]) == ["nz=8"] and list(paired["n_pairs"]) == [4]


def test_report_says_when_rows_come_from_more_than_one_kind_of_cpu():
    from novelty.report.write import cpu_kinds_note

    one = pd.DataFrame({"cpu_model": ["AMD EPYC"] * 2, "cpu_capability": ["AVX512"] * 2, "threads": [1, 1]})
    assert cpu_kinds_note(one) == ""
    assert cpu_kinds_note(one.drop(columns=["cpu_model", "cpu_capability", "threads"])) == ""  # older rows only
    mixed = pd.concat([one, pd.DataFrame({"cpu_model": ["Intel Xeon", None], "cpu_capability": ["AVX2", None],
                                          "threads": [2, None]})], ignore_index=True)
    note = cpu_kinds_note(mixed)
    assert "AMD EPYC (AVX512, 1 thread(s)): 2 row(s)" in note and "Intel Xeon (AVX2, 2 thread(s)): 1 row(s)" in note
    assert "not recorded: 1 row(s)" in note
    # a GPU's rows added to a folder of CPU rows (same host CPU, same threads) are named as such
    on_gpu = pd.concat([one.assign(device_name="cpu"),
                        one.assign(device_name=["NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"])], ignore_index=True)
    note = cpu_kinds_note(on_gpu)
    assert "GPU NVIDIA H100 80GB HBM3: 2 row(s)" in note and "AMD EPYC (AVX512, 1 thread(s)): 2 row(s)" in note
    assert cpu_kinds_note(one.assign(device_name="cpu")) == ""
