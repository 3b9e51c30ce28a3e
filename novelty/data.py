"""Datasets as cached uint8 tensors, and the one-class splits of DESIGN §2.

Every dataset is decoded once into `images` (N, C, 32, 32) uint8 and `labels` (N,)
int64 for its train and test parts, then cached under `cache_dir` keyed by the
source files' size and mtime, so the next trial on it starts in well under a second.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_SIZE = 32
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


class DataError(RuntimeError):
    """The dataset the user pointed at is missing, incomplete or corrupt."""


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

    @property
    def channels(self) -> int:
        return int(self.train_x.shape[1])


@dataclass(frozen=True)
class Split:
    """A one-class split: images as float in [-1, 1]; test labels 1 = outlier."""

    train: torch.Tensor  # (n_train, C, 32, 32) normal only
    val: torch.Tensor  # (n_val, C, 32, 32) normal only
    test: torch.Tensor  # (n_test, C, 32, 32)
    test_labels: torch.Tensor  # (n_test,) 0 = normal, 1 = outlier
    normal_class: int


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return x.float().div(127.5).sub(1.0)


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


def _mnist_like(root: Path, folder: str, tv_class: str, download: bool) -> list[Path]:
    raw = root / folder / "raw"
    if download:
        import torchvision.datasets as tvd

        for train in (True, False):
            getattr(tvd, tv_class)(root=str(root), train=train, download=True)
    if not raw.is_dir():
        raise DataError(f"no {folder} data under {root}: expected {raw} (pass --download where a network exists)")
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    return [_idx_file(raw, s) for s in stems]


def _decode_mnist_like(files: list[Path]) -> ImageSet:
    arrays = [read_idx(f) for f in files]
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


def _imagefolder_files(root: Path) -> list[Path]:
    for part in ("train", "test"):
        if not (root / part).is_dir():
            raise DataError(f"{root} is not a split ImageFolder tree: missing {root / part}/")
    return sorted(p for part in ("train", "test") for p in (root / part).rglob("*") if p.is_file())


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
    if download and not folder.is_dir():
        import torchvision.datasets as tvd

        tvd.CIFAR10(root=str(root), train=True, download=True)
    if not folder.is_dir():
        return None
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [n for n in names if not (folder / n).exists()]
    if missing:
        raise DataError(f"{folder} is incomplete: missing {', '.join(missing)}")
    return [folder / n for n in names]


def _decode_cifar_pickles(files: list[Path]) -> ImageSet:
    import pickle

    xs, ys = [], []
    for f in files:
        try:
            with open(f, "rb") as fh:
                batch = pickle.load(fh, encoding="latin1")
            xs.append(torch.from_numpy(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)))
            ys.append(torch.tensor(batch["labels"], dtype=torch.long))
        except (OSError, EOFError, pickle.UnpicklingError, KeyError, ValueError) as exc:
            raise DataError(f"corrupt CIFAR-10 batch {f}: {exc}") from exc
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


def _decode_digits() -> ImageSet:
    """scikit-learn's bundled 8x8 digits, upsampled to 32x32, split 70/30 per class (fixed)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy((d.images * (255.0 / 16.0)).round().astype(np.uint8))[:, None]
    y = torch.from_numpy(d.target).long()
    x = resize_uint8(x)
    rng = np.random.default_rng(0)
    train_idx, test_idx = [], []
    for k in range(10):
        idx = rng.permutation(np.flatnonzero(d.target == k))
        cut = int(round(0.7 * len(idx)))
        train_idx += idx[:cut].tolist()
        test_idx += idx[cut:].tolist()
    tr, te = torch.tensor(sorted(train_idx)), torch.tensor(sorted(test_idx))
    return ImageSet(x[tr], y[tr], x[te], y[te], 10)


# ---------------------------------------------------------------- cache + entry point


