"""--preprocess gcn: per-image global contrast normalisation (l1), then a min-max into [-1, 1]
whose constants come from the trial's own normal training images only."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from novelty.config import ConfigError, TrialConfig
from novelty.data.load import ImageSet, one_class_split
from novelty.data.preprocess import GCN_CHUNK, MAD_FLOOR, apply_preprocess, gcn, gcn_constants


def _imageset(seed: int = 0) -> ImageSet:
    gen = torch.Generator().manual_seed(seed)
    train_y = torch.arange(60) % 3
    test_y = torch.arange(30) % 3
    train_x = torch.randint(0, 256, (60, 3, 32, 32), generator=gen, dtype=torch.uint8)
    test_x = torch.randint(0, 256, (30, 3, 32, 32), generator=gen, dtype=torch.uint8)
    return ImageSet(train_x, train_y, test_x, test_y, n_classes=3, fingerprint="x")


def test_gcn_image_has_mean_zero_and_mean_absolute_deviation_one():
    x = torch.rand(5, 3, 32, 32) * torch.tensor([0.1, 1.0, 3.0, 7.0, 0.5])[:, None, None, None] + 2.0
    g = gcn(x)
    assert g.shape == x.shape
    flat = g.flatten(1).double()
    assert torch.allclose(flat.mean(1), torch.zeros(5, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(flat.abs().mean(1), torch.ones(5, dtype=torch.float64), atol=1e-5)
    # contrast-normalised: an image and an affine (brighter, higher-contrast) copy of it are one image
    assert torch.allclose(gcn(3.0 * x + 0.7), g, atol=1e-5)


def test_train_images_span_minus_one_to_one_and_other_images_share_the_map():
    split = one_class_split(_imageset(), "cifar10", 1, seed=0, val_fraction=0.2)
    out = apply_preprocess(split, "gcn")
    assert out.train.min().item() == pytest.approx(-1.0, abs=1e-6)
    assert out.train.max().item() == pytest.approx(1.0, abs=1e-6)
    lo, hi = gcn_constants(split.train)
    expected = (gcn(split.test) - lo) / (hi - lo) * 2 - 1
    assert torch.allclose(out.test, expected, atol=1e-6)
    assert torch.equal(out.test_labels, split.test_labels)
    assert apply_preprocess(split, "none") is split


def test_constants_come_from_the_normal_training_images_only():
    ds = _imageset()
    split = one_class_split(ds, "cifar10", 1, seed=0, val_fraction=0.2)
    ref = apply_preprocess(split, "gcn")
    # another test split, other classes' training images, other validation images: the map is the same
    test_x = ds.test_x.clone()
    test_x[:, :, :4] = 255
    train_x = ds.train_x.clone()
    train_x[ds.train_y != 1] = 0
    train_x[(ds.train_y != 1).nonzero()[0], :, 0, 0] = 255  # an extreme pixel in another class's image
    other = dataclasses.replace(ds, train_x=train_x, test_x=test_x)
    split2 = one_class_split(other, "cifar10", 1, seed=0, val_fraction=0.2)
    split2 = dataclasses.replace(split2, val=split2.val.flip(-1))
    out = apply_preprocess(split2, "gcn")
    assert torch.equal(out.train, ref.train)
    assert gcn_constants(split2.train) == gcn_constants(split.train)
    # ...while the normal class's own training images do move it
    train_x = ds.train_x.clone()
    normal = (ds.train_y == 1).nonzero().flatten()
    train_x[normal, :, 1:] = 0
    train_x[normal, :, 0, 0] = 255
    split3 = one_class_split(dataclasses.replace(ds, train_x=train_x), "cifar10", 1, seed=0, val_fraction=0.2)
    assert gcn_constants(split3.train) != gcn_constants(split.train)


def test_preprocess_is_validated_and_none_keeps_old_keys():
    with pytest.raises(ConfigError, match="preprocess"):
        TrialConfig(preprocess="zca")
    cfg = TrialConfig(dataset="cifar10")
    assert "preprocess" not in cfg._identity()  # rows written before the option keep their key
    assert dataclasses.replace(cfg, preprocess="gcn").key("abc") != cfg.key("abc")


def _gcn_whole_batch(x: torch.Tensor) -> torch.Tensor:
    """GCN as first written: the whole batch at once in float64, out of place."""
    flat = x.flatten(1).double()
    flat = flat - flat.mean(dim=1, keepdim=True)
    flat = flat / flat.abs().mean(dim=1, keepdim=True).clamp_min(MAD_FLOOR)
    return flat.to(x.dtype).view_as(x)


@pytest.mark.parametrize("threads", [1, 3])
def test_chunked_gcn_gives_the_whole_batch_values_bit_for_bit(threads):
    """Chunks of GCN_CHUNK images, in place: the values of the first implementation, so trials
    under --preprocess gcn train on the same inputs as before (their AUCs rerun bit for bit)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(3)
        x = torch.randint(0, 256, (2 * GCN_CHUNK + 7, 3, 32, 32), generator=gen).float().div(127.5).sub(1.0)
        x[5] = 0.25  # a flat image: its deviation is floored
        assert torch.equal(gcn(x), _gcn_whole_batch(x))
        split = one_class_split(_imageset(), "cifar10", 1, seed=0, val_fraction=0.2)
        g = _gcn_whole_batch(split.train)
        lo, hi = float(g.min()), float(g.max())
        out = apply_preprocess(split, "gcn")
        for got, images in ((out.train, split.train), (out.val, split.val), (out.test, split.test)):
            want = ((_gcn_whole_batch(images) - lo) / (hi - lo) * 2.0 - 1.0).to(torch.float32)
            assert torch.equal(got, want)
    finally:
        torch.set_num_threads(before)
