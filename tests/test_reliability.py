"""A result is never silently wrong; a bad input ends as one line; checkpoints cannot run code.

Every case goes through the real CLI, in a process of its own (run_cli: forked from a warm
interpreter, tests/warm_cli.py, which test_cli shows gives a training trial's output, row and
scores as a cold `python -m novelty.cli` does), and checks the exit status, the last line of
stderr, the absence of a traceback, and the files left behind.
"""
from __future__ import annotations

import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch

from novelty.store.results import read_rows

from conftest import image_tree, run_cli

REPO = Path(__file__).resolve().parents[1]


def assert_one_line_failure(p, needle: str) -> None:
    assert p.returncode != 0, p.stdout + p.stderr
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert lines and needle in lines[-1], p.stderr[-3000:]
    assert "Traceback" not in p.stderr, p.stderr[-3000:]


def _no_partial_files(root: Path) -> None:
    leftovers = [p for p in root.rglob("*") if ".tmp" in p.name]
    assert not leftovers, leftovers


def _train(out, *args: str):
    return run_cli("train", "--epochs", "1", "--batch-size", "8", "--results", str(out), "--no-progress", *args)


def test_key_covers_the_data(tmp_path):
    """Two trees under the same dataset name, class, seed and variant are two trials: two rows,
    and the second never resumes from the first one's checkpoint."""
    from novelty.config import RunOptions, TrialConfig
    from novelty.data.load import load_imageset
    from novelty.trial.run import run_trial

    from conftest import Killed, die_after

    a, b = image_tree(tmp_path / "a", 12, 0), image_tree(tmp_path / "b", 12, 30)
    out = tmp_path / "res"
    common = ["--dataset", "imagefolder", "--cache-dir", str(tmp_path / "cache")]
    # a real checkpoint of an interrupted 2-epoch run on tree a (epoch 1 of 2 done), under a's key:
    # a trial that read it would resume from epoch 1
    cfg = TrialConfig(dataset="imagefolder", epochs=2, batch_size=8)
    with pytest.raises(Killed):
        run_trial(cfg, RunOptions(data_root=str(a), cache_dir=str(tmp_path / "cache"), results=str(out),
                                  progress=False), on_epoch=die_after(1))
    assert len(list((out / "checkpoints").glob("*/checkpoint.pt"))) == 1
    p = _train(out, *common, "--data-root", str(b), "--epochs", "2")
    assert p.returncode == 0, p.stderr
    assert read_rows(str(out))["resumed_from_epoch"].tolist() == [0]  # b trained from scratch
    assert _train(out, *common, "--data-root", str(a), "--epochs", "2").returncode == 0
    rows = read_rows(str(out)).set_index("data_root")
    assert len(rows) == 2 and rows["key"].is_unique
    assert rows.loc[str(a), "resumed_from_epoch"] == 1  # the checkpoint was real: a's own trial resumed from it
    assert set(rows["data_fingerprint"]) == {load_imageset("imagefolder", str(t), "").fingerprint for t in (a, b)}
    # the same tree copied elsewhere is the same data: the same key
    c = tmp_path / "copy"
    shutil.copytree(a, c)
    assert _train(out, *common, "--data-root", str(c), "--epochs", "2").returncode == 0
    assert len(read_rows(str(out))) == 2


def test_too_little_data_is_an_error_not_a_row(tmp_path):
    tree = image_tree(tmp_path / "tree", 1, 0)  # one training image per class: no batch of 2
    out = tmp_path / "res"
    p = _train(out, "--dataset", "imagefolder", "--data-root", str(tree), "--val-fraction", "0",
               "--cache-dir", str(tmp_path / "cache"))
    assert_one_line_failure(p, "has 1 training image(s)")
    assert not list(out.rglob("*.parquet"))


class _Payload:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory) -> Path:
    """One finished trial's results folder (class 2), for the bad-checkpoint cases to copy."""
    out = tmp_path_factory.mktemp("once") / "res"
    first = _train(out, "--normal-class", "2")
    assert first.returncode == 0, first.stderr
    return out


