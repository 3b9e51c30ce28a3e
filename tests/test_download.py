"""Data on a cloud cluster: `--download` (torchvision, where a network exists) and `~` in --data-root.

No test here reaches the internet: torchvision's CIFAR-10 URL is pointed at this machine, at a
port where nothing listens (a network that refuses) or at a socket that never answers (one that
drops packets), so the tests behave the same with or without a network.
"""
from __future__ import annotations

import socket
import threading
import time

import pytest

from novelty.data import formats
from novelty.data.load import load_imageset
from novelty.errors import DataError
from novelty.sweep.grid import load_sweep
from novelty.sweep.launch import main

from conftest import REPO


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def _point_cifar_at(monkeypatch, port: int) -> None:
    import torchvision.datasets as tvd

    monkeypatch.setattr(tvd.CIFAR10, "url", f"http://127.0.0.1:{port}/cifar-10-python.tar.gz")


def test_tilde_in_data_root_is_this_machines_home(fake_mnist, monkeypatch):
    """'~/data' that reached the program unexpanded (quoted past a shell, as `ray submit` and
    sbatch pass it) means the home folder of the machine the trial runs on."""
    monkeypatch.setenv("HOME", str(fake_mnist.parent))
    here = load_imageset("mnist", str(fake_mnist), cache_dir="")
    via_home = load_imageset("mnist", "~/data", cache_dir="")
    assert via_home.fingerprint == here.fingerprint


def test_download_without_a_network_is_one_line_not_a_hang(tmp_path, monkeypatch, closed_port):
    _point_cifar_at(monkeypatch, closed_port)
    t0 = time.monotonic()
    with pytest.raises(DataError, match=r"--download could not fetch CIFAR-10 into .*Connection refused.*"
                                        r"put the files under --data-root"):
        load_imageset("cifar10", str(tmp_path / "data"), cache_dir="", download=True)
    assert time.monotonic() - t0 < 30


def test_a_download_that_stalls_times_out(tmp_path, monkeypatch):
    """A network that drops packets: the server takes the connection and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)  # connections complete in the kernel's backlog; nothing ever reads them
        _point_cifar_at(monkeypatch, server.getsockname()[1])
        monkeypatch.setattr(formats, "DOWNLOAD_TIMEOUT", 1.0)
        t0 = time.monotonic()
        with pytest.raises(DataError, match="timed out"):
            load_imageset("cifar10", str(tmp_path / "data"), cache_dir="", download=True)
        assert time.monotonic() - t0 < 20
    assert socket.getdefaulttimeout() is None  # the process's default is restored


def test_trials_starting_together_on_a_node_download_once(tmp_path):
    """Trials packed on one node share its data root: one downloads, the others wait and find the files."""
    root, fetched, start = tmp_path / "data", [], threading.Barrier(3)

    def fetch():
        fetched.append(threading.get_ident())
        time.sleep(0.5)  # while the others are waiting
        (root / "files").write_text("done")

    def trial():
        start.wait()
        formats.download_once(root, "x", fetch, done=lambda: (root / "files").exists())

    threads = [threading.Thread(target=trial) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(fetched) == 1 and (root / "files").read_text() == "done"


def test_sweep_download_option_reaches_the_driver(tmp_path, monkeypatch, closed_port, capsys):
    """`--download` is a sweep option: the driver downloads (here: fails to, in one line, exit 3: a data error)
    while planning, before Ray starts."""
    _point_cifar_at(monkeypatch, closed_port)
    sweep = load_sweep(str(REPO / "sweeps" / "cifar10.py"))
    argv = ["--data-root", str(tmp_path / "data"), "--download", "--results", str(tmp_path / "results"),
            "--classes", "0", "--seeds", "0", "--variants", "full", "--no-report"]
    assert main(sweep, argv) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--download could not fetch CIFAR-10" in err[0], err
