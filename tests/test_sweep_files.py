"""Every sweep file in sweeps/ loads, names only TrialConfig fields, and has trials."""
from __future__ import annotations

from pathlib import Path

import pytest

from novelty.grid import SweepOptions, load_sweep

SWEEP_FILES = sorted((Path(__file__).resolve().parents[1] / "sweeps").glob("*.py"))


def test_there_are_sweep_files() -> None:
    assert len(SWEEP_FILES) >= 5


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.name)
def test_sweep_file_loads_with_valid_distinct_trials(path: Path) -> None:
    sweep = load_sweep(str(path))
    sweep.check()
    trials = sweep.trials(SweepOptions())
    assert trials, f"{path.name} has no trials"
    assert len({t.key("any-data") for t in trials}) == len(trials)  # no two trials are the same trial
