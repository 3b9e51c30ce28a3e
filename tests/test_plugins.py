"""Methods from outside the repository: a tiny package, installed in the test with pip, declares
a method and its own hyper-parameters through the entry-point group `novelty.methods`; with it
on the path, `novelty train --help` shows its option, `novelty train --variant shift` runs it,
its knob is a row column and a part of the key, and a Ray Tune sweep's workers find the method
by the entry point alone (nothing is shipped to them). The registry's checks refuse a spec that
reads a field TrialConfig lacks, or whose own knob takes a name already taken."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from novelty import methods
from novelty.config import TrialConfig
from novelty.methods import MethodSpec, register, unregister

SPEC_MODULE = '''
"""The shift method's spec: torch-free, so the registry loads it without importing a network."""
from dataclasses import dataclass

from novelty.methods import MethodSpec


@dataclass(frozen=True)
class ShiftParams:
    """Hyper-parameters of the shift method."""

    shift_power: float = 1.0
    """Power of each image's distance from the normal images' mean intensity."""


SPEC = MethodSpec(name="shift", variants=("shift",), reads=(), impl="novelty_shift.method:Shift",
                  params=ShiftParams, display="plugin: shift")
'''
METHOD_MODULE = '''
import torch

from novelty.methods.base import Method


class Shift(Method):
    """A pixel method: |mean intensity - the normal images' mean| ** shift_power."""

    trained = False

    def fit(self, train, val):
        self.center = float(train.mean())

    def components(self, x, batch=256, train_mode=False):
        return {"score": (x.flatten(1).mean(1).double() - self.center).abs() ** self.cfg.params.shift_power}
'''
PYPROJECT = '''
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "novelty-shift"
version = "0.1"

[project.entry-points."novelty.methods"]
shift = "novelty_shift:SPEC"

[tool.setuptools]
packages = ["novelty_shift"]
'''
SWEEP_FILE = '''
from novelty.sweep.grid import Sweep
from novelty.sweep.launch import main

SWEEP = Sweep(
    name="plugin",
    # shift at 2 powers + kde once (shift_power is shift's own knob) = 3 trials
    grid={"variant": ["shift", "kde"], "shift_power": [1.0, 2.0], "normal_class": [1]},
    fixed={"dataset": "digits"},
)

if __name__ == "__main__":
    raise SystemExit(main(SWEEP))
'''
# Run with the package on the path: --help, two trials, a misplaced knob, then the sweep.
SCRIPT = '''
import contextlib, io, json, subprocess, sys
from novelty import methods
from novelty.cli import main
from novelty.config import TrialConfig

out = {"plugins": [s.name for s in methods.plugins()], "variants": list(methods.variant_names())}
help_text = io.StringIO()
with contextlib.redirect_stdout(help_text), contextlib.suppress(SystemExit):
    main(["train", "--help"])
out["help"] = help_text.getvalue()
common = ["--normal-class", "1", "--results", "train", "--no-progress"]
out["train"] = [main(["train", "--variant", "shift", "--shift-power", "2", *common]),
                main(["train", "--variant", "shift", *common])]
out["misplaced"] = main(["train", "--variant", "full", "--shift-power", "2", *common])
out["full_key"] = TrialConfig(variant="full").key("data")
sweep = subprocess.run([sys.executable, "plugin_sweep.py", "--results", "swept", "--ray-address", "local",
                        "--max-concurrent", "1"], capture_output=True, text=True)
