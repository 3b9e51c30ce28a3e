"""The Ray Tune driver on a real local Ray (one start for the module): one row per trial,
skip-by-key, retries that resume, and a DDP trial (2 gloo ranks on CPU) that gives the 1-rank
result reproducibly.

The trial's global batch is split across ranks (novelty.trial.loop, novelty.trial.distributed), so two ranks
end close to one rank with the same `batch_size` (not equal: BatchNorm sees half batches; the
tolerance was measured), and two runs of the same 2-rank trial agree exactly (CPU is deterministic).
"""
import shutil
import tempfile

import pandas as pd
import pytest
import ray

from novelty.config import RunOptions, TrialConfig
from novelty.sweep.grid import Sweep, SweepOptions
from novelty.report.tables import summary_table
from novelty.store.results import delete_trial, existing_keys, read_rows
from novelty.sweep.grid import trial_labels
from novelty.sweep.driver import run_sweep
from novelty.trial.run import run_trial

from conftest import DDP_PINNED, digits_fingerprint

DIGITS = digits_fingerprint()

TINY = Sweep(
    name="tiny",
    # 2 classes x 1 seed x 2 variants = 4 trials
    grid={"normal_class": [0, 1], "seed": [0], "variant": ["base", "full"]},
    fixed={"dataset": "digits", "epochs": 2},
    cpus_per_trial=1,
    max_failures=2,
)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray for the module: 2 CPUs, no dashboard, small object store, token auth off
    (tests only), its own temp dir so it never joins another Ray on this machine."""
    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_AUTH_MODE", "disabled")
    for var in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        mp.delenv(var, raising=False)
    temp = tempfile.mkdtemp(prefix="ray-t", dir="/tmp")  # short: Ray's unix sockets live here
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2,
             log_to_driver=False, _temp_dir=temp)
    try:
        yield
    finally:
        ray.shutdown()
        mp.undo()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    opts = SweepOptions(results=str(out), report=False)
    summary = run_sweep(TINY, opts)
    return out, opts, summary


def test_one_row_per_trial(swept):
    out, opts, summary = swept
    rows = read_rows(str(out))
    assert summary.ran == 4 and summary.skipped == 0 and not summary.failed
    assert len(rows) == 4 and rows["key"].is_unique
    assert set(rows["key"]) == {t.key(DIGITS) for t in TINY.trials()}
    assert set(rows["variant"]) == {"base", "full"} and (rows["sweep"] == "tiny").all()
    assert not list(out.glob("rows/.tmp*")) and not list(out.glob("checkpoints/*/*.pt"))


def test_sweep_row_equals_plain_trial(swept, tmp_path):
    out, _, _ = swept
    cfg = TINY.trials()[3]
    # the thread count the sweep gave the trial (cpus_per_trial 1): bits are equal only at equal threads
    plain = run_trial(cfg, RunOptions(results=str(tmp_path), progress=False, threads=1))
    row = read_rows(str(out)).set_index("key").loc[cfg.key(DIGITS)]
    assert row["auc"] == plain["auc"]


def test_rerun_runs_nothing_and_deleted_row_reruns_alone(swept):
    out, opts, _ = swept
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "rows").iterdir()}
    again = run_sweep(TINY, opts)
    assert again.ran == 0 and again.skipped == 4
    assert {p.name: p.stat().st_mtime_ns for p in (out / "rows").iterdir()} == mtimes
    victim = TINY.trials()[1].key(DIGITS)
    before = read_rows(str(out)).set_index("key").loc[victim, "auc"]
    delete_trial(str(out), victim)
    assert victim not in existing_keys(str(out))
    third = run_sweep(TINY, opts)
    assert third.ran == 1 and third.skipped == 3
    after = {p.name: p.stat().st_mtime_ns for p in (out / "rows").iterdir()}
    assert {k: v for k, v in after.items() if k != f"{victim}.parquet"} == \
        {k: v for k, v in mtimes.items() if k != f"{victim}.parquet"}
    rows = read_rows(str(out)).set_index("key")
    assert len(rows) == 4 and rows.loc[victim, "auc"] == before  # deterministic rerun


def test_failed_trial_is_retried_from_its_checkpoint(tmp_path, flaky_method):
    flaky = Sweep(name="flaky", grid={"normal_class": [1], "variant": ["flaky"]},
                  fixed={"dataset": "digits", "epochs": 2}, max_failures=1)
    res = tmp_path / "res"
    summary = run_sweep(flaky, SweepOptions(results=str(res), report=False))
    assert (flaky_method / "c1-s0").exists()  # it did fail once, as epoch 2 began
    assert summary.ran == 1 and not summary.failed
    row = read_rows(str(res)).iloc[0]
    assert row["epochs_run"] == 2 and row["resumed_from_epoch"] == 1  # not restarted from scratch
    # resumed from the epoch-1 checkpoint, it ends exactly where an uninterrupted run ends (the
    # marker is there now: this run does not fail)
    plain = run_trial(flaky.trials()[0], RunOptions(results=str(tmp_path / "plain"), progress=False, threads=1))
    assert row["key"] == plain["key"] and row["auc"] == plain["auc"]


def test_report_numbers_equal_hand_groupby(swept):
    out, _, _ = swept
    rows = read_rows(str(out))
    table = summary_table(rows)
    hand = rows.groupby(["variant", "normal_class"])["auc"].agg(["mean", "count"]).reset_index()
    merged = table.merge(hand, on=["variant", "normal_class"])
    assert len(merged) == 4
    assert (merged["mean_x"] - merged["mean_y"]).abs().max() < 1e-12
    assert (merged["n"] == merged["count"]).all()


def test_trial_labels_are_short_unique_and_map_back():
    grid = Sweep(name="labels", grid={"normal_class": [0, 1], "variant": ["entropy"], "epochs": [2, 3]},
                 fixed={"dataset": "digits"}).trials() + [TrialConfig(normal_class=9, seed=19, variant="entropy")]
    labels = trial_labels(grid, {"digits": DIGITS})
    assert len(labels) == len(grid)  # epochs alone tell four of them apart: the key is added there
    assert "c9-entropy-s19" in labels and all(len(lab) <= 23 for lab in labels)
    assert {TrialConfig(**p["config"]).key(DIGITS) for p in labels.values()} == {t.key(DIGITS) for t in grid}
    assert {p["key"] for p in labels.values()} == {t.key(DIGITS) for t in grid}


def test_baselines_through_tune_beside_the_papers_rows(fake_mnist, tmp_path):
    """ocsvm / kde / dae / vae as grid values of a Ray Tune sweep: one valid row each, and the
    report puts each one directly above the paper's row for the same method."""
    from novelty.report.write import write_report

    sweep = Sweep(name="baselines", grid={"variant": ["ocsvm", "kde", "dae", "vae"], "normal_class": [1]},
                  fixed={"dataset": "mnist", "epochs": 1, "batch_size": 8, "nz": 8}, max_failures=0)
    out = tmp_path / "res"
    opts = SweepOptions(results=str(out), data_root=str(fake_mnist), cache_dir=str(tmp_path / "c"), report=False)
    summary = run_sweep(sweep, opts)
    assert summary.ran == 4 and not summary.failed
    rows = read_rows(str(out))
    assert sorted(rows["method"]) == ["dae", "kde", "ocsvm", "vae"]
    assert rows["auc"].between(0, 1).all() and (rows["n_test"] == 60).all()
    table = write_report(str(out), plots=False).tables["mnist"]
    labels = list(table.index)
    for name in ("OCSVM", "KDE", "DAE", "VAE"):
        i = labels.index(f"ours: {name}")
        assert labels[i + 1] == f"paper: {name}"
        assert table.loc[f"paper: {name}", "1"] != "" and table.loc[f"ours: {name}", "1"].endswith("(1)")


