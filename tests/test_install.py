"""The package as a user installs it: a wheel built from the tree, installed apart from the
source, must hold every subpackage and run a trial (an editable install cannot show this).
Here with --target into this interpreter (its dependencies are this environment's); the declared
dependencies and the `novelty` console script are checked by .ci/install-check, which .ci/run
runs after the suite: the wheel in a fresh virtual environment with what pyproject.toml declares."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_installs_and_runs_a_trial(tmp_path):
    wheels = tmp_path / "wheels"
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(wheels), str(REPO)], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    wheel = next(wheels.glob("novelty-*.whl"))
    inside = set(zipfile.ZipFile(wheel).namelist())
    source = {str(f.relative_to(REPO)) for f in (REPO / "novelty").rglob("*.py")}
    assert source <= inside, f"missing from the wheel: {sorted(source - inside)}"
    assert "novelty/report/paper_tables.csv" in inside

    target = tmp_path / "site"  # a fresh place on sys.path, ahead of the editable install
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                        str(wheel)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    code = ("import novelty, novelty.cli; assert novelty.__file__.startswith(%r), novelty.__file__; "
            "raise SystemExit(novelty.cli.main(['train', '--dataset', 'digits', '--epochs', '1', '--device', 'cpu', "
            "'--no-progress', '--results', 'out']))" % str(target))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(target)})
    assert p.returncode == 0, p.stderr[-3000:]
    assert "AUC" in p.stdout and list((tmp_path / "out" / "rows").glob("*.parquet"))