out["sweep"] = [sweep.returncode, sweep.stdout[-3000:] + sweep.stderr[-3000:]]
print("RESULT " + json.dumps(out))
'''


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The shift package, installed with pip into a folder of its own (put it on PYTHONPATH)."""
    src = tmp_path_factory.mktemp("shift-src")
    (src / "novelty_shift").mkdir()
    (src / "novelty_shift" / "__init__.py").write_text(SPEC_MODULE)
    (src / "novelty_shift" / "method.py").write_text(METHOD_MODULE)
    (src / "pyproject.toml").write_text(PYPROJECT)
    target = tmp_path_factory.mktemp("site")
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
                        "--target", str(target), str(src)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert list(target.glob("novelty_shift-0.1.dist-info/entry_points.txt"))
    return target


def test_an_installed_package_adds_a_method_with_its_own_knob(installed, tmp_path):
    from novelty.data.load import load_imageset, one_class_split
    from novelty.store.results import read_rows

    (tmp_path / "plugin_sweep.py").write_text(SWEEP_FILE)
    env = {**os.environ, "PYTHONPATH": str(installed), "RAY_AUTH_MODE": "disabled"}
    p = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600,
                       cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.split("RESULT ", 1)[1])
    assert "shift" in out["variants"] and out["plugins"] == []  # an entry point's method is not shipped
    assert "--shift-power" in out["help"] and "Power of each image's distance" in out["help"]
    assert out["train"] == [0, 0]
    assert out["misplaced"] == 2  # a usage error
    assert "shift_power" in p.stderr and "another method" in p.stderr
    # installing a method re-keys no built-in trial
    assert out["full_key"] == TrialConfig(variant="full").key("data")

    rows = read_rows(str(tmp_path / "train")).sort_values("shift_power")
    assert list(rows["method"]) == ["shift", "shift"] and list(rows["shift_power"]) == [1.0, 2.0]
    assert rows["key"].nunique() == 2  # the knob is part of the key
    split = one_class_split(load_imageset("digits"), "digits", 1, 0, 0.15)
    from sklearn.metrics import roc_auc_score
    dist = (split.test.flatten(1).mean(1).double() - float(split.train.mean())).abs().numpy()
    assert rows["auc"].iloc[0] == pytest.approx(roc_auc_score(split.test_labels.numpy(), dist), abs=1e-12)

    code, log = out["sweep"]
    assert code == 0, log
    swept = read_rows(str(tmp_path / "swept"))
    assert sorted(swept["variant"]) == ["kde", "shift", "shift"], log  # kde once: the knob is not its own
    assert swept.loc[swept["variant"] == "kde", "shift_power"].isna().all()
    assert set(swept.loc[swept["variant"] == "shift", "shift_power"]) == {1.0, 2.0}
    assert swept["ray_node_id"].str.len().gt(0).all()  # ran in Ray's workers
    train_keys = set(rows["key"])
    assert set(swept.loc[swept["variant"] == "shift", "key"]) == train_keys  # the same trials, the same keys
    table = (tmp_path / "swept" / "tables" / "report.md").read_text()
    assert "plugin: shift (shift_power=1)" in table and "plugin: shift (shift_power=2)" in table
    assert "ours: KDE (" not in table  # another method's knob never labels KDE


@dataclasses.dataclass(frozen=True)
class _Knobs:
    gain: float = 1.0
    """A knob."""


@dataclasses.dataclass
class _Mutable:
    gain2: float = 1.0


@pytest.mark.parametrize("spec, why", [
    (MethodSpec(name="bad1", variants=("bad1",), reads=("epochs", "epoch"), impl="x:Y"), "reads epoch"),
    (MethodSpec(name="bad2", variants=("bad2",), reads=(), impl="x:Y", params=_Mutable), "frozen dataclass"),
    (MethodSpec(name="bad3", variants=("bad3",), reads=(), impl="x:Y",
                params=dataclasses.make_dataclass("P", [("lr", float, 1.0)], frozen=True)), "'lr' is already"),
    (MethodSpec(name="bad4", variants=("bad4",), reads=(), impl="x:Y",
                params=dataclasses.make_dataclass("P", [("auc", float, 1.0)], frozen=True)), "'auc' is already"),
])
def test_the_registry_refuses_a_bad_spec(spec, why):
    with pytest.raises(ValueError, match=why):
        register(spec)
    assert spec.variants[0] not in methods.variant_names()


def test_a_method_own_knob_from_a_flat_config_and_unregister():
    spec = register(MethodSpec(name="knobby", variants=("knobby",), reads=(), impl="x:Y", params=_Knobs))
    try:
        cfg = TrialConfig.from_flat({"variant": "knobby", "gain": 3.0})
        assert cfg.params == _Knobs(gain=3.0) and cfg.flat()["gain"] == 3.0
        assert cfg.key("d") != TrialConfig.from_flat({"variant": "knobby"}).key("d")
        assert TrialConfig(**dataclasses.asdict(cfg)) == cfg  # how a sweep ships a trial to its workers
        with pytest.raises(ValueError, match="'gain' is already method 'knobby'"):
            register(MethodSpec(name="other", variants=("other",), reads=(), impl="x:Y", params=_Knobs))
        from novelty.config import ConfigError
        with pytest.raises(ConfigError, match="another method"):
            TrialConfig.from_flat({"variant": "full", "gain": 3.0})
        assert TrialConfig.from_flat({"variant": "full", "gain": 3.0}, strict=False) == TrialConfig(variant="full")
        with pytest.raises(ConfigError, match="unknown trial field"):
            TrialConfig.from_flat({"variant": "knobby", "gian": 3.0})
    finally:
        unregister("knobby")
    assert "knobby" not in methods.variant_names() and spec not in methods.specs()


def test_a_broken_entry_point_costs_only_its_own_methods(tmp_path, capsys):
    """An entry point that fails to import prints one warning naming it; the tool goes on."""
    dist = tmp_path / "broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[novelty.methods]\nnope = no_such_module:SPEC\n")
    sys.path.insert(0, str(tmp_path))
    try:
        before = methods.variant_names()
        methods.load_entry_points()
        assert methods.variant_names() == before
    finally:
        sys.path.remove(str(tmp_path))
    err = capsys.readouterr().err
    assert "novelty: warning: the method entry point nope = no_such_module:SPEC (broken)" in err
    assert "ModuleNotFoundError" in err and err.count("\n") == 1
