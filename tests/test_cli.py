"""The command line as its users meet it (through the real CLI, a subprocess): one name for the
results folder, --version, an exit status per kind of error, options a command would ignore
refused, class names in --classes, old spellings kept with a note."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from novelty import __version__
from novelty.errors import EXIT_CODES
from novelty.sweep.grid import Sweep, SweepOptions
from novelty.store.results import read_rows, read_scores

from conftest import run_cli, warm_cli_server

REPO = Path(__file__).resolve().parents[1]


def _last_line(p) -> str:
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert lines and "Traceback" not in p.stderr, p.stderr[-3000:]
    return lines[-1]


def test_version_and_exit_codes_in_help():
    p = run_cli("--version")
    assert p.returncode == 0 and p.stdout.startswith(f"novelty {__version__}"), p.stdout + p.stderr
    assert "(git " in p.stdout  # run from the repository's checkout
    helps = [run_cli("--help").stdout, run_cli("train", "--help").stdout, run_cli("report", "--help").stdout]
    for text in helps:
        for code, what in EXIT_CODES:
            assert f"{code:>3}  {what}" in text
    assert "3×32×32" in helps[0] and "3×32×32" in helps[1]


@pytest.mark.parametrize("args, code, needle", [  # (test_trial's bad-input cases check codes 2, 3 and 4 too)
    (["--no-such-option"], 2, "unrecognized arguments: --no-such-option"),
    (["--results", "{tmp}/file/res"], 5, "is not writable"),  # a file where the results folder should go
])
def test_exit_status_says_what_went_wrong(tmp_path, args, code, needle):
    (tmp_path / "file").write_text("a file where a folder should be")
    args = [a.format(tmp=tmp_path) for a in args]
    p = run_cli("train", "--epochs", "1", "--batch-size", "8", "--no-progress", "--cache-dir", tmp_path / "c",
             *(["--results", tmp_path / "res"] if "--results" not in args else []), *args)
    assert p.returncode == code, p.stderr[-3000:]
    assert needle in _last_line(p)
    assert not list(tmp_path.rglob("rows/*.parquet"))


def test_a_warm_cli_run_is_a_cold_one(tmp_path):
    """run_cli forks the CLI from a warm interpreter (tests/warm_cli.py): the same exit status,
    stdout and stderr as a cold `python -m novelty.cli`, in a process of its own, at the cwd and
    environment it was given; an exception no handler catches prints its traceback, exit 1."""
    (tmp_path / "file").write_text("a file where a folder should be")
    cases = [["train", "--no-such-option"],
             ["train", "--normal-class", "12", "--results", "res", "--no-progress"],  # data error, in cwd
             ["report", "--results", "file/res"],
             ["--version"]]
    env = {"NOVELTY_CACHE": str(tmp_path / "cache")}
    for args in cases:
        warm, cold = run_cli(*args, cwd=tmp_path, env=env), run_cli(*args, cwd=tmp_path, env=env, cold=True)
        assert (warm.returncode, warm.stdout, warm.stderr) == (cold.returncode, cold.stdout, cold.stderr), args
    assert {run_cli("train", "--no-such-option").returncode for _ in range(2)} == {2}  # the server goes on
    # a trial that trains, checkpoints and writes: the same output (timings aside), row and scores
    runs = {}
    for name, cold in (("warm", False), ("cold", True)):
        (tmp_path / name).mkdir()
        p = run_cli("train", "--epochs", "2", "--normal-class", "1", "--results", "res", "--no-progress",
                    "--threads", "1", cwd=tmp_path / name, env=env, cold=cold)
        assert p.returncode == 0, p.stderr[-3000:]
        rows = read_rows(str(tmp_path / name / "res"))
        runs[name] = (re.sub(r"\([0-9.]+s training, [0-9]+ img/s", "(Ts training, N img/s", p.stdout), p.stderr,
                      rows.drop(columns=[c for c in rows if c.endswith(("_at", "seconds", "_per_second"))]),
                      read_scores(str(tmp_path / name / "res")))
    (out_w, err_w, row_w, sc_w), (out_c, err_c, row_c, sc_c) = runs["warm"], runs["cold"]
    assert (out_w, err_w) == (out_c, err_c) and "AUC" in out_w
    pd.testing.assert_frame_equal(row_w, row_c, check_exact=True)
    pd.testing.assert_frame_equal(sc_w, sc_c, check_exact=True)
    assert not list((tmp_path / "warm" / "res" / "checkpoints").glob("*/checkpoint.pt"))  # removed after the row
    # what a child is: a process of its own, at its cwd and environment, `-m`'s argv[0]; an
    # exception no handler catches ends it as it ends an interpreter
    (tmp_path / "probe.py").write_text("import os, sys; print(os.getpid(), os.getcwd(), os.environ.get('PROBE'), "
                                       "sys.argv[1:]); raise KeyError('uncaught')\n")
    server = warm_cli_server()
    p = server.run(["a", "b"], {**os.environ, "PROBE": "x"}, str(tmp_path), 60, module="probe")
    pid, cwd, probe, argv = p.stdout.split(" ", 3)
    assert int(pid) not in (os.getpid(), server.proc.pid) and cwd == str(tmp_path) and probe == "x"
    assert argv.strip() == "['a', 'b']"
    assert p.returncode == 1 and p.stderr.strip().splitlines()[-1] == "KeyError: 'uncaught'"
    assert "PROBE" not in os.environ


def test_old_spellings_still_work_with_a_note(tmp_path):
    """train --out, report and compact RESULTS_DIR, report --out: the same as --results and --tables,
    plus one note each."""
    old = run_cli("train", "--variant", "kde", "--out", tmp_path / "a", "--no-progress")
    assert old.returncode == 0, old.stderr[-3000:]
    assert "novelty: note: --out is deprecated; use --results" in old.stderr
    new = run_cli("train", "--variant", "kde", "--results", tmp_path / "b", "--no-progress")
    assert new.returncode == 0 and "deprecated" not in new.stderr, new.stderr[-3000:]
    assert list(read_rows(str(tmp_path / "a"))["key"]) == list(read_rows(str(tmp_path / "b"))["key"])

    p = run_cli("report", tmp_path / "a", "--out", tmp_path / "t1", "--no-plots")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "positional RESULTS_DIR is deprecated; use --results" in p.stderr
    assert "--out is deprecated; use --tables" in p.stderr
    p = run_cli("report", "--results", tmp_path / "b", "--tables", tmp_path / "t2", "--no-plots")
    assert p.returncode == 0 and "deprecated" not in p.stderr, p.stderr[-3000:]
    assert (tmp_path / "t1" / "digits.md").exists() and (tmp_path / "t2" / "digits.md").exists()
    assert not (tmp_path / "b" / "tables").exists()
    p = run_cli("report")
    assert p.returncode == 2 and "needs the results folder: --results DIR" in _last_line(p)
    p = run_cli("compact", tmp_path / "a", "--dry-run")
    assert p.returncode == 0 and "positional RESULTS_DIR is deprecated; use --results" in p.stderr, p.stderr
    p = run_cli("compact", "--results", tmp_path / "b", "--dry-run")
    assert p.returncode == 0 and "deprecated" not in p.stderr and "would rewrite 0 files" in p.stdout, p.stderr


@pytest.mark.parametrize("args", [["--ray-address", "auto"], ["--max-concurrent", "2"], ["--no-report"],
                                  ["--gpus-per-trial", "1"], ["--ranks-per-trial", "2"]])
def test_array_task_refuses_what_it_would_ignore(args):
    p = run_cli("array-task", REPO / "sweeps" / "digits.py", "--count", *args)
    assert p.returncode == 2 and not p.stdout
    assert f"{args[0]} does not apply here: an array task runs one trial in this process, without Ray" \
        in _last_line(p)


def test_classes_by_name(tmp_path, fake_imagefolder):
    """--classes takes ImageFolder class folder names (and numbers) in sweeps, as --normal-class does in train."""
    from novelty.data.load import load_imageset

    cache = tmp_path / "c"
    names = load_imageset("imagefolder", str(fake_imagefolder), str(cache)).class_names
    sweep = Sweep(name="named", grid={"normal_class": [0], "seed": [0]}, fixed={"dataset": "imagefolder"})
    opts = SweepOptions(classes="dark,0", data_root=str(fake_imagefolder), cache_dir=str(cache))
    assert [t.normal_class for t in sweep.trials(opts)] == [names.index("dark"), 0]

    file = tmp_path / "named.py"
    file.write_text("from novelty.sweep.grid import Sweep\n"
                    "SWEEP = Sweep(name='named', grid={'normal_class': [0, 1], 'seed': [0]},"
                    " fixed={'dataset': 'imagefolder'})\n")
    common = ["--data-root", fake_imagefolder, "--cache-dir", cache]
    p = run_cli("array-task", file, "--count", "--classes", "bright", *common)
    assert p.returncode == 0 and p.stdout.strip() == "1", p.stderr[-3000:]
    p = run_cli("array-task", file, "--count", "--classes", "grey", *common)
    assert p.returncode == 3 and "no class named 'grey'; classes: 0=" in _last_line(p)
    mixed = Sweep(name="mixed", grid={"dataset": ["digits", "imagefolder"], "normal_class": [0]})
    with pytest.raises(ValueError, match="class names need a sweep over one dataset"):
        mixed.trials(opts)


def test_a_bad_option_and_help_load_neither_torch_nor_sklearn():
    """`train` checks its options before torch loads, and no parser imports sklearn: a typo ends
    in well under a second (it took ~4.5 s when every bad option paid for torch and sklearn)."""
    code = ("import sys; from novelty.cli import main\n"
            "try:\n    print('exit', main(sys.argv[1:]))\nexcept SystemExit as e:\n    print('exit', e.code)\n"
            "print('loaded', sorted(m for m in ('torch', 'sklearn') if m in sys.modules))")
    runs = {args: subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
            for args in (("train", "--lr", "-1"), ("train", "--nz", "0"), ("train", "--help"), ("report", "--help"))}
    for args, done in runs.items():
        assert "loaded []" in done.stdout, (args, done.stdout[-2000:], done.stderr[-2000:])
    bad = runs["train", "--lr", "-1"]
    assert "exit 2" in bad.stdout and "--lr must be > 0" in bad.stderr
