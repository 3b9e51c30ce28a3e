"""Datasets, the one-class protocol, the tensor cache, and bad data."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import novelty.data.load
from conftest import REPO, SHARED_DATA, write_idx
from novelty.data.load import _LOADED, DataError, fingerprint, load_imageset, one_class_split
from novelty.data.formats import read_idx
from novelty.store.results import read_rows


def test_digits_protocol(tmp_path):
    ds = load_imageset("digits", cache_dir=str(tmp_path))
    assert ds.train_x.shape[1:] == (1, 32, 32) and ds.train_x.dtype == torch.uint8
    n = len(ds.train_x) + len(ds.test_x)
    assert n == 1797 and abs(len(ds.train_x) / n - 0.7) < 0.01
    s = one_class_split(ds, "digits", 3, seed=0, val_fraction=0.15)
    normal_train = int((ds.train_y == 3).sum())
    assert len(s.train) + len(s.val) == normal_train
    assert len(s.val) == round(0.15 * normal_train)
    assert s.train.min() >= -1 and s.train.max() <= 1
    assert s.test_labels.tolist() == (ds.test_y != 3).long().tolist()
    # the seed picks the validation images; the test split never changes
    s1 = one_class_split(ds, "digits", 3, seed=1, val_fraction=0.15)
    assert not torch.equal(s.val, s1.val) and torch.equal(s.test, s1.test)


def test_digits_read_as_sklearn_reads_them_without_importing_it():
    """The embedded dataset is read from scikit-learn's file with numpy (no ~1.3 s sklearn import in
    every trial process): the same images and labels as `load_digits`, so the same fingerprint."""
    from sklearn.datasets import load_digits

    from novelty.data.readers import _decode_digits

    d, ds = load_digits(), _decode_digits()
    assert torch.equal(torch.cat([ds.train_y, ds.test_y]).sort().values, torch.from_numpy(d.target).long().sort().values)
    # rows written when sklearn decoded it (before this reader) carry this fingerprint in their key
    assert fingerprint(ds) == "9b91b47df4a73fce"
    code = ("import sys; from novelty.data.load import load_imageset; load_imageset('digits'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn'))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert p.returncode == 0 and p.stdout.strip() == "[]", p.stdout + p.stderr


def test_cache_is_reused_and_fast(fake_mnist, tmp_path):
    cache = tmp_path / "cache"
    first = load_imageset("mnist", str(fake_mnist), str(cache))
    assert len(list(cache.glob("mnist-*.pt"))) == 1
    t0 = time.perf_counter()
    second = load_imageset("mnist", str(fake_mnist), str(cache))
    assert time.perf_counter() - t0 < 1.0
    assert torch.equal(first.train_x, second.train_x) and torch.equal(first.test_y, second.test_y)
    # touching a source file changes its mtime: a new cache entry, not stale data
    f = fake_mnist / "MNIST" / "raw" / "train-images-idx3-ubyte"
    os.utime(f, (time.time() + 10, time.time() + 10))
    load_imageset("mnist", str(fake_mnist), str(cache))
    assert len(list(cache.glob("mnist-*.pt"))) == 2


def test_mnist_resized_to_32(fake_mnist):
    ds = load_imageset("mnist", str(fake_mnist))
    assert ds.train_x.shape == (90, 1, 32, 32) and ds.test_x.shape == (60, 1, 32, 32)
    assert ds.n_classes == 10


def test_truncated_idx_names_the_file(fake_mnist):
    f = fake_mnist / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.*truncated"):
        load_imageset("mnist", str(fake_mnist))


def test_idx_roundtrip(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a", a)
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), a)
    (tmp_path / "b").write_bytes(b"\x00\x00\x0d\x01")
    with pytest.raises(DataError, match="magic"):
        read_idx(tmp_path / "b")


def test_imagefolder_and_corrupt_image(fake_imagefolder):
    ds = load_imageset("imagefolder", str(fake_imagefolder))
    assert ds.train_x.shape == (24, 3, 32, 32) and ds.n_classes == 2
    assert ds.test_y.tolist() == [0] * 6 + [1] * 6
    bad = fake_imagefolder / "test" / "bright" / "0003.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DataError, match="corrupt image .*0003.png"):
        load_imageset("imagefolder", str(fake_imagefolder))


def test_coil100_protocol(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for obj in range(1, 6):
        for angle in range(0, 360, 30):  # 12 views per object
            px = rng.integers(0, 255, (128, 128, 3)).astype(np.uint8)
            Image.fromarray(px).save(tmp_path / f"obj{obj}__{angle}.png")
    ds = load_imageset("coil100", str(tmp_path))
    assert ds.n_classes == 5 and len(ds.train_x) == 60
    s = one_class_split(ds, "coil100", -1, seed=4, val_fraction=0.0)
    assert 0 <= s.normal_class < 5
    assert len(s.train) == round(0.8 * 12)
    n_in = int((s.test_labels == 0).sum())
    assert n_in == 12 - len(s.train) and int(s.test_labels.sum()) == n_in  # outliers are half the test set
    again = one_class_split(ds, "coil100", -1, seed=4, val_fraction=0.0)
    assert again.normal_class == s.normal_class and torch.equal(again.test, s.test)


def test_bad_inputs(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_imageset("mnist", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="expected .*MNIST/raw"):
        load_imageset("mnist", str(tmp_path))
    with pytest.raises(DataError, match="needs --data-root"):
        load_imageset("cifar10", "")
    ds = load_imageset("digits")
    with pytest.raises(DataError, match="normal class 10 is out of range"):
        one_class_split(ds, "digits", 10, 0, 0.15)


@pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw").is_dir(), reason="../shared/data is absent")
def test_shared_mnist_is_exact():
    ds = load_imageset("mnist", str(SHARED_DATA))
    assert ds.train_x.shape == (60000, 1, 32, 32) and ds.test_x.shape == (10000, 1, 32, 32)
    assert torch.bincount(ds.test_y).tolist()[:2] == [980, 1135]
    committed = read_rows(str(REPO / "results" / "mnist"))["data_fingerprint"]
    assert set(committed) == {ds.fingerprint}  # the fingerprint (every MNIST key's data part) never moves


def test_the_fingerprint_is_cached_with_the_data(fake_imagefolder, tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    first = load_imageset("imagefolder", str(fake_imagefolder), cache)
    assert first.fingerprint == fingerprint(first)
    _LOADED.clear()  # a new process: reads the cache file, hashes nothing

    def no_hashing(ds):
        raise AssertionError("fingerprint recomputed from a valid cache")

    monkeypatch.setattr(novelty.data.load, "fingerprint", no_hashing)
    second = load_imageset("imagefolder", str(fake_imagefolder), cache)
    assert second.fingerprint == first.fingerprint and torch.equal(second.test_x, first.test_x)


def test_a_process_reads_its_cache_once_but_checks_the_sources_every_time(fake_imagefolder, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = load_imageset("imagefolder", str(fake_imagefolder), str(cache))

    def no_reading(*args, **kwargs):
        raise AssertionError("the cache file read again")

    monkeypatch.setattr(torch, "load", no_reading)
    assert load_imageset("imagefolder", str(fake_imagefolder), str(cache)) is first
    monkeypatch.undo()
    # an image replaced in place (the folder's own mtime unchanged) is new data: new stamp, new fingerprint
    from PIL import Image

    img = fake_imagefolder / "test" / "dark" / "0000.png"
    Image.fromarray(np.full((40, 40, 3), 255, np.uint8)).save(img)
    os.utime(img, (time.time() + 5, time.time() + 5))
    changed = load_imageset("imagefolder", str(fake_imagefolder), str(cache))
    assert changed.fingerprint != first.fingerprint and len(list(cache.glob("imagefolder-*.pt"))) == 2
    # a file added anywhere in the tree is noticed too
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(fake_imagefolder / "train" / "dark" / "extra.png")
    grown = load_imageset("imagefolder", str(fake_imagefolder), str(cache))
    assert len(grown.train_x) == len(first.train_x) + 1 and len(list(cache.glob("imagefolder-*.pt"))) == 3


def _cifar_batches(root, n=20, planted=None):
    """A cifar-10-batches-py folder as the original: protocol-2 pickles of dicts with bytes keys."""
    import pickle

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"batch_label": b"x", b"labels": [int(v) for v in np.arange(n) % 10],
                 b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"a.png"] * n}
        with open(folder / name, "wb") as fh:
            pickle.dump(planted if name == "data_batch_3" and planted is not None else batch, fh, protocol=2)
    return folder


class _Planted:
    """Unpickling this runs a command (what a planted pickle in a data root would do)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_cifar_pickles_are_read_as_data(tmp_path):
    _cifar_batches(tmp_path / "ok")
    ds = load_imageset("cifar10", str(tmp_path / "ok"))
    assert ds.train_x.shape == (100, 3, 32, 32) and ds.test_x.shape == (20, 3, 32, 32)
    assert ds.train_y.tolist()[:10] == list(range(10))


def test_a_planted_pickle_in_a_cifar_folder_does_not_run(tmp_path):
    marker = tmp_path / "ran"
    _cifar_batches(tmp_path / "bad", planted=_Planted(marker))
    with pytest.raises(DataError, match="data_batch_3.*refused posix.system|data_batch_3.*refused"):
        load_imageset("cifar10", str(tmp_path / "bad"))
    assert not marker.exists()


def test_a_cifar_batch_of_the_wrong_shape_names_itself(tmp_path):
    folder = _cifar_batches(tmp_path / "odd")
    import pickle

    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]}, fh, protocol=2)
    with pytest.raises(DataError, match="test_batch.*shape"):
        load_imageset("cifar10", str(tmp_path / "odd"))


def test_idx_file_in_the_wrong_slot_names_itself(fake_mnist):
    raw = fake_mnist / "MNIST" / "raw"
    (raw / "train-labels-idx1-ubyte").write_bytes((raw / "train-images-idx3-ubyte").read_bytes())
    with pytest.raises(DataError, match="train-labels-idx1-ubyte holds a 3-d array"):
        load_imageset("mnist", str(fake_mnist))
