"""bench/gpu_check.py, the device check, runs as `make gpu-check` would: from the checkout with
PYTHONPATH=., installing nothing. Here only its CPU smoke mode (`--device cpu --tiny`) can run;
on a GPU machine the same command without those options is the check itself."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

CHECK = [sys.executable, str(REPO / "bench" / "gpu_check.py")]


def _run(args: list[str], timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}  # OMP_WAIT_POLICY: conftest
    return subprocess.run([*CHECK, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


def test_tiny_cpu_check_prints_every_figure(tmp_path):
    """The check's CPU smoke mode, its trials packed through Ray Tune (the path it takes on CUDA)."""
    done = _run(["--device", "cpu", "--tiny", "--at-once", "2", "--pack", "tune",
                 "--data-root", str(tmp_path / "no-data"), "--out", str(tmp_path / "check.json")], timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert json.loads((tmp_path / "check.json").read_text()) == report
    assert {"torch", "device", "device_name", "data", "trial_twice", "selfsup", "train_step", "packed", "projection",
            "wall_s"} <= set(report)
    assert report["data"]["kind"] == "synthetic"  # no CIFAR-10 under the data root: it says so
    twice = report["trial_twice"]
    assert len(twice["aucs"]) == 2 and all(0.0 <= a <= 1.0 for a in twice["aucs"])
    assert twice["auc_difference"] == abs(twice["aucs"][0] - twice["aucs"][1]) == 0.0  # CPU: deterministic
    assert twice["config"]["preprocess"] == "gcn" and twice["config"]["epochs"] == 1  # CIFAR-10's preset
    selfsup = report["selfsup"]  # the methods beyond the paper, at their sweep presets
    assert set(selfsup) == {"transforms", "deepsvdd"} and all(0.0 <= r["auc"] <= 1.0 for r in selfsup.values())
    assert selfsup["transforms"]["config"]["tf_set"] == "geom72" and selfsup["deepsvdd"]["config"]["epochs"] == 1
    rates = report["train_step"]["images_per_s"]
    assert len(rates) == 2 and all(r > 0 for r in rates.values())
    packed = report["packed"]
    assert packed["how"] == "tune" and packed["trials"] == 4 and packed["devices"] == ["cpu"]
    # 4 trials, 2 worker processes: two trials ran at the same time (from the trials' own timestamps)
    assert packed["max_seen_at_once"] == 2
    assert packed["trials_per_minute"] == pytest.approx(4 / packed["span_s"] * 60, rel=1e-3)  # span_s: rounded
    projection = report["projection"]  # the ablation grid's trials at the measured rate
    assert projection["minutes_on_one_device"] == pytest.approx(
        projection["trials"] * packed["span_s"] / 4 / 60, rel=1e-3)


def test_asking_for_cuda_where_there_is_none_says_so():
    done = _run(["--device", "cuda"], timeout=300)
    assert done.returncode == 2
    assert "sees no CUDA device" in json.loads(done.stdout)["error"]


def _gpu_check_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "bench" / "gpu_check.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    return check


def test_a_failing_step_is_recorded_and_the_json_still_comes_out(tmp_path, monkeypatch, capsys):
    """One step raising (here the first trial, as a GPU run's out-of-memory would) is that step's
    "error" in the JSON, the steps after it still run, the JSON is printed and written, exit 1;
    a packed step whose trials all failed leaves the projection an error, not a crash."""
    check = _gpu_check_module()

    def boom(*args):
        raise RuntimeError("CUDA out of memory (injected)")

    monkeypatch.setattr(check, "trial_twice", boom)
    monkeypatch.setattr(check, "selfsup", lambda *a: {"transforms": {"auc": 0.5}})
    monkeypatch.setattr(check, "train_step", lambda *a, **k: {"images_per_s": {"8": 1.0}})
    monkeypatch.setattr(check, "packed", lambda *a: boom())
    rc = check.main(["--device", "cpu", "--tiny", "--data-root", str(tmp_path / "none"),
                     "--out", str(tmp_path / "c.json")])
    report = json.loads(capsys.readouterr().out)
    assert rc == 1 and json.loads((tmp_path / "c.json").read_text()) == report
    assert report["trial_twice"]["error"] == "RuntimeError: CUDA out of memory (injected)"
    assert report["selfsup"] == {"transforms": {"auc": 0.5}} and report["train_step"]["images_per_s"] == {"8": 1.0}
    assert "packed step failed" in report["projection"]["error"] and report["data"]["kind"] == "synthetic"
    assert check._span([]) == (0.0, 0)


def test_the_most_trials_at_once_is_counted_from_their_times():
    """gpu_check._span: the span from the first start to the last end, and the most trials whose
    [started_at, finished_at) overlap; trials one after the other count 1 however many there are."""
    import datetime as dt

    check = _gpu_check_module()
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)

    def rows(*spans):
        return [{"started_at": (t0 + dt.timedelta(seconds=a)).isoformat(),
                 "finished_at": (t0 + dt.timedelta(seconds=b)).isoformat()} for a, b in spans]

    assert check._span(rows((0, 10), (10, 20), (20, 30))) == (30.0, 1)  # one after the other
    assert check._span(rows((0, 10), (5, 15), (12, 20))) == (20.0, 2)
    assert check._span(rows((0, 30), (1, 29), (2, 3), (4, 28))) == (30.0, 3)
