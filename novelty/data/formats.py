"""torchvision's dataset layouts, read without torchvision: MNIST-like IDX files (plain or
gzipped) and CIFAR-10's python batches (pickles, read with an unpickler that accepts only what
that format holds, so a pickle planted in a data root cannot run code); and `--download`,
through torchvision, once per data root."""
from __future__ import annotations

import fcntl
import gzip
import io
import pickle
import socket
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import DataError
from .imageset import ImageSet, resize_uint8


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST format), plain or .gz; a short file names itself."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is truncated: header needs {header} bytes, file has {len(data)}")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    need = header + int(np.prod(shape))
    if len(data) != need:
        raise DataError(f"{path} is truncated or padded: expected {need} bytes for shape {shape}, found {len(data)}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _idx_file(raw: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (raw / name).exists():
            return raw / name
    raise DataError(f"missing {raw / stem} (looked for it and {stem}.gz)")


DOWNLOAD_TIMEOUT = 120.0
"""Seconds a --download waits on any one network read before it fails: a network that drops
packets instead of refusing them would otherwise hang the trial."""


def download_once(root: Path, name: str, fetch: Callable[[], object], done: Callable[[], bool]) -> None:
    """Run `fetch` (torchvision's download of `name` into `root`) unless `done()`, one process at a
    time per data root: the trials that start together on a node wait on a lock file in `root` and
    find the files there. A stalled read fails after DOWNLOAD_TIMEOUT s; any failure is one DataError."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = open(root / ".novelty-download.lock", "a")
    except OSError as exc:
        raise DataError(f"--download: cannot write to the data root {root} ({exc})") from exc
    with lock:  # closing the file releases the lock
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done():
            return
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
        try:
            fetch()
        except (OSError, RuntimeError) as exc:  # no network or name service, a timeout, every mirror failed, bad MD5
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise DataError(f"--download could not fetch {name} into {root} ({reason}); on a machine without a "
                            "network, put the files under --data-root instead (cluster/README.md)") from exc
        finally:
            socket.setdefaulttimeout(previous)


def mnist_like_files(root: Path, folder: str, tv_class: str, download: bool) -> list[Path]:
    raw = root / folder / "raw"
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    if download:
        import torchvision.datasets as tvd

        def fetch() -> None:
            for train in (True, False):
                getattr(tvd, tv_class)(root=str(root), train=train, download=True)
        download_once(root, folder, fetch, lambda: all((raw / s).exists() or (raw / f"{s}.gz").exists() for s in stems))
    if not raw.is_dir():
        raise DataError(f"no {folder} data under {root}: expected {raw} (pass --download where a network exists)")
    return [_idx_file(raw, s) for s in stems]


def decode_mnist_like(files: list[Path]) -> ImageSet:
    arrays = [read_idx(f) for f in files]
    for f, a, ndim in zip(files, arrays, (3, 1, 3, 1)):
        if a.ndim != ndim:
            raise DataError(f"{f} holds a {a.ndim}-d array; its slot needs {ndim}-d "
                            f"({'images (N, H, W)' if ndim == 3 else 'labels (N,)'})")
    for f, a in zip(files[1::2], arrays[1::2]):
        if len(a) and a.max() > 9:
            raise DataError(f"{f} holds label {int(a.max())}; MNIST-like labels are 0..9")
    tr_x, tr_y, te_x, te_y = (torch.from_numpy(a.copy()) for a in arrays)
    if tr_x.shape[0] != tr_y.shape[0] or te_x.shape[0] != te_y.shape[0]:
        raise DataError(f"image and label counts differ in {files[0].parent}")
    return ImageSet(resize_uint8(tr_x[:, None]), tr_y.long(), resize_uint8(te_x[:, None]), te_y.long(), 10)


def cifar_pickles(root: Path, download: bool) -> list[Path] | None:
    folder = root / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if download:
        import torchvision.datasets as tvd

        download_once(root, "CIFAR-10", lambda: tvd.CIFAR10(root=str(root), train=True, download=True),
                      lambda: all((folder / n).exists() for n in names))
    if not folder.is_dir():
        return None
    missing = [n for n in names if not (folder / n).exists()]
    if missing:
        raise DataError(f"{folder} is incomplete: missing {', '.join(missing)}")
    return [folder / n for n in names]


class _CifarUnpickler(pickle.Unpickler):
    """Only what a CIFAR-10 python batch holds: containers, strings and numbers are built by
    the pickle machine itself; of callables, only numpy's array reconstruction (and the
    `_codecs.encode` a protocol-2 pickle of bytes uses). Anything else is refused, unrun."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused {module}.{name}: a CIFAR-10 batch holds only arrays, lists, "
                                         "strings and dicts")
        return super().find_class(module, name)


def _cifar_batch(f: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One CIFAR-10 python batch: images (N, 3, 32, 32) uint8 and labels (N,), checked."""
    try:
        batch = _CifarUnpickler(io.BytesIO(f.read_bytes()), encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DataError(f"corrupt CIFAR-10 batch {f}: {exc}") from exc
    if not isinstance(batch, dict):
        raise DataError(f"corrupt CIFAR-10 batch {f}: holds a {type(batch).__name__}, not a dict")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"corrupt CIFAR-10 batch {f}: 'data' must be a uint8 array of shape (N, 3072)")
    if not isinstance(labels, list) or len(labels) != len(data) or \
            not all(isinstance(y, int) and 0 <= y < 10 for y in labels):
        raise DataError(f"corrupt CIFAR-10 batch {f}: 'labels' must be {len(data)} integers in 0..9")
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.tensor(labels, dtype=torch.long)


def decode_cifar_pickles(files: list[Path]) -> ImageSet:
    parts = [_cifar_batch(f) for f in files]
    xs, ys = [p[0] for p in parts], [p[1] for p in parts]
    return ImageSet(torch.cat(xs[:5]), torch.cat(ys[:5]), xs[5], ys[5], 10)
