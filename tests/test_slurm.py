"""The Slurm paths (cluster/slurm/*.sbatch) on a real Slurm give the in-process results.

Needs a reachable Slurm with an idle node (`sudo .ci/slurm-up.sh` starts a one-node
one; .ci/run does). Without one these tests fail when CI=true and skip otherwise.
Every job runs tiny digits trials (class 0, seed 0, 1 epoch) on CPU, where training
is deterministic, so rows must match `run_trial` in this process exactly (one rank)
or within 0.01 AUC (two DDP ranks, same global batch).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from novelty.cli import main as novelty_main
from novelty.config import RunOptions, TrialConfig
from novelty.sweep.grid import SweepOptions, load_sweep
from novelty.store.results import read_rows
from novelty.trial.run import run_trial

from conftest import DDP_PINNED, as_flags, digits_fingerprint

DIGITS = digits_fingerprint()

REPO = Path(__file__).resolve().parent.parent
SWEEP_FILE = "sweeps/digits.py"
NARROW = {"classes": "0", "seeds": "0", "variants": "full,base", "epochs": 1}
NARROW_ARGS = ["--classes", "0", "--seeds", "0", "--variants", "full,base", "--epochs", "1"]
JOB_TIMEOUT = 420  # seconds; the jobs themselves also carry --time


def _slurm_problem() -> str | None:
    """Why Slurm cannot run jobs here, or None."""
    for tool in ("sbatch", "sinfo", "srun"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not on PATH"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo failed: {exc}"
    if out.returncode != 0:
        return f"sinfo failed: {out.stderr.strip() or out.stdout.strip()}"
    states = out.stdout.split()
    if not any(s in ("idle", "mixed", "allocated", "completing") for s in states):
        return f"no responding node (sinfo states: {' '.join(states) or 'none'})"
    return None


@pytest.fixture(scope="module")
def slurm() -> None:
    problem = _slurm_problem()
    if problem:
        msg = f"Slurm is unreachable: {problem}. Start a one-node Slurm with `sudo .ci/slurm-up.sh`."
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def job_env(cache) -> dict[str, str]:
    """The environment sbatch exports to the jobs: this Python, a small object store,
    and none of this shell's Ray or Slurm settings (the jobs make their own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "SLURM_"))}
    env.update(NOVELTY_PYTHON=sys.executable, NOVELTY_CACHE=cache, PYTHONUNBUFFERED="1",
               NOVELTY_RAY_OBJECT_STORE=str(100 * 1024**2))
    return env


@pytest.fixture(scope="module")
def local_aucs(cache, tmp_path_factory) -> dict[str, float]:
    """The narrowed grid's trials run here, in-process, one CPU thread: key -> AUC."""
    trials = load_sweep(str(REPO / SWEEP_FILE)).trials(SweepOptions(**NARROW))
    assert len(trials) == 2
    out = str(tmp_path_factory.mktemp("local"))
    opts = RunOptions(results=out, cache_dir=cache, device="cpu", threads=1, progress=False)
    return {cfg.key(DIGITS): run_trial(cfg, opts, checkpoint=None)["auc"] for cfg in trials}


