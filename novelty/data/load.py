"""Datasets as cached uint8 tensors, and the one-class splits of docs/design.md §2.

Every dataset is decoded once by its reader (`novelty.data.readers`) into `images` (N, C, 32, 32)
uint8 and `labels` (N,) int64 for its train and test parts, then cached under `cache_dir`
with its fingerprint, keyed by the source files' paths, sizes and mtimes (`source_stamp`),
so the next trial on it starts in well under a second: one stat per source file, the
tensors memory-mapped, nothing hashed. The one-class protocol turns it into a Split.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import DataError
from .datasets import dataset_names, dataset_spec
from .imageset import ImageSet


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


# ---------------------------------------------------------------- cache + entry point


def fingerprint(ds: ImageSet) -> str:
    """Content hash of a decoded dataset (pixels, labels, split, class count): the same data
    copied elsewhere gets the same fingerprint, another tree or version another one."""
    h = hashlib.sha256(f"{ds.n_classes}".encode())
    for t in (ds.train_x, ds.train_y, ds.test_x, ds.test_y):
        h.update(f"|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.contiguous().numpy())  # the tensor's bytes, not copied
    return h.hexdigest()[:16]


def source_stamp(sources: list[Path]) -> str:
    """Hash of the source files' paths, sizes and mtimes, folders walked in name order: it changes
    when a file is added, removed, replaced or touched. One stat per file and no path resolving,
    so checking a cached 60,000-image tree costs a small fraction of a second."""
    h = hashlib.sha256(b"novelty-cache-2\n")
    for src in sources:
        _stamp_into(h, os.path.abspath(src))
    return h.hexdigest()[:16]


def _stamp_into(h, path: str) -> None:
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return
    with os.scandir(path) as entries:
        entries = sorted(entries, key=lambda e: e.name)
    lines = []
    for e in entries:
        if e.is_dir():
            _stamp_into(h, e.path)
        else:
            es = e.stat()
            lines.append(f"{e.path}|{es.st_size}|{es.st_mtime_ns}\n")
    h.update("".join(lines).encode())


FIELDS = ("train_x", "train_y", "test_x", "test_y", "n_classes", "class_names", "fingerprint")
_LOADED: dict[str, tuple[Path, ImageSet]] = {}
"""The dataset this process last read from each cache, by dataset name: a sweep's reused worker
reads it once, and checks the sources' stamp on every trial."""


def _cached(name: str, sources: list[Path], cache_dir: str, decode) -> ImageSet:
    """The decoded dataset with its fingerprint, from the cache file of these sources' stamp:
    the tensors memory-mapped and the fingerprint stored beside them when it was decoded
    (computed once per cached dataset, not per trial); decoded and cached on a miss."""
    path = Path(cache_dir) / f"{name}-{source_stamp(sources)}.pt"
    if name in _LOADED and _LOADED[name][0] == path:
        return _LOADED[name][1]
    if path.exists():
        try:
            saved = torch.load(path, weights_only=True, mmap=True)
            ds = ImageSet(**{k: saved[k] for k in FIELDS[:-1]}, fingerprint=saved.get("fingerprint", ""))
            ds = ds if ds.fingerprint else dataclasses.replace(ds, fingerprint=fingerprint(ds))
            _LOADED[name] = (path, ds)
            return ds
        except (OSError, RuntimeError, EOFError, TypeError, ValueError, KeyError) as exc:  # torn or foreign file
            print(f"novelty: warning: ignoring the unreadable cache file {path} ({exc}); decoding again")
    ds = decode()
    ds = dataclasses.replace(ds, fingerprint=fingerprint(ds))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({k: getattr(ds, k) for k in FIELDS}, tmp)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache folder only costs speed
    _LOADED[name] = (path, ds)
    return ds


def load_imageset(dataset: str, data_root: str = "", cache_dir: str = "", download: bool = False) -> ImageSet:
    """Decode (or read from cache) one of the supported datasets, with its fingerprint."""
    ds = _load_imageset(dataset, data_root, cache_dir, download)
    return ds if ds.fingerprint else dataclasses.replace(ds, fingerprint=fingerprint(ds))


def _load_imageset(dataset: str, data_root: str, cache_dir: str, download: bool) -> ImageSet:
    if dataset not in dataset_names():
        raise DataError(f"unknown dataset {dataset!r}; known: {', '.join(dataset_names())}")
    spec = dataset_spec(dataset)
    data_root = os.path.expanduser(data_root)  # '~/data' that reached us unexpanded (quoted): this node's home
    cache_dir = os.path.expanduser(cache_dir)  # likewise a '~/...' cache folder
    if spec.needs_root:
        if not data_root:
            raise DataError(f"dataset {dataset!r} needs --data-root")
        if not Path(data_root).is_dir() and not download:
            raise DataError(f"data root {data_root} does not exist")
    sources, decode = spec.load_reader()(Path(data_root), download)
    return _cached(dataset, sources, cache_dir, decode) if cache_dir else decode()


def one_class_split(ds: ImageSet, dataset: str, normal_class: int, seed: int, val_fraction: float) -> Split:
    """The paper's protocol (docs/design.md §2): normal-only train/val, labelled test."""
    gen = torch.Generator().manual_seed(seed)
    if dataset_spec(dataset).protocol == "holdout":
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
    holdout = dataset_spec(dataset).protocol == "holdout"
    if holdout and normal_class == -1:
        return  # the seed draws the class (COIL-100: every object has 72 views)
    _check_class(normal_class, ds.n_classes, dataset)
    n_pool = int((ds.train_y == normal_class).sum())
    if holdout:
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
