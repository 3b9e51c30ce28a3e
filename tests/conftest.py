"""Shared fixtures: a per-session dataset cache, generated datasets, Ray kept out of ~/.ray."""
from __future__ import annotations

import atexit
import functools
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# The suite is the CPU suite: on a machine with GPUs, trials at --device auto would train on CUDA
# while the sweep tests train on CPU and compare AUCs exactly. Set before torch initialises CUDA;
# GPUs are checked by bench/gpu_check.py.
os.environ["CUDA_VISIBLE_DEVICES"] = ""
# OpenMP threads that wait for work sleep instead of spinning: the suite runs several processes
# (Ray workers, DDP ranks, CLI subprocesses) of 2 torch threads each on 2 cores, where a spinning
# thread holds the core another process needs (a trial took 13-19 s instead of 4-5 s, measured).
# Speed only: no value changes. Set before torch starts; every child process inherits it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# The suite keeps its Ray sessions, and the record of the cluster a sweep started, in a folder of
# its own: a driver that looks for "the cluster running on this machine" never joins a user's
# (or a background sweep's) Ray, nor another suite's (one per pytest-xdist worker). Short: Ray's
# unix sockets live there.
os.environ["RAY_TMPDIR"] = f"/tmp/rt-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{os.getuid()}"
os.makedirs(os.environ["RAY_TMPDIR"], exist_ok=True)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
# The DDP tests' 1-vs-2-rank tolerances were measured at these values; pinned so a change of
# the defaults does not move them (the study chooses the defaults, not these tests).
DDP_PINNED = {"nz": 100, "score_lambda": 0.9, "noise_std": 0.1, "stop": "last"}


# The longest files, longest first (~71, 64, 55, 49, 41, 34, 28 s, then under 16 s each, as
# measured under 2 workers in session 15, with run_cli forked from a warm interpreter); the rest
# follow in their own order. `make test` runs pytest-xdist with --dist loadfile
# --no-loadscope-reorder: each file goes whole to a worker, in this order, so no long file is
# left to run alone at the end while the other worker idles.
LONGEST_FIRST = ("test_sweep.py", "test_cluster_sim.py", "test_slurm.py", "test_reliability.py",
                 "test_selfsup.py", "test_sweep_kill.py", "test_quality.py", "test_trial.py", "test_cli.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: tests keep their order


def as_flags(values: dict) -> list[str]:
    """TrialConfig values as CLI options: {"nz": 100} -> ["--nz", "100"]."""
    return [s for k, v in values.items() for s in (f"--{k.replace('_', '-')}", str(v))]


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    os.environ["NOVELTY_CACHE"] = str(cache)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # tests only; the real driver keeps token auth
    yield


def restore_env(saved: dict[str, str | None]) -> None:
    """Put environment variables back as `saved` ({name: value, or None where it was unset})."""
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@functools.lru_cache(maxsize=None)
def warm_cli_server():
    """This pytest process's warm CLI server (tests/warm_cli.py), started on first use."""
    from warm_cli import WarmCli

    server = WarmCli({**os.environ, "PYTHONWARNINGS": "ignore"})
    atexit.register(server.close)
    return server


def run_cli(*args, cwd=None, env=None, timeout: int = 600, cold: bool = False) -> subprocess.CompletedProcess:
    """`python -m novelty.cli ARGS` in a process of its own (Python's warnings off), its output
    captured; `env`: variables set over this process's environment. The process is forked from a
    warm interpreter (tests/warm_cli.py) unless `cold` or `env` changes a start-up variable."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    args = [str(a) for a in args]
    if not cold and warm_cli_server().can_fork(env):
        return warm_cli_server().run(args, env, cwd, timeout)
    return subprocess.run([sys.executable, "-m", "novelty.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (MNIST's format)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_mnist(tmp_path) -> Path:
    """A tiny MNIST in torchvision's raw layout: 3 classes, 28x28, random strokes."""
    rng = np.random.default_rng(0)
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 90), ("t10k", 60)):
        labels = np.arange(n) % 3
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        for i, k in enumerate(labels):
            images[i, 4 + 6 * k: 10 + 6 * k, 4:24] = 200 + rng.integers(0, 55)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return tmp_path / "data"


