"""Dataset readers: each turns the files of one dataset format into an ImageSet of uint8
images (N, C, 32, 32) and int64 labels, checking every file for the shape and kind its slot
needs before it is used. A reader (`read_<dataset>`, named by the registry `novelty.data.datasets`)
takes the data root and returns (its sources: files, or folders whose files all count; a
decoder); the sources' paths, sizes and mtimes key the cache (`novelty.data.load.source_stamp`).

torchvision's layouts (MNIST's IDX files, CIFAR-10's python batches, --download) are read by
`novelty.data.formats`; image folders, COIL-100 and the embedded digits here.
"""
from __future__ import annotations

import gzip
import importlib.util
import re
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import DataError
from .formats import cifar_pickles, decode_cifar_pickles, decode_mnist_like, mnist_like_files
from .imageset import IMAGE_SIZE, ImageSet, resize_uint8  # noqa: F401 (IMAGE_SIZE: the readers' size)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


# ---------------------------------------------------------------- readers


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


# ---------------------------------------------------------------- the readers (novelty.data.datasets names them)

Reader = Callable[[Path, bool], tuple[list[Path], Callable[[], ImageSet]]]


def read_digits(root: Path, download: bool):
    return [_digits_csv()], _decode_digits


def _mnist(folder: str) -> Reader:
    def reader(root: Path, download: bool):
        files = mnist_like_files(root, folder, folder, download)
        return files, lambda: decode_mnist_like(files)
    return reader


read_mnist, read_fashion_mnist = _mnist("MNIST"), _mnist("FashionMNIST")


def read_cifar10(root: Path, download: bool):
    pickles = cifar_pickles(root, download)
    if pickles is not None:
        return pickles, lambda: decode_cifar_pickles(pickles)
    tree = root / "cifar10-jpeg" if (root / "cifar10-jpeg").is_dir() else root
    return _imagefolder_sources(tree), lambda: _decode_imagefolder(tree)


def read_imagefolder(root: Path, download: bool):
    return _imagefolder_sources(root), lambda: _decode_imagefolder(root)


def read_coil100(root: Path, download: bool):
    files = _coil_files(root)
    return files, lambda: _decode_coil(files)