def test_a_method_from_a_test_file_runs_in_a_tune_sweep(tmp_path, toy_method):
    """The toy method (tests/conftest.py), registered in this process and nowhere else, runs as a
    grid value of a Ray Tune sweep (the driver ships it to the workers by value: they cannot import
    a test's module) and lands in the report. A sweep of built-in methods ships nothing."""
    from novelty.report.write import write_report

    sweep = Sweep(name="toy", grid={"variant": ["toy"], "normal_class": [0, 1]}, fixed={"dataset": "digits"},
                  max_failures=0)
    summary = run_sweep(sweep, SweepOptions(results=str(tmp_path / "res"), report=False))
    assert summary.ran == 2 and not summary.failed
    rows = read_rows(str(tmp_path / "res"))
    assert list(rows["method"]) == ["toy", "toy"] and rows["auc"].between(0, 1).all()
    assert "ours: toy" in write_report(str(tmp_path / "res"), plots=False).tables["digits"].index
    from novelty.sweep.driver import _plugins

    assert _plugins(TINY.trials()) == ()


def test_the_methods_for_natural_images_run_in_a_tune_sweep_as_in_a_plain_trial(tmp_path):
    """transforms and deepsvdd as grid values, each method's own knobs in one grid (each left out
    of the other's trials): 2 trials through Ray Tune, each row the plain trial's, bit for bit."""
    sweep = Sweep(name="selfsup", grid={"variant": ["transforms", "deepsvdd"], "normal_class": [2]},
                  fixed={"dataset": "digits", "epochs": 2, "batch_size": 16, "tf_set": "rot4", "tf_widen": 1,
                         "svdd_objective": "soft-boundary"}, max_failures=0)
    summary = run_sweep(sweep, SweepOptions(results=str(tmp_path / "res"), report=False))
    assert summary.ran == 2 and not summary.failed
    rows = read_rows(str(tmp_path / "res")).set_index("variant")
    assert rows.loc["transforms", "tf_set"] == "rot4" and pd.isna(rows.loc["deepsvdd", "tf_set"])
    assert rows.loc["deepsvdd", "svdd_objective"] == "soft-boundary" and rows.loc["deepsvdd", "svdd_radius"] > 0
    for cfg in sweep.trials():
        plain = run_trial(cfg, RunOptions(results=str(tmp_path / "plain"), progress=False, threads=1))
        assert rows.loc[cfg.variant, "auc"] == plain["auc"] and rows.loc[cfg.variant, "key"] == plain["key"]