def fingerprint(ds: ImageSet) -> str:
    """Content hash of a decoded dataset (pixels, labels, split, class count): the same data
    copied elsewhere gets the same fingerprint, another tree or version another one."""
    h = hashlib.sha256(f"{ds.n_classes}".encode())
    for t in (ds.train_x, ds.train_y, ds.test_x, ds.test_y):
        h.update(f"|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _fingerprint(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _cached(name: str, files: list[Path], cache_dir: str, decode) -> ImageSet:
    path = Path(cache_dir) / f"{name}-{_fingerprint(files)}.pt"
    if path.exists():
        try:
            return ImageSet(**torch.load(path, weights_only=True))
        except (OSError, RuntimeError, EOFError, TypeError, ValueError) as exc:  # torn or foreign file
            print(f"novelty: warning: ignoring the unreadable cache file {path} ({exc}); decoding again")
    ds = decode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({k: getattr(ds, k) for k in ("train_x", "train_y", "test_x", "test_y", "n_classes",
                                                "class_names")}, tmp)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache folder only costs speed
    return ds


def load_imageset(dataset: str, data_root: str = "", cache_dir: str = "", download: bool = False) -> ImageSet:
    """Decode (or read from cache) one of the supported datasets, with its fingerprint."""
    ds = _load_imageset(dataset, data_root, cache_dir, download)
    return dataclasses.replace(ds, fingerprint=fingerprint(ds))


def _load_imageset(dataset: str, data_root: str, cache_dir: str, download: bool) -> ImageSet:
    if dataset == "digits":
        import sklearn.datasets

        src = Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"
        return _cached("digits", [src], cache_dir, _decode_digits) if cache_dir else _decode_digits()
    if not data_root:
        raise DataError(f"dataset {dataset!r} needs --data-root")
    root = Path(data_root)
    if not root.is_dir() and not download:
        raise DataError(f"data root {root} does not exist")
    if dataset in ("mnist", "fashion_mnist"):
        folder, tv = ("MNIST", "MNIST") if dataset == "mnist" else ("FashionMNIST", "FashionMNIST")
        files = _mnist_like(root, folder, tv, download)
        decode = lambda: _decode_mnist_like(files)  # noqa: E731
    elif dataset == "cifar10":
        pickles = _cifar_pickles(root, download)
        if pickles is not None:
            files, decode = pickles, (lambda: _decode_cifar_pickles(pickles))
        else:
            tree = root / "cifar10-jpeg" if (root / "cifar10-jpeg").is_dir() else root
            files = _imagefolder_files(tree)
            decode = lambda: _decode_imagefolder(tree)  # noqa: E731
    elif dataset == "imagefolder":
        files = _imagefolder_files(root)
        decode = lambda: _decode_imagefolder(root)  # noqa: E731
    elif dataset == "coil100":
        files = _coil_files(root)
        decode = lambda: _decode_coil(files)  # noqa: E731
    else:
        raise DataError(f"unknown dataset {dataset!r}")
    return _cached(dataset, files, cache_dir, decode) if cache_dir else decode()


def one_class_split(ds: ImageSet, dataset: str, normal_class: int, seed: int, val_fraction: float) -> Split:
    """The paper's protocol (DESIGN §2): normal-only train/val, labelled test."""
    gen = torch.Generator().manual_seed(seed)
    if dataset == "coil100":
        if normal_class == -1:
            normal_class = int(torch.randint(ds.n_classes, (1,), generator=gen))
        _check_class(normal_class, ds.n_classes, dataset)
        normal = ds.train_x[ds.train_y == normal_class]
        perm = torch.randperm(len(normal), generator=gen)
        n_tr = int(round(0.8 * len(normal)))
        train_pool, test_in = normal[perm[:n_tr]], normal[perm[n_tr:]]
        others = ds.train_x[ds.train_y != normal_class]
        test_out = others[torch.randperm(len(others), generator=gen)[: len(test_in)]]
        test = torch.cat([test_in, test_out])
        labels = torch.cat([torch.zeros(len(test_in)), torch.ones(len(test_out))]).long()
    else:
        _check_class(normal_class, ds.n_classes, dataset)
        train_pool = ds.train_x[ds.train_y == normal_class]
        test, labels = ds.test_x, (ds.test_y != normal_class).long()
    perm = torch.randperm(len(train_pool), generator=gen)
    n_val = int(round(val_fraction * len(train_pool)))
    val, train = train_pool[perm[:n_val]], train_pool[perm[n_val:]]
    name = _class_name(ds, normal_class)
    if len(train) == 0:
        raise DataError(f"normal class {name} of {dataset} has no training images left after the validation "
                        f"hold-out ({len(train_pool)} in its train split)")
    if labels.sum() == 0:
        raise DataError(f"the test split of {dataset} has only normal-class ({name}) images: an AUC needs "
                        "outliers too (for an ImageFolder tree: add test/<other class>/ folders)")
    if labels.sum() == len(labels):
        raise DataError(f"the test split of {dataset} has no image of the normal class {name}: an AUC needs "
                        f"normal test images too (for an ImageFolder tree: add test/{name.split(' ')[0]}/)")
    return Split(to_unit_range(train), to_unit_range(val), to_unit_range(test), labels, normal_class)


def check_trainable(ds: ImageSet, dataset: str, normal_class: int, val_fraction: float, min_train: int) -> None:
    """Fail before any training when a trial could not take one optimiser step (found before
    Ray starts, so a sweep does not retry a trial that cannot work)."""
    if dataset == "coil100" and normal_class == -1:
        return  # the seed draws the class; every COIL object has 72 views
    _check_class(normal_class, ds.n_classes, dataset)
    n_pool = int((ds.train_y == normal_class).sum())
    if dataset == "coil100":
        n_pool = int(round(0.8 * n_pool))
    n_train = n_pool - int(round(val_fraction * n_pool))
    if n_train < min_train:
        raise DataError(f"normal class {_class_name(ds, normal_class)} of {dataset} has {n_train} training image(s) after the "
                        f"validation hold-out; a trial needs at least {min_train} (one batch of >= 2 per rank)")


def _class_name(ds: ImageSet, k: int) -> str:
    return f"{ds.class_names[k]} (index {k})" if k < len(ds.class_names) else str(k)


def class_index(ds: ImageSet, name: str) -> int:
    """The index of a class given by its folder name (ImageFolder trees) or as a number."""
    if name.lstrip("-").isdigit():
        return int(name)
    if name in ds.class_names:
        return ds.class_names.index(name)
    known = ", ".join(f"{i}={c}" for i, c in enumerate(ds.class_names)) or "numbers only for this dataset"
    raise DataError(f"no class named {name!r}; classes: {known}")


def _check_class(k: int, n: int, dataset: str) -> None:
    if not 0 <= k < n:
        raise DataError(f"normal class {k} is out of range for {dataset} (classes 0..{n - 1})")