@pytest.fixture
def fake_imagefolder(tmp_path) -> Path:
    """A split ImageFolder tree of PNGs: 2 classes (dark, bright)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "tree"
    for part, n in (("train", 12), ("test", 6)):
        for k, name in enumerate(("dark", "bright")):
            d = root / part / name
            d.mkdir(parents=True)
            for i in range(n):
                px = rng.integers(0, 80, (40, 40, 3)) + 150 * k
                Image.fromarray(px.astype(np.uint8)).save(d / f"{i:04d}.png")
    return root


def digits_fingerprint() -> str:
    """The fingerprint of the embedded digits data: part of every digits trial's key."""
    from novelty.data.load import load_imageset

    return load_imageset("digits").fingerprint


class Killed(Exception):
    """Raised by `die_after` to kill a trial at the end of an epoch (after its checkpoint)."""


def die_after(epoch: int):
    """An on_epoch callback that kills the trial at the end of `epoch`, once its checkpoint exists."""
    def hook(metrics, path):
        if metrics["epoch"] == epoch:
            assert path is not None and path.exists()
            raise Killed
    return hook


@functools.lru_cache(maxsize=None)
def toy_class() -> type:
    """A pixel method in a few lines: how far each image's mean is from the normal images' mean
    (defined on first use: it imports torch; one class for the whole session)."""
    from novelty.methods.base import Method

    class Toy(Method):
        trained = False

        def fit(self, train, val):
            self.center = float(train.mean())

        def components(self, x, batch=256, train_mode=False):
            return {"score": (x.flatten(1).mean(1).double() - self.center).abs()}

    return Toy


@pytest.fixture
def toy_method():
    """The toy method registered for one test (as a user's own module would register it), and
    removed after it: no test leaves a method in the registry."""
    from novelty.methods import MethodSpec, register, unregister

    spec = register(MethodSpec(name="toy", variants=("toy",), reads=(), impl=toy_class(), display="ours: toy"))
    yield spec
    unregister("toy")


@pytest.fixture
def flaky_method(tmp_path):
    """Variant "flaky": the paper's method (as its base variant) that raises once per (class,
    seed), as its second epoch begins, after the first epoch's checkpoint exists, so a retry
    must resume from that checkpoint. Yields the folder of markers that each failure leaves."""
    from novelty.methods import TIAN2020, MethodSpec, register, unregister
    from novelty.methods.tian2020 import Tian2020

    markers = tmp_path / "markers"
    markers.mkdir()

    class FailOnce(Tian2020):  # defined here: a Ray sweep ships it to its workers by value
        marker_dir = str(markers)

        def begin_epoch(self):
            super().begin_epoch()
            self.begun = getattr(self, "begun", 0) + 1
            marker = Path(self.marker_dir) / f"c{self.cfg.normal_class}-s{self.cfg.seed}"
            if self.begun == 2 and not marker.exists():
                marker.touch()
                raise RuntimeError(f"injected failure as epoch 2 of {marker.name} begins")

    register(MethodSpec(name="flaky", variants=("flaky",), reads=TIAN2020.reads, impl=FailOnce,
                        columns=TIAN2020.columns, components=TIAN2020.components))
    yield markers
    unregister("flaky")


def image_tree(root: Path, n_train: int, shift: int, names=("dark", "bright")) -> Path:
    """A split ImageFolder tree of 36x36 PNGs, two classes; `shift` moves every pixel (another tree)."""
    from PIL import Image

    rng = np.random.default_rng(shift)
    for part, n in (("train", n_train), ("test", 6)):
        for k, name in enumerate(names):
            d = root / part / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                px = rng.integers(0, 80, (36, 36, 3)) + 150 * k + shift
                Image.fromarray(px.clip(0, 255).astype(np.uint8)).save(d / f"{i:04d}.png")
    return root


@pytest.fixture
def one_torch_thread():
    """Trials that train in the test's own process at torch's default threads unless a test sets
    them: on a machine of few, shared cores, 2 threads spin on each other's core (several times
    slower than 1). One thread for the test, whatever an earlier test left, then put back. (Use it
    where every comparison is between runs of one test, at the same threads.)"""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
