"""Dataset readers: each turns the files of one dataset format into an ImageSet of uint8
images (N, C, 32, 32) and int64 labels, checking every file for the shape and kind its slot
needs before it is used. A reader (`read_<dataset>`, named by the registry `novelty.datasets`)
takes the data root and returns (its sources: files, or folders whose files all count; a
decoder); the sources' paths, sizes and mtimes key the cache (`novelty.data.source_stamp`).

Data files are data: the CIFAR-10 python batches are pickles, read with an unpickler that
accepts only what that format holds (dicts, lists, strings, bytes, numbers and numpy
arrays), so a pickle planted in a data root cannot run code.
"""
from __future__ import annotations

import fcntl
import gzip
import importlib.util
import io
import pickle
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DataError

IMAGE_SIZE = 32
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class ImageSet:
    """A decoded dataset: uint8 images (N, C, 32, 32) and integer labels (N,)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    n_classes: int
    class_names: tuple[str, ...] = ()
    """Folder names of the classes (ImageFolder trees), index = label; empty for the others."""
    fingerprint: str = ""
    """Hash of the decoded tensors: part of every trial's key (see `fingerprint`)."""


def resize_uint8(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, 32, 32), bilinear, back to uint8."""
    if x.shape[-2:] == (IMAGE_SIZE, IMAGE_SIZE):
        return x.to(torch.uint8)
    out = []
    for chunk in x.split(4096):
        y = F.interpolate(chunk.float(), size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
        out.append(y.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


# ---------------------------------------------------------------- readers


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


def _mnist_like(root: Path, folder: str, tv_class: str, download: bool) -> list[Path]:
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


def _decode_mnist_like(files: list[Path]) -> ImageSet:
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


def _load_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise DataError(f"corrupt image {path}: {exc}") from exc


def _stack_images(paths: list[Path]) -> torch.Tensor:
    """Decode, resize each to 32x32 and stack: (N, 3, 32, 32) uint8."""
    out = torch.empty((len(paths), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)
    for i, p in enumerate(paths):
        img = torch.from_numpy(_load_image(p).copy()).permute(2, 0, 1)[None]
        out[i] = resize_uint8(img)[0]
    return out


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _imagefolder_sources(root: Path) -> list[Path]:
    """The tree's train/ and test/ folders (the cache's stamp walks them; decoding lists them)."""
    for part in ("train", "test"):
        if not (root / part).is_dir():
            raise DataError(f"{root} is not a split ImageFolder tree: missing {root / part}/")
    return [root / "train", root / "test"]


def _decode_imagefolder(root: Path) -> ImageSet:
    """Classes are the class folders of train/ and test/ together, sorted by name, so an
    anomaly-detection tree (train/good/, test/good/, test/<defect>/: outliers in the test
    split only, as MVTec AD lays it out) works as well as a classification tree."""
    classes = sorted({d.name for part in ("train", "test") for d in (root / part).iterdir() if d.is_dir()})
    if not classes:
        raise DataError(f"{root} has no class folders under train/ or test/ (expected train/<class>/*.png)")
    parts = []
    for part in ("train", "test"):
        paths, labels = [], []
        for k, name in enumerate(classes):
            files = _image_files(root / part / name) if (root / part / name).is_dir() else []
            paths += files
            labels += [k] * len(files)
        if not paths:
            raise DataError(f"{root / part} has no images in its class folders "
                            f"({', '.join(IMAGE_SUFFIXES)})")
        parts += [_stack_images(paths), torch.tensor(labels, dtype=torch.long)]
    return ImageSet(*parts, n_classes=len(classes), class_names=tuple(classes))


def _cifar_pickles(root: Path, download: bool) -> list[Path] | None:
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


def _decode_cifar_pickles(files: list[Path]) -> ImageSet:
    parts = [_cifar_batch(f) for f in files]
    xs, ys = [p[0] for p in parts], [p[1] for p in parts]
    return ImageSet(torch.cat(xs[:5]), torch.cat(ys[:5]), xs[5], ys[5], 10)


COIL_NAME = re.compile(r"obj(\d+)__(\d+)\.png$", re.IGNORECASE)


def _coil_files(root: Path) -> list[Path]:
    for folder in (root, root / "coil-100", root / "coil100"):
        if folder.is_dir():
            files = sorted((p for p in folder.iterdir() if COIL_NAME.search(p.name)),
                           key=lambda p: tuple(int(g) for g in COIL_NAME.search(p.name).groups()))  # type: ignore[union-attr]
            if files:
                return files
    raise DataError(f"no COIL-100 images (obj<K>__<angle>.png) in {root}")


def _decode_coil(files: list[Path]) -> ImageSet:
    """All images go in `train_*`; the COIL protocol draws its own test split."""
    objs = sorted({int(COIL_NAME.search(p.name).group(1)) for p in files})  # type: ignore[union-attr]
    index = {o: i for i, o in enumerate(objs)}
    labels = torch.tensor([index[int(COIL_NAME.search(p.name).group(1))] for p in files])  # type: ignore[union-attr]
    x = _stack_images(files)
    return ImageSet(x, labels, x[:0], labels[:0], n_classes=len(objs))


def _digits_csv() -> Path:
    """scikit-learn's bundled digits file, found without importing scikit-learn (~1.3 s a process)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise DataError("the digits dataset ships with scikit-learn, which is not installed: pip install scikit-learn")
    return Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"


def _decode_digits() -> ImageSet:
    """scikit-learn's bundled 8x8 digits, upsampled to 32x32, split 70/30 per class (fixed).
    Read as `sklearn.datasets.load_digits` reads it (1797 rows: 64 pixels in 0..16, the label)."""
    with gzip.open(_digits_csv(), "rt", encoding="utf-8") as fh:
        table = np.loadtxt(fh, delimiter=",")  # (1797, 65) float64
    images, target = table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)
    x = torch.from_numpy((images * (255.0 / 16.0)).round().astype(np.uint8))[:, None]
    y = torch.from_numpy(target).long()
    x = resize_uint8(x)
    rng = np.random.default_rng(0)
    train_idx, test_idx = [], []
    for k in range(10):
        idx = rng.permutation(np.flatnonzero(target == k))
        cut = int(round(0.7 * len(idx)))
        train_idx += idx[:cut].tolist()
        test_idx += idx[cut:].tolist()
    tr, te = torch.tensor(sorted(train_idx)), torch.tensor(sorted(test_idx))
    return ImageSet(x[tr], y[tr], x[te], y[te], 10)


# ---------------------------------------------------------------- the readers (novelty.datasets names them)

Reader = Callable[[Path, bool], tuple[list[Path], Callable[[], ImageSet]]]


def read_digits(root: Path, download: bool):
    return [_digits_csv()], _decode_digits


def _mnist(folder: str) -> Reader:
    def reader(root: Path, download: bool):
        files = _mnist_like(root, folder, folder, download)
        return files, lambda: _decode_mnist_like(files)
    return reader


read_mnist, read_fashion_mnist = _mnist("MNIST"), _mnist("FashionMNIST")


def read_cifar10(root: Path, download: bool):
    pickles = _cifar_pickles(root, download)
    if pickles is not None:
        return pickles, lambda: _decode_cifar_pickles(pickles)
    tree = root / "cifar10-jpeg" if (root / "cifar10-jpeg").is_dir() else root
    return _imagefolder_sources(tree), lambda: _decode_imagefolder(tree)


def read_imagefolder(root: Path, download: bool):
    return _imagefolder_sources(root), lambda: _decode_imagefolder(root)


def read_coil100(root: Path, download: bool):
    files = _coil_files(root)
    return files, lambda: _decode_coil(files)