@pytest.mark.parametrize("content", ["pickle", "truncated", "empty"])
def test_bad_checkpoint_never_runs_code_and_restarts(tmp_path, content, trained_once):
    out = tmp_path / "res"
    shutil.copytree(trained_once, out)
    key = read_rows(str(out))["key"].iloc[0]
    shutil.rmtree(out / "rows")
    marker = tmp_path / "pwned"
    ckpt = out / "checkpoints" / key / "checkpoint.pt"
    ckpt.parent.mkdir(parents=True)
    if content == "pickle":
        torch.save({"key": key, "epoch": 0, "evil": _Payload(str(marker))}, ckpt, pickle_module=pickle)
    elif content == "truncated":
        torch.save({"key": key, "epoch": 0, "w": torch.zeros(1000)}, ckpt)
        ckpt.write_bytes(ckpt.read_bytes()[:300])
    else:
        ckpt.write_bytes(b"")
    p = _train(out, "--normal-class", "2")
    assert p.returncode == 0, p.stderr
    assert not marker.exists()  # the payload did not run
    assert "is unreadable" in p.stdout + p.stderr and "from scratch" in p.stdout + p.stderr
    rows = read_rows(str(out))
    assert len(rows) == 1 and rows["resumed_from_epoch"].iloc[0] == 0


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MiB tmpfs (mounted as root, as CI runs): far too small for a ~33 MB checkpoint."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        why = "mounting a tmpfs needs root"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"{why}: under CI the full-disk test must run (run .ci/run as root)")
        pytest.skip(f"{why} (CI runs as root, where this test runs)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_full_disk(tmp_path, tiny_disk):
    keep = tiny_disk / "earlier.txt"
    keep.write_text("written before")
    p = _train(tiny_disk / "res", "--epochs", "2")
    assert_one_line_failure(p, "cannot write the checkpoint")
    assert "MB free there" in p.stderr
    _no_partial_files(tiny_disk)
    assert keep.read_text() == "written before"
    # the checkpoint elsewhere: the row and the scores (a few KB) fit
    p = _train(tiny_disk / "res", "--checkpoint-dir", str(tmp_path / "ck"))
    assert p.returncode == 0, p.stderr
    assert len(read_rows(str(tiny_disk / "res"))) == 1
    # a disk that fills while the trial trains (once its epoch-1 checkpoint is written elsewhere):
    # its results cannot be written, said in one line, and no partial file stays
    filled = threading.Event()

    def fill_when_training():
        while not list((tmp_path / "ck2").glob("*/checkpoint.pt")):
            time.sleep(0.05)
        try:
            with open(tiny_disk / "filler", "wb", buffering=0) as fh:
                while True:
                    fh.write(b"\0" * 4096)
        except OSError:  # ENOSPC: the disk is full
            filled.set()

    filler = threading.Thread(target=fill_when_training, daemon=True)
    filler.start()
    p = _train(tiny_disk / "res2", "--checkpoint-dir", str(tmp_path / "ck2"), "--epochs", "3")
    assert filled.is_set()
    assert_one_line_failure(p, "cannot write the results")
    (tiny_disk / "filler").unlink()
    _no_partial_files(tiny_disk)


def test_report_on_a_truncated_parquet(tmp_path):
    out = tmp_path / "res"
    assert _train(out, "--normal-class", "3").returncode == 0
    row = next((out / "rows").glob("*.parquet"))
    row.write_bytes(row.read_bytes()[:50])
    p = run_cli("report", "--results", str(out), "--no-plots")
    assert_one_line_failure(p, f"cannot read {row}")


def test_sweep_file_with_unknown_field(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from novelty.sweep.grid import Sweep\nfrom novelty.sweep.launch import main\n"
                   "SWEEP = Sweep(name='bad', grid={'normal_clas': [0]}, fixed={'dataset': 'digits'})\n"
                   "raise SystemExit(main(SWEEP))\n")
    p = subprocess.run([sys.executable, str(bad)], capture_output=True, text=True, timeout=120)
    assert_one_line_failure(p, "unknown trial field(s) normal_clas")


def test_sweep_with_a_class_out_of_range_fails_before_ray(tmp_path):
    p = subprocess.run([sys.executable, str(REPO / "sweeps" / "digits.py"), "--classes", "99",
                        "--results", str(tmp_path / "res")], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "RAY_ADDRESS": ""})
    assert_one_line_failure(p, "normal class 99 is out of range")
    assert "Ray" not in p.stdout + p.stderr  # nothing was started, nothing retried


