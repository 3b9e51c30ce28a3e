"""Every sweep file in sweeps/ loads, names only TrialConfig fields, and has trials."""
from __future__ import annotations

from pathlib import Path

import pytest

from novelty.config import ConfigError
from novelty.sweep.grid import Sweep, SweepOptions, load_sweep

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


def test_screens_run_the_grid_once_per_screen_and_options_still_win() -> None:
    sweep = Sweep(name="s", grid={"normal_class": [0, 1], "seed": [0]}, fixed={"epochs": 5, "nz": 8, "stop": "last"},
                  screens=({"noise_std": 0.2}, {"noise_std": 0.2, "stop": "val_fea"}, {"epochs": 9}))
    trials = sweep.trials()
    assert [(t.normal_class, t.noise_std, t.stop, t.epochs) for t in trials] == [
        (0, 0.2, "last", 5), (1, 0.2, "last", 5), (0, 0.2, "val_fea", 5), (1, 0.2, "val_fea", 5),
        (0, 0.1, "last", 9), (1, 0.1, "last", 9)]
    assert {t.nz for t in trials} == {8}
    narrowed = sweep.trials(SweepOptions(seeds="1", classes="1", epochs=2))
    assert [(t.seed, t.normal_class, t.epochs) for t in narrowed] == [(1, 1, 2)] * 3
    assert len(sweep.trials(SweepOptions(smoke_test=True))) == 2
    with pytest.raises(ConfigError, match="screen sets seed"):
        Sweep(name="bad", grid={"normal_class": [0]}, screens=({"seed": 3},)).trials()
    with pytest.raises(ConfigError, match="unknown trial field.*noise_sd"):
        Sweep(name="bad", screens=({"noise_sd": 0.3},)).trials()
