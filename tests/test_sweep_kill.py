"""SIGKILL the sweep driver mid-sweep, rerun the same command: the table equals an uninterrupted run's."""
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from novelty.tables import summary_table
from novelty.results import read_rows

SWEEP_FILE = '''
from novelty.grid import Sweep
from novelty.launch import main

SWEEP = Sweep(
    name="killme",
    # 2 classes x 1 seed x 2 variants = 4 trials
    grid={"normal_class": [0, 1], "seed": [0], "variant": ["base", "full"]},
    fixed={"dataset": "digits", "epochs": 3},
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
    family = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and whatever stayed in its session
    for pid in family:  # and Ray's daemons, wherever they went
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=60)


def test_killed_driver_resumes_to_the_same_table(tmp_path):
    sweep_file = tmp_path / "killme.py"
    sweep_file.write_text(SWEEP_FILE)
    whole, killed = tmp_path / "whole", tmp_path / "killed"

    p = _driver(sweep_file, whole)
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out[-3000:]

    p = _driver(sweep_file, killed)
    deadline = time.time() + 600
    while time.time() < deadline and p.poll() is None:
        if len(list((killed / "rows").glob("*.parquet"))) >= 1:
            break
        time.sleep(0.2)
    assert p.poll() is None, "the driver finished before it could be killed"
    _kill_tree(p)
    done_before = {f.name: f.stat().st_mtime_ns for f in (killed / "rows").glob("*.parquet")}
    assert 1 <= len(done_before) < 4

    p = _driver(sweep_file, killed)
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out[-3000:]
    assert f"{len(done_before)} already have rows, {4 - len(done_before)} to run" in out
    after = {f.name: f.stat().st_mtime_ns for f in (killed / "rows").glob("*.parquet")}
    assert {k: after[k] for k in done_before} == done_before  # finished trials were not run again

    a, b = read_rows(str(whole)), read_rows(str(killed))
    assert len(b) == 4 and b["key"].is_unique
    cols = ["dataset", "variant", "normal_class", "mean", "n"]
    ta = summary_table(a).sort_values(cols[:3]).reset_index(drop=True)[cols]
    tb = summary_table(b).sort_values(cols[:3]).reset_index(drop=True)[cols]
    assert ta.equals(tb), (ta, tb)
