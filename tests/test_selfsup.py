"""The methods beyond the paper for natural images: `transforms` (GEOM family) and `deepsvdd`.
Their pieces checked against independent computations (the transformations pixel by pixel, the
Dirichlet fit against samples of a known Dirichlet, the score components against the stored
ones, Deep SVDD's centre and radius by hand), and both run through `novelty train`, resume to the
same result, run under DDP, and share a results folder with the paper's method."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from novelty.config import ConfigError, RunOptions, TrialConfig
from novelty.data.load import load_imageset, one_class_split
from novelty.methods.deepsvdd import CENTRE_EPS, DeepSVDD
from novelty.methods.transforms import Transforms, apply_all, fit_dirichlet, shifted, transform_set
from novelty.store.results import read_rows, read_scores
from novelty.trial.run import run_trial

from conftest import Killed, die_after, run_cli

TINY_TF = {"variant": "transforms", "tf_depth": 10, "tf_widen": 1, "batch_size": 16}


def test_transformation_sets_and_their_labels():
    for name, k in (("rot4", 4), ("rot4_flip", 8), ("geom72", 72), ("rot_trans", 36)):
        ts, heads, labels = transform_set(name, 8)
        assert len(ts) == k and len(set(ts)) == k and labels.shape[0] == k
    ts, heads, labels = transform_set("rot_trans", 8)
    assert heads == [("rot", 4), ("tx", 3), ("ty", 3)]
    assert len({tuple(r) for r in labels.tolist()}) == 36  # every (rot, tx, ty) once


def test_transformations_move_pixels_as_named():
    x = torch.zeros(1, 1, 32, 32)
    x[0, 0, 10, 12] = 1.0  # row 10, column 12
    assert shifted(x, 8, 0)[0, 0, 10, 20] == 1 and shifted(x, 0, -8)[0, 0, 2, 12] == 1
    assert shifted(x, 8, 0).sum() == 1  # nothing reflected back in from a border this far
    edge = torch.arange(32.0).expand(1, 1, 32, 32)  # value = column
    assert shifted(edge, 8, 0)[0, 0, 0, :8].tolist() == [8.0, 7, 6, 5, 4, 3, 2, 1]  # reflected, not zeros
    ts, _, _ = transform_set("geom72", 8)
    imgs = torch.randn(3, 3, 32, 32)
    out = apply_all(imgs, ts)  # image-major: row i*K + k is T_k(image i)
    assert out.shape == (3 * 72, 3, 32, 32)
    for i, k in ((0, 0), (1, 37), (2, 71)):
        t = ts[k]
        want = imgs[i:i + 1].flip(3) if t.flip else imgs[i:i + 1]
        want = torch.rot90(torch.roll(want, (t.ty, t.tx), dims=(2, 3)), t.rot, dims=(2, 3))
        inner = slice(8, 24)  # away from the reflected border, a shift is a roll
        got = out[i * 72 + k]
        if t.rot == 0:
            assert torch.equal(got[:, inner, inner], want[0][:, inner, inner])
        assert torch.equal(torch.rot90(got, -t.rot, dims=(1, 2))[:, inner, inner],
                           torch.rot90(want[0], -t.rot, dims=(1, 2))[:, inner, inner])
    assert len({out[2 * 72 + k].numpy().tobytes() for k in range(72)}) == 72  # 72 different images


def test_dirichlet_fit_recovers_a_known_dirichlet():
    alpha = torch.tensor([2.0, 5.0, 0.7, 1.3], dtype=torch.float64)
    torch.manual_seed(0)
    samples = torch.distributions.Dirichlet(alpha).sample(torch.Size([20000]))
    logp = samples.clamp_min(1e-300).log()
    got = fit_dirichlet(logp)
    assert torch.allclose(got, alpha, rtol=0.05), got
    # the maximum-likelihood equations, which the moment estimate it starts from does not meet:
    # digamma(alpha_j) - digamma(sum alpha) = mean log p_j
    lhs = torch.special.digamma(got) - torch.special.digamma(got.sum())
    assert torch.allclose(lhs, logp.double().mean(0), atol=1e-8), lhs - logp.double().mean(0)


def test_transforms_trains_scores_and_resumes_to_the_same_result(tmp_path):
    cfg = TrialConfig.from_flat({**TINY_TF, "tf_set": "rot4", "epochs": 2, "normal_class": 3})
    whole = run_trial(cfg, RunOptions(results=str(tmp_path / "whole"), progress=False, threads=1))
    opts = RunOptions(results=str(tmp_path / "resumed"), progress=False, threads=1)
    with pytest.raises(Killed):
        run_trial(cfg, opts, on_epoch=die_after(1))
    resumed = run_trial(cfg, opts)
    assert resumed["resumed_from_epoch"] == 1 and resumed["auc"] == whole["auc"]
    a = read_scores(str(tmp_path / "whole")).sort_values("index")
    b = read_scores(str(tmp_path / "resumed")).sort_values("index")
    for c in ("c_nll", "c_dirichlet", "c_pmean", "c_wrong"):
        assert np.array_equal(a[c].to_numpy(), b[c].to_numpy()), c
    # the row's AUC is the AUC of the chosen component (GEOM's Dirichlet score), as sklearn computes it
    assert whole["auc"] == pytest.approx(roc_auc_score(a["label"], a["c_dirichlet"]), abs=1e-12)
    assert a["c_con"].isna().all() and 0 <= whole["val_tf_acc"] <= 1 and whole["val_tf_loss"] > 0
    assert 0 <= a["c_wrong"].min() and a["c_wrong"].max() <= 1 and (a["c_pmean"] <= 0).all()


def test_transforms_components_by_hand():
    """nll and wrong of one image computed with a plain forward pass of each transformation."""
    cfg = TrialConfig.from_flat({**TINY_TF, "tf_set": "rot_trans"})
    method = Transforms(cfg, 1, torch.device("cpu"))
    x = torch.randn(2, 1, 32, 32)
    comps = method.components(x)
    ts, heads, labels = transform_set("rot_trans", 8)
    method.net.eval()
    with torch.no_grad():
        nll, wrong = 0.0, 0
        for k, t in enumerate(ts):
            y = torch.rot90(shifted(x[1:2], t.tx, t.ty), t.rot, dims=(2, 3))
            logits = method.net(y)[0]
            for h, part in enumerate(logits.split([4, 3, 3])):
                nll -= float(torch.log_softmax(part.double(), 0)[labels[k, h]])
                wrong += int(part.argmax() != labels[k, h])
    assert comps["nll"][1].item() == pytest.approx(nll, rel=1e-4)
    assert comps["wrong"][1].item() == pytest.approx(wrong / 108)


def test_deepsvdd_centre_radius_and_score_by_hand(tmp_path):
    split = one_class_split(load_imageset("digits"), "digits", 2, 0, 0.15)
    cfg = TrialConfig.from_flat({"variant": "deepsvdd", "epochs": 2, "svdd_objective": "soft-boundary",
                                 "svdd_nu": 0.2})
    method = DeepSVDD(cfg, 1, torch.device("cpu"))
    method.prepare(split.train)
    method.encoder.eval()
    with torch.no_grad():
        mean = method.encoder(split.train).mean(0)
    pushed = mean.abs() < CENTRE_EPS
    assert torch.allclose(method.c[~pushed], mean[~pushed], atol=1e-5)
    assert (method.c[pushed].abs() == CENTRE_EPS).all() and pushed.any()
    method.begin_epoch()
    method.step(split.train[:32], torch.zeros(0), 1.0, torch.Generator())
    method.end_epoch(split.train, split.val)
    with torch.no_grad():
        dist = (method.encoder.eval()(split.train) - method.c).pow(2).sum(1)
    assert method.radius == pytest.approx(float(np.quantile(dist.sqrt().numpy(), 0.8)), rel=1e-5)
    assert torch.allclose(method.components(split.test)["score"],
                          (method.encoder(split.test) - method.c).pow(2).sum(1).detach(), rtol=1e-5)


def test_deepsvdd_pretrains_then_resumes_across_the_switch(tmp_path):
    cfg = TrialConfig.from_flat({"variant": "deepsvdd", "epochs": 3, "svdd_pretrain_epochs": 1, "normal_class": 5})
    whole = run_trial(cfg, RunOptions(results=str(tmp_path / "whole"), progress=False, threads=1))
    opts = RunOptions(results=str(tmp_path / "resumed"), progress=False, threads=1)
    with pytest.raises(Killed):
        run_trial(cfg, opts, on_epoch=die_after(1))  # after the autoencoder epoch, before the centre
    resumed = run_trial(cfg, opts)
    assert resumed["resumed_from_epoch"] == 1 and resumed["auc"] == whole["auc"]
    assert resumed["final_loss_svdd"] == whole["final_loss_svdd"] and whole["val_svdd_dist"] > 0
    with pytest.raises(ConfigError, match="svdd-pretrain-epochs 3 leaves none"):
        run_trial(TrialConfig.from_flat({"variant": "deepsvdd", "epochs": 3, "svdd_pretrain_epochs": 3}),
                  RunOptions(results=str(tmp_path / "bad"), progress=False))


def test_bad_knobs_are_one_line_errors(tmp_path):
    for args, needle in ((["--tf-set", "rot5"], "invalid choice|unknown --tf-set"),
                         (["--tf-depth", "12"], "--tf-depth must be 6n\\+4"),
                         (["--variant", "deepsvdd", "--svdd-nu", "0"], "--svdd-nu must be in")):
        variant = [] if "--variant" in args else ["--variant", "transforms"]
        p = run_cli("train", *variant, *args, "--results", str(tmp_path), "--no-progress")
        assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1, p.stderr
        assert pd.Series([p.stderr]).str.contains(needle).all(), p.stderr


def test_a_folder_mixing_methods_reads_with_plain_pandas(tmp_path):
    """Each method's own knobs have one type in every row (null in other methods' rows), so
    `pd.read_parquet(<results>/rows)` reads the folder whichever file pyarrow takes first."""
    out = tmp_path / "res"
    for flat in ({"variant": "deepsvdd", "epochs": 1}, {**TINY_TF, "tf_set": "rot4", "epochs": 1},
                 {"variant": "kde"}):
        run_trial(TrialConfig.from_flat(flat), RunOptions(results=str(out), progress=False, threads=1))
    files = sorted((out / "rows").glob("*.parquet"))
    for first in files:  # pyarrow takes the schema of the first file it lists: try each first
        rows = pd.read_parquet([str(first), *(str(f) for f in files if f != first)])
        assert len(rows) == 3
    by = read_rows(str(out)).set_index("variant")
    assert by.loc["transforms", "tf_set"] == "rot4" and by.loc["transforms", "tf_depth"] == 10
    assert pd.isna(by.loc["kde", "tf_set"]) and by.loc["deepsvdd", "svdd_objective"] == "one-class"


@pytest.mark.parametrize("variant", ["transforms", "deepsvdd"])
def test_two_rank_gloo_run_of_the_new_methods(tmp_path, variant):
    flags = ["--variant", variant, "--epochs", "2", "--normal-class", "1", "--no-progress", "--device", "cpu",
             "--threads", "1"] + (["--tf-set", "rot4", "--tf-widen", "1", "--batch-size", "16"]
                                  if variant == "transforms" else [])
    p1 = run_cli("train", *flags, "--results", str(tmp_path / "one"))
    assert p1.returncode == 0, p1.stderr
    p2 = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                         "-m", "novelty.cli", "train", *flags, "--results", str(tmp_path / "two")],
                        capture_output=True, text=True, timeout=300)
    assert p2.returncode == 0, p2.stderr[-3000:]
    r1, r2 = read_rows(str(tmp_path / "one")), read_rows(str(tmp_path / "two"))
    assert r2.loc[0, "world_size"] == 2 and r2.loc[0, "key"] == r1.loc[0, "key"]
    assert abs(r2.loc[0, "auc"] - r1.loc[0, "auc"]) < 0.1


def test_score_rules_re_score_transforms_by_each_stored_component(tmp_path):
    """`novelty report --score-rules`: a transforms trial is a candidate under each of its stored
    components (tf_score), with that component's AUC; leave-one-class-out chooses among them."""
    from novelty.report.write import write_report
    from novelty.report.selection import rescore_components

    out = tmp_path / "res"
    for k in (0, 1, 2):
        run_trial(TrialConfig.from_flat({**TINY_TF, "tf_set": "rot4", "epochs": 1, "normal_class": k}),
                  RunOptions(results=str(out), progress=False, threads=1))
    rows = read_rows(str(out))
    scores = read_scores(str(out))
    extra = rescore_components(rows, scores, "tf_score").set_index(["normal_class", "tf_score"])
    assert len(extra) == 3 * 4
    part = scores[scores["key"] == rows.loc[rows["normal_class"] == 1, "key"].iloc[0]]
    assert extra.loc[(1, "nll"), "auc"] == pytest.approx(roc_auc_score(part["label"], part["c_nll"]), abs=1e-12)
    assert extra.loc[(1, "dirichlet"), "auc"] == rows.loc[rows["normal_class"] == 1, "auc"].iloc[0]
    write_report(str(out), plots=False, score_rules=True)
    choices = pd.read_csv(out / "tables" / "loco_choices.csv")
    assert set(choices["variant"]) == {"transforms"} and choices["chosen"].str.contains("tf_score=").all()