def _sbatch(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    cmd = ["sbatch", "--wait", "--parsable", f"--output={log}", "--time=10", f"--chdir={REPO}", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, log: Path) -> tuple[str, str]:
    """Wait for `sbatch --wait`; (job id, job output), failing with the output on error.
    `log` may hold a glob (array jobs write one file per task)."""
    try:
        stdout, stderr = proc.communicate(timeout=JOB_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    files = sorted(log.parent.glob(log.name))
    text = "\n".join(f.read_text(errors="replace") for f in files) or "(no job output)"
    assert proc.returncode == 0, (f"{' '.join(proc.args)} exited {proc.returncode}\n{stderr}\n"
                                  f"--- job output ({log}) ---\n{text[-8000:]}")
    return stdout.strip().split(";")[0], text


def _rows(results: Path):
    rows = read_rows(str(results))
    assert not rows.empty, f"no rows under {results}"
    return rows


def _leftover_processes(marker: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline:
                found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def test_ray_cluster_jobs_match_local_trials(slurm, job_env, local_aucs, tmp_path):
    """Two ray-cluster.sbatch jobs at once on one node (own ports, temp dirs and auth
    tokens), one trial each, into one results folder: the same rows as in-process."""
    results = tmp_path / "results"
    procs = []
    for variant in ("full", "base"):
        log = tmp_path / f"ray-{variant}.out"
        args = ["--cpus-per-task=1", "cluster/slurm/ray-cluster.sbatch", SWEEP_FILE,
                "--classes", "0", "--seeds", "0", "--variants", variant, "--epochs", "1",
                "--results", str(results), "--no-report"]
        procs.append((_sbatch(args, job_env, log), log))
    jobs = [_finish(p, log) for p, log in procs]

    rows = _rows(results)
    assert sorted(rows["key"]) == sorted(local_aucs)
    for _, row in rows.iterrows():
        assert row["auc"] == pytest.approx(local_aucs[row["key"]], abs=1e-12), row["run_name"]
        assert row["world_size"] == 1 and row["sweep"] == "digits"
    ports = {text.split(" ports ", 1)[1].split(",", 1)[0] for _, text in jobs}
    assert len(ports) == 2, "the two jobs used the same ports"
    for job_id, text in jobs:
        assert "auth token" in text  # Ray's token auth stayed on
        assert not _leftover_processes(f"/tmp/ray-{job_id}/"), "Ray processes outlived the job"
        assert not Path(f"/tmp/ray-{job_id}").exists(), "the job's Ray temp dir was left behind"


def test_array_job_matches_local_trials(slurm, job_env, local_aucs, tmp_path, capsys):
    """array.sbatch: one trial per array task, no Ray; --count sizes the array."""
    results = tmp_path / "results"
    opts = [*NARROW_ARGS, "--results", str(results)]
    assert novelty_main(["array-task", str(REPO / SWEEP_FILE), "--count", *opts]) == 0
    count = int(capsys.readouterr().out.strip())
    assert count == len(local_aucs)

    proc = _sbatch([f"--array=0-{count - 1}", "cluster/slurm/array.sbatch", SWEEP_FILE, *opts], job_env,
                   tmp_path / "array-%A_%a.out")
    _finish(proc, tmp_path / "array-*.out")

    rows = _rows(results)
    assert sorted(rows["key"]) == sorted(local_aucs)
    for _, row in rows.iterrows():
        assert row["auc"] == pytest.approx(local_aucs[row["key"]], abs=1e-12), row["run_name"]
        assert row["world_size"] == 1


def test_torchrun_ddp_matches_one_rank(slurm, job_env, cache, tmp_path):
    """Two ranks (gloo on CPU) under torchrun, as a ddp.sbatch job and as a plain
    `srun torchrun`: world_size 2, within 0.01 AUC of one rank, and identical. ddp.sbatch shares
    the task's CPUs among the ranks (2 CPUs, 2 ranks: 1 thread each, not 2). That it hands
    --cpus-per-task on to srun this one-node Slurm cannot show: without task binding
    (task/none) a step gets the job's CPUs either way."""
    trial = ["--dataset", "digits", "--normal-class", "0", "--seed", "0", "--variant", "full",
             "--epochs", "1", "--batch-size", "64", "--device", "cpu", *as_flags(DDP_PINNED)]
    cfg = TrialConfig(dataset="digits", normal_class=0, seed=0, variant="full", epochs=1, batch_size=64, **DDP_PINNED)
    key = cfg.key(DIGITS)
    one_rank = RunOptions(results=str(tmp_path / "one"), cache_dir=cache, device="cpu", threads=1, progress=False)
    local_aucs = {key: run_trial(cfg, one_rank, checkpoint=None)["auc"]}

    batch_out, srun_out = tmp_path / "ddp-sbatch", tmp_path / "ddp-srun"
    log = tmp_path / "ddp.out"
    proc = _sbatch(["--gpus-per-node=0", "--cpus-per-task=2", "cluster/slurm/ddp.sbatch", *trial,
                    "--results", str(batch_out)], {**job_env, "NPROC": "2"}, log)
    _, text = _finish(proc, log)
    assert "1 node(s) x 2 ranks, 2 CPUs per node, 1 thread(s) per rank" in text

    srun = ["srun", "--ntasks=1", "--cpus-per-task=2", "--time=10", f"--chdir={REPO}",
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "novelty.cli", "train", "--no-progress", *trial, "--results", str(srun_out)]
    done = subprocess.run(srun, env={**job_env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=JOB_TIMEOUT)
    assert done.returncode == 0, f"{' '.join(srun)}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"

    aucs = []
    for out in (batch_out, srun_out):
        rows = _rows(out)
        assert list(rows["key"]) == [key]
        assert rows["world_size"].iloc[0] == 2 and rows["threads"].iloc[0] == 1
        aucs.append(float(rows["auc"].iloc[0]))
    assert aucs[0] == aucs[1], f"two 2-rank runs differ: {aucs}"
    assert abs(aucs[0] - local_aucs[key]) <= 0.01, (aucs, local_aucs[key])
