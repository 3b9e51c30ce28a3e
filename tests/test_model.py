"""Shapes, the CAM's arithmetic, the losses and the score of eq. 7-8."""
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from novelty.methods.losses import loss_con, loss_fea, loss_inf
from novelty.methods.networks import CAM, Decoder, Discriminator, Encoder, Generator, weights_init
from novelty.methods.scoring import auc, eq7, minmax


@pytest.mark.parametrize("nc", [1, 3])
@pytest.mark.parametrize("use_cam", [False, True])
def test_shapes(nc, use_cam):
    x = torch.randn(5, nc, 32, 32)
    h = Encoder(nc, 100, use_cam)(x)
    assert h.shape == (5, 100)
    assert Decoder(nc, 100, use_cam)(h).shape == (5, nc, 32, 32)
    x_hat, h2 = Generator(nc, 37, use_cam)(x)
    assert x_hat.shape == x.shape and h2.shape == (5, 37)
    assert x_hat.abs().max() <= 1.0  # tanh output
    logit, f = Discriminator(nc)(x)
    assert logit.shape == (5,) and f.shape == (5, 256, 4, 4)


def test_cam_count_follows_variant():
    count = lambda m: sum(isinstance(x, CAM) for x in m.modules())  # noqa: E731
    assert count(Generator(1, 100, use_cam=True)) == 6  # 3 encoder blocks + 3 decoder blocks
    assert count(Generator(1, 100, use_cam=False)) == 0


def test_cam_matches_hand_computation():
    torch.manual_seed(0)
    cam = CAM(8, reduction=16)  # hidden = max(8 // 16, 4) = 4
    assert cam.mlp[0].out_features == 4
    f = torch.randn(2, 8, 3, 3)
    w1, b1 = cam.mlp[0].weight.detach().numpy(), cam.mlp[0].bias.detach().numpy()
    w2, b2 = cam.mlp[2].weight.detach().numpy(), cam.mlp[2].bias.detach().numpy()
    fn = f.numpy()
    expected = np.empty_like(fn)
    for b in range(2):
        avg = fn[b].reshape(8, -1).mean(axis=1)
        mx = fn[b].reshape(8, -1).max(axis=1)
        mlp = lambda v: w2 @ np.maximum(w1 @ v + b1, 0) + b2  # noqa: E731
        gate = 1 / (1 + np.exp(-(mlp(avg) + mlp(mx))))
        expected[b] = fn[b] * gate[:, None, None]
    np.testing.assert_allclose(cam(f).detach().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_weights_init_is_dcgan():
    d = Discriminator(3)
    d.apply(lambda m: weights_init(m, torch.Generator().manual_seed(0)))
    w = torch.cat([m.weight.flatten() for m in d.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(w.mean().item()) < 2e-3 and abs(w.std().item() - 0.02) < 2e-3
    bn = [m for m in d.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(m.bias.abs().max() == 0 for m in bn)
    assert abs(torch.cat([m.weight for m in bn]).mean().item() - 1.0) < 5e-3


def test_entropy_of_uniform_softmax_is_log_nz():
    for nz in (10, 100):
        h = torch.full((4, nz), 0.7)  # equal logits -> uniform softmax
        assert loss_inf(h).item() == pytest.approx(math.log(nz), rel=1e-6)
    peaked = torch.zeros(1, 100)
    peaked[0, 3] = 50.0
    assert loss_inf(peaked).item() < 1e-6


def test_reconstruction_losses_per_image_and_mean():
    x = torch.zeros(2, 1, 2, 2)
    x_hat = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]], [[[0.0, 0.0], [0.0, 2.0]]]])
    assert loss_con(x, x_hat, per_image=True).tolist() == [1.0, 0.5]
    assert loss_con(x, x_hat).item() == 0.75
    assert loss_fea(x, x_hat, per_image=True).tolist() == [1.0, 1.0]
    assert eq7(np.array([1.0]), np.array([3.0]), 0.9)[0] == pytest.approx(1.2)


def test_minmax_spans_unit_interval():
    s = minmax(np.array([3.0, 5.0, 4.0, 9.0]))
    assert s.tolist() == pytest.approx([0.0, 1 / 3, 1 / 6, 1.0])


def test_auc_matches_sklearn_bit_for_bit():
    """novelty.methods.scoring.auc is sklearn's roc_auc_score in numpy: the same float64, ties, float32
    scores, tiny and uneven sets included (committed AUCs must not move by one bit)."""
    rng = np.random.default_rng(1)
    for i in range(400):
        n = int(rng.integers(2, 2000))
        labels = rng.integers(0, 2, n)
        labels[:2] = [0, 1]  # both classes
        scores = [rng.normal(size=n) + labels,  # distinct scores
                  rng.integers(0, 4, n).astype(np.float64),  # mostly ties
                  rng.random(n).astype(np.float32),
                  np.round(rng.normal(size=n), 2)][i % 4]
        assert auc(labels, scores) == float(roc_auc_score(labels, scores)), (i, n)
    assert auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert auc(np.array([0, 1, 0, 1]), np.array([1.0, 1.0, 1.0, 1.0])) == 0.5
    assert np.isnan(auc(np.array([1, 1]), np.array([0.2, 0.3])))  # one class: undefined, as in sklearn
