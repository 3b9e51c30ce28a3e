"""SIGKILL or SIGTERM the sweep driver mid-sweep, rerun the same command: the table equals an
uninterrupted run's; SIGTERM (Slurm's time limit, scancel) ends it with one line and exit 143."""
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from novelty.report.tables import summary_table
from novelty.store.results import read_rows

SWEEP_FILE = '''
from novelty.sweep.grid import Sweep
from novelty.sweep.launch import main

SWEEP = Sweep(
    name="killme",
    # 2 classes x 1 seed x 2 variants = 4 trials
    grid={"normal_class": [0, 1], "seed": [0], "variant": ["base", "full"]},
    fixed={"dataset": "digits", "epochs": 2},
    cpus_per_trial=1,
)

if __name__ == "__main__":
    raise SystemExit(main(SWEEP))
'''


def _driver(sweep_file, results):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    return subprocess.Popen([sys.executable, str(sweep_file), "--results", str(results), "--max-concurrent", "1",
                             "--ray-address", "local", "--no-report"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)


def _kill_tree(proc):
    """SIGKILL the driver, whatever stayed in its session (Ray's daemons) and its children; a no-op
    for what already ended."""
    try:
        family = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and whatever stayed in its session
    except ProcessLookupError:
        pass
    for pid in family:  # and Ray's daemons, wherever they went
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=60)


def _table(results):
    cols = ["dataset", "variant", "normal_class", "mean", "n"]
    return summary_table(read_rows(str(results))).sort_values(cols[:3]).reset_index(drop=True)[cols]


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep") / "killme.py"
    path.write_text(SWEEP_FILE)
    return path


@pytest.fixture(scope="module")
def whole(sweep_file):
    """The uninterrupted run's table: each of the sweep file's trials run from start to end with
    the options the driver hands its trials (run_trial, as the trainable calls it), here, without
    a second driver and Ray of its own to start."""
    import torch

    from novelty.sweep.grid import SweepOptions, load_sweep, trial_resources
    from novelty.trial.run import run_trial

    results = sweep_file.parent / "whole"
    sweep = load_sweep(str(sweep_file))
    res = trial_resources(sweep, have_gpu=False)
    opts = SweepOptions(results=str(results))
    run = opts.run_options(sweep, device=res.device, threads=res.threads)
    threads = torch.get_num_threads()
    try:
        for cfg in sweep.trials(opts):
            run_trial(cfg, run)
    finally:
        torch.set_num_threads(threads)  # run_trial set the sweep's; later tests get this process's back
    return _table(results)


ROW_WAIT_S = 600


def _start_and_wait_for_a_row(sweep_file, results):
    """The driver, running, with at least one trial's row written (and not all four): else the
    test fails, and the driver and its Ray are killed first."""
    p = _driver(sweep_file, results)
    deadline = time.time() + ROW_WAIT_S
    while time.time() < deadline and p.poll() is None and not list((results / "rows").glob("*.parquet")):
        time.sleep(0.2)
    rows = list((results / "rows").glob("*.parquet"))
    if p.poll() is None and rows:
        return p
    ended = p.poll() is not None
    _kill_tree(p)
    out = p.stdout.read() if p.stdout else ""
    pytest.fail(("the driver ended before it could be killed" if ended else
                 f"no trial wrote a row in {ROW_WAIT_S} s") + f" ({len(rows)} rows):\n{out[-3000:]}")


def _rerun_and_compare(sweep_file, results, done_before, whole):
    p = _driver(sweep_file, results)
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out[-3000:]
    assert f"{len(done_before)} already have rows, {4 - len(done_before)} to run" in out
    after = {f.name: f.stat().st_mtime_ns for f in (results / "rows").glob("*.parquet")}
    assert {k: after[k] for k in done_before} == done_before  # finished trials were not run again
    rows = read_rows(str(results))
    assert len(rows) == 4 and rows["key"].is_unique
    table = _table(results)
    assert table.equals(whole), (table, whole)


def test_killed_driver_resumes_to_the_same_table(sweep_file, whole, tmp_path):
    killed = tmp_path / "killed"
    _kill_tree(_start_and_wait_for_a_row(sweep_file, killed))
    done_before = {f.name: f.stat().st_mtime_ns for f in (killed / "rows").glob("*.parquet")}
    assert 1 <= len(done_before) < 4
    _rerun_and_compare(sweep_file, killed, done_before, whole)


def test_sigterm_stops_the_driver_in_one_line(sweep_file, tmp_path):
    """(That the rerun then finishes to the same table is the SIGKILL test's: a SIGTERM leaves less.)"""
    results = tmp_path / "termed"
    p = _start_and_wait_for_a_row(sweep_file, results)
    p.send_signal(signal.SIGTERM)  # the driver alone, as scancel's first signal reaches a batch script
    try:
        out, _ = p.communicate(timeout=300)
    finally:
        _kill_tree(p)  # whatever of its Ray outlived it (nothing, when it stops cleanly)
    done_before = {f.name: f.stat().st_mtime_ns for f in (results / "rows").glob("*.parquet")}
    assert p.returncode == 143, out[-3000:]
    assert "SIGTERM received" not in out and "Traceback" not in out  # no C++ stack dump, no Python one
    lines = [ln for ln in out.splitlines() if "stopped by SIGTERM" in ln]
    assert len(done_before) >= 1  # a row existed before the signal, and the summary counts it
    assert len(lines) == 1 and f"{len(done_before)} of 4 trials have rows" in lines[0], out[-3000:]
    assert "rerun the same command" in lines[0]
