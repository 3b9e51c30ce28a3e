"""A DDP trial (2 gloo ranks on CPU) inside Ray Tune gives the 1-rank result, reproducibly.

The trial's global batch is split across ranks (novelty.loop, novelty.distributed), so two
ranks end close to one rank with the same `batch_size` (not equal: BatchNorm sees half
batches; the tolerances were measured), and two runs of the same 2-rank trial agree
exactly (CPU is deterministic).
"""
from __future__ import annotations

import shutil
import tempfile

import pytest
import ray

from novelty.config import RunOptions, TrialConfig
from novelty.grid import Sweep, SweepOptions
from novelty.results import read_rows
from novelty.sweep import run_sweep
from novelty.trial import run_trial

from conftest import DDP_PINNED, digits_fingerprint

TRIAL = {"dataset": "digits", "normal_class": 0, "seed": 0, "variant": "full", "epochs": 1, "batch_size": 64,
         **DDP_PINNED}


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray per module: 2 CPUs, no dashboard, small object store, token auth off
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
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def _ddp_sweep_auc(results: str, cache: str) -> float:
    sweep = Sweep(name="ddp-test", fixed=TRIAL, cpus_per_trial=2, ranks_per_trial=2, max_failures=0)
    summary = run_sweep(sweep, SweepOptions(results=results, cache_dir=cache, report=False))
    assert summary.ran == 1 and not summary.failed, summary
    rows = read_rows(results)
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["key"] == TrialConfig(**TRIAL).key(digits_fingerprint())
    assert row["world_size"] == 2
    assert row["batch_size"] == 64
    return float(row["auc"])


def test_two_rank_trial_in_tune_matches_one_rank(ray_cluster, cache, tmp_path):
    cfg = TrialConfig(**TRIAL)
    single = run_trial(cfg, RunOptions(results=str(tmp_path / "one"), cache_dir=cache, device="cpu", threads=1,
                                       progress=False), checkpoint=None)
    assert single["world_size"] == 1

    first = _ddp_sweep_auc(str(tmp_path / "ddp-a"), cache)
    second = _ddp_sweep_auc(str(tmp_path / "ddp-b"), cache)

    assert first == second, "two runs of the same 2-rank trial differ"
    assert abs(first - single["auc"]) <= 0.01, (first, single["auc"])
