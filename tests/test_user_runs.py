"""A user's own runs stay out of the committed reference sets: `novelty train` and every sweep
write under runs/ (git-ignored) unless a results folder is named."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from novelty.cli import build_parser
from novelty.arguments import from_namespace
from novelty.config import RunOptions
from novelty.sweep.grid import Sweep, SweepOptions, load_sweep

REPO = Path(__file__).resolve().parents[1]


def test_train_writes_under_runs_by_default():
    opts = from_namespace(RunOptions, build_parser().parse_args(["train"]))
    assert Path(opts.results).parts[0] == "runs"


@pytest.mark.parametrize("path", sorted((REPO / "sweeps").glob("*.py")), ids=lambda p: p.name)
def test_every_sweep_file_writes_under_runs_by_default(path, monkeypatch):
    monkeypatch.delenv("NOVELTY_RESULTS", raising=False)
    sweep = load_sweep(str(path))
    assert SweepOptions().results_uri(sweep) == f"runs/{sweep.name}"
    assert SweepOptions(results="results/mnist").results_uri(sweep) == "results/mnist"  # named: written there


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="not a git checkout")
def test_runs_folder_is_ignored_by_git():
    sweep = Sweep(name="digits")
    inside = f"{SweepOptions().results_uri(sweep)}/rows/0123456789abcdef.parquet"
    assert subprocess.run(["git", "check-ignore", "-q", inside], cwd=REPO).returncode == 0
    # the reference sets' rows are not ignored: they are committed
    assert subprocess.run(["git", "check-ignore", "-q", "results/mnist/rows/x.parquet"], cwd=REPO).returncode == 1