def test_a_trial_wider_than_any_node_is_refused_before_tune_schedules_it(tmp_path):
    """16 DDP ranks a trial on this 2-CPU Ray: one line naming the fix, nothing scheduled (Tune
    would wait for ever for a bundle no node can hold)."""
    from novelty.errors import ConfigError

    sweep = Sweep(name="wide", fixed={"dataset": "digits", "epochs": 1}, ranks_per_trial=16, max_failures=0)
    with pytest.raises(ConfigError, match=r"needs 16 CPU\(s\) and 0 GPU\(s\) on one node \(16 rank\(s\)\), but "
                                          r"the largest node of this cluster has 2 CPU\(s\) .* --ranks-per-trial"):
        run_sweep(sweep, SweepOptions(results=str(tmp_path / "res"), report=False))
    assert not list((tmp_path / "res").glob("rows/*.parquet")) and not (tmp_path / "res" / "_ray").exists()


def test_trial_resources_follow_the_sweep_and_the_cluster():
    from novelty.config import ConfigError
    from novelty.sweep.grid import trial_resources

    def res(have_gpu, **kw):
        r = trial_resources(Sweep(name="r", **kw), have_gpu)
        return r.cpus, r.gpus, r.ranks, r.device, r.threads

    # a CPU DDP sweep on a cluster that has GPUs takes none (it once asked for one per rank and waited)
    assert res(True, cpus_per_trial=2, ranks_per_trial=2) == (2, 0, 2, "cpu", 1)
    assert res(True, cpus_per_trial=4, gpus_per_trial=0.25, ranks_per_trial=2) == (4, 2, 2, "cuda", 2)
    assert res(True, cpus_per_trial=2, gpus_per_trial=0.25) == (2, 0.25, 1, "cuda", 2)
    assert res(False, cpus_per_trial=2, gpus_per_trial=0.25) == (2, 0, 1, "cpu", 2)
    with pytest.raises(ConfigError, match="ranks_per_trial"):
        res(True, gpus_per_trial=2)


DDP_TRIAL = {"dataset": "digits", "normal_class": 0, "seed": 0, "variant": "full", "epochs": 1, "batch_size": 64,
             **DDP_PINNED}


def _ddp_sweep_auc(results: str, cache: str) -> float:
    sweep = Sweep(name="ddp-test", fixed=DDP_TRIAL, cpus_per_trial=2, ranks_per_trial=2, max_failures=0)
    summary = run_sweep(sweep, SweepOptions(results=results, cache_dir=cache, report=False))
    assert summary.ran == 1 and not summary.failed, summary
    rows = read_rows(results)
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["key"] == TrialConfig(**DDP_TRIAL).key(DIGITS)
    assert row["world_size"] == 2
    assert row["batch_size"] == 64
    return float(row["auc"])


def test_two_rank_trial_in_tune_matches_one_rank(tmp_path):
    cfg, cache = TrialConfig(**DDP_TRIAL), str(tmp_path / "cache")
    single = run_trial(cfg, RunOptions(results=str(tmp_path / "one"), cache_dir=cache, device="cpu", threads=1,
                                       progress=False), checkpoint=None)
    assert single["world_size"] == 1

    first = _ddp_sweep_auc(str(tmp_path / "ddp-a"), cache)
    second = _ddp_sweep_auc(str(tmp_path / "ddp-b"), cache)

    assert first == second, "two runs of the same 2-rank trial differ"
    assert abs(first - single["auc"]) <= 0.01, (first, single["auc"])