def test_anomaly_detection_tree_with_a_named_normal_class(tmp_path):
    """MVTec-style: train/good only; test/good and test/<defect>; --normal-class good."""
    root = tmp_path / "mvtec"
    image_tree(root, 10, 0, names=("good", "scratch"))
    shutil.rmtree(root / "train" / "scratch")  # outliers only in the test split
    out = tmp_path / "res"
    common = ["--dataset", "imagefolder", "--data-root", str(root), "--cache-dir", str(tmp_path / "c")]
    p = _train(out, *common, "--normal-class", "good")
    assert p.returncode == 0, p.stderr
    row = read_rows(str(out)).iloc[0]
    assert row["normal_class"] == 0 and row["n_test"] == 12 and row["n_outliers"] == 6
    assert_one_line_failure(_train(out, *common, "--normal-class", "scratch"), "has 0 training image(s)")
    assert_one_line_failure(_train(out, *common, "--normal-class", "dent"), "no class named 'dent'; classes: 0=good, 1=scratch")
    shutil.rmtree(root / "test" / "scratch")
    p = _train(tmp_path / "res2", *common[:-1], str(tmp_path / "c2"), "--normal-class", "good")
    assert_one_line_failure(p, "has only normal-class (good (index 0)) images")


def test_unusable_results_uri(tmp_path):
    assert_one_line_failure(_train("unknown-scheme://bucket/x"), "cannot open the results URI unknown-scheme://")


def test_sweep_whose_trials_fail_exits_nonzero_without_retries(tmp_path):
    """A trial that diverges would diverge again: it is not retried, the sweep lists it and exits 1."""
    bad = tmp_path / "diverge.py"
    bad.write_text("from novelty.sweep.grid import Sweep\nfrom novelty.sweep.launch import main\n"
                   "SWEEP = Sweep(name='diverge', grid={'normal_class': [0]},\n"
                   "              fixed={'dataset': 'digits', 'epochs': 1, 'lr': 1e30}, max_failures=2)\n"
                   "raise SystemExit(main(SWEEP))\n")
    out = tmp_path / "res"
    # and no address given, with the record of a head that died unstopped (`ray stop` never ran): the
    # driver must pass it over in one line, not wait minutes for its GCS (it once waited ~7)
    ray_tmp = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))  # short: Ray's unix sockets live under it
    (ray_tmp / "ray").mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"  # closed once the block ends: nothing answers there
    (ray_tmp / "ray" / "ray_current_cluster").write_text(dead)
    try:
        p = subprocess.run([sys.executable, str(bad), "--results", str(out), "--no-report"],
                           capture_output=True, text=True, timeout=600,
                           env={**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONWARNINGS": "ignore",
                                "RAY_ADDRESS": "", "RAY_TMPDIR": str(ray_tmp)})
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert f"the Ray cluster recorded at {dead} does not answer" in p.stdout, p.stdout[-3000:]
    assert_one_line_failure(p, "1 trial(s) of sweep diverge ended without a row")
    assert p.stdout.count("FAILED, not retried") == 1 and "loss became NaN" in p.stdout  # ran once
    assert not list(out.glob("rows/*.parquet"))


def test_sigterm_stops_a_training_trial_in_one_line_and_it_resumes(tmp_path):
    """Slurm's time limit or scancel mid-trial: exit 143, one line, the checkpoint kept; the same
    command then goes on from it."""
    import signal
    import time

    out = tmp_path / "res"
    cmd = [sys.executable, "-m", "novelty.cli", "train", "--normal-class", "2", "--epochs", "6",
           "--stop", "last", "--results", str(out), "--no-progress"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None and not list(out.glob("checkpoints/*/checkpoint.pt")):
        time.sleep(0.1)
    assert p.poll() is None, "the trial ended before it could be stopped"
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err[-3000:]
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "stopped by SIGTERM" in lines[0] and "rerun the same command" in lines[0], err
    assert list(out.glob("checkpoints/*/checkpoint.pt")) and not list(out.glob("rows/*.parquet"))

    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert p.returncode == 0, p.stderr[-3000:]
    assert read_rows(str(out)).loc[0, "resumed_from_epoch"] >= 1
