"""A whole trial: determinism, resume after a crash, scores, the row, and the CLI's errors."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from novelty.config import RunOptions, TrialConfig
from novelty.data.load import load_imageset, one_class_split
from novelty.store.results import read_rows, read_scores
from novelty.trial.loop import fit
from novelty.methods.tian2020 import Tian2020
from novelty.trial.run import run_trial

from conftest import DDP_PINNED, Killed, as_flags, die_after, digits_fingerprint, run_cli

DIGITS = digits_fingerprint()

CFG = TrialConfig(dataset="digits", normal_class=1, epochs=2, variant="full")


def _opts(out, **kw):
    return RunOptions(results=str(out), progress=False, **kw)


# trials here train in this process: one torch thread for each test (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_row_and_scores_written(tmp_path):
    row = run_trial(CFG, _opts(tmp_path))
    rows, scores = read_rows(str(tmp_path)), read_scores(str(tmp_path))
    assert len(rows) == 1 and rows.loc[0, "key"] == CFG.key(DIGITS) == row["key"]
    for col in ("auc", "val_loss_con", "n_train", "n_val", "n_test", "train_seconds", "images_per_second",
                "d_reinits", "world_size", "torch_version", "git_commit", "hostname", "lr", "w_inf", "nz"):
        assert col in rows.columns
    assert rows.loc[0, "n_test"] == len(scores) and rows.loc[0, "world_size"] == 1
    assert scores["score"].min() == 0.0 and scores["score"].max() == 1.0  # normalised over the whole test set
    assert rows.loc[0, "auc"] == pytest.approx(roc_auc_score(scores["label"], scores["score"]))
    assert not list((tmp_path / "checkpoints").rglob("*.pt"))  # a finished trial keeps no checkpoint
    assert not [p for p in tmp_path.rglob(".tmp*")]


def test_same_seed_same_auc_other_seed_differs(tmp_path):
    a = run_trial(CFG, _opts(tmp_path / "a"))
    b = run_trial(CFG, _opts(tmp_path / "b"))
    c = run_trial(TrialConfig(**{**CFG.__dict__, "seed": 1}), _opts(tmp_path / "c"))
    assert a["auc"] == b["auc"]
    assert a["key"] != c["key"] and (a["auc"] != c["auc"] or a["final_loss_g"] != c["final_loss_g"])
    sa = read_scores(str(tmp_path / "a"))["raw_score"].to_numpy()
    sb = read_scores(str(tmp_path / "b"))["raw_score"].to_numpy()
    np.testing.assert_array_equal(sa, sb)


def test_resume_equals_uninterrupted(tmp_path):
    cfg = TrialConfig(dataset="digits", normal_class=4, epochs=3, variant="full")
    whole = run_trial(cfg, _opts(tmp_path / "whole"))

    with pytest.raises(Killed):
        run_trial(cfg, _opts(tmp_path / "resumed"), on_epoch=die_after(1))
    assert not (tmp_path / "resumed" / "rows").exists() or not list((tmp_path / "resumed" / "rows").iterdir())
    seen = []
    resumed = run_trial(cfg, _opts(tmp_path / "resumed"), on_epoch=lambda m, p: seen.append(m["epoch"]))
    assert seen == [2, 3] and resumed["resumed_from_epoch"] == 1  # epoch 1 came from the checkpoint
    assert whole["resumed_from_epoch"] == 0
    assert resumed["auc"] == whole["auc"]
    assert resumed["final_loss_g"] == whole["final_loss_g"]


def test_scores_normalised_over_whole_test_set_not_per_batch(tmp_path):
    ds = load_imageset("digits")
    split = one_class_split(ds, "digits", 2, 0, 0.15)
    cfg = TrialConfig(normal_class=2, epochs=1)
    run = fit(Tian2020, cfg, RunOptions(progress=False), split, torch.device("cpu"), cfg.key(DIGITS))
    row = run_trial(cfg, _opts(tmp_path))
    s = read_scores(str(tmp_path)).sort_values("index")
    comps = run.method.components(split.test, batch=17)
    lam = cfg.score_lambda
    raw = (lam * comps["con"].double() + (1 - lam) * comps["fea"].double()).numpy()
    np.testing.assert_allclose(s["raw_score"], raw, rtol=1e-5)  # eval mode: batch size does not change a score
    np.testing.assert_allclose(s["score"], (raw - raw.min()) / (raw.max() - raw.min()), rtol=1e-5, atol=1e-7)
    assert row["auc"] == pytest.approx(roc_auc_score(split.test_labels.numpy(), s["score"]))


def test_cli_train_and_help(tmp_path):
    out = tmp_path / "res"
    p = run_cli("train", "--epochs", "1", "--normal-class", "0", "--variant", "base", "--results", str(out), "--no-progress")
    assert p.returncode == 0, p.stderr
    assert "AUC" in p.stdout
    rows = read_rows(str(out))
    assert rows.loc[0, "variant"] == "base" and rows.loc[0, "epochs"] == 1
    h = run_cli("train", "--help")
    for opt in ("--dataset", "--normal-class", "--seed", "--variant", "--epochs", "--w-inf", "--noise-std",
                "--score-lambda", "--data-root", "--download", "--results", "--device"):
        assert opt in h.stdout


def _assert_clean_failure(p, out, needle):
    assert p.returncode != 0
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert lines and needle in lines[-1], p.stderr
    assert "Traceback" not in p.stderr
    if out.exists():
        assert not list(out.rglob("*.parquet")) and not list(out.rglob(".tmp*"))


@pytest.mark.parametrize("args,code,needle", [  # code: the exit status `novelty --help` lists
    (["--dataset", "svhn"], 2, "invalid choice: 'svhn'"),
    (["--dataset", "mnist", "--data-root", "/nonexistent/data"], 3, "/nonexistent/data does not exist"),
    (["--normal-class", "12"], 3, "normal class 12 is out of range"),
    (["--noise-std", "nan"], 2, "--noise-std must be a finite number"),
    (["--lr", "1e30"], 4, "loss became NaN/inf"),
    (["--batch-size", "1"], 2, "--batch-size must be >= 2"),
    (["--lr", "nan"], 2, "--lr must be a finite number"),
    (["--lr", "-1"], 2, "--lr must be > 0"),
    (["--nz", "0"], 2, "--nz must be >= 1"),
    (["--score-norm", "zscore"], 2, "invalid choice: 'zscore'"),
    (["--device", "cuda"], 2, "CUDA device(s); use --device cpu"),
])
def test_cli_bad_input(tmp_path, args, code, needle):
    out = tmp_path / "res"
    p = run_cli("train", "--epochs", "1", "--results", str(out), "--no-progress", *args)
    _assert_clean_failure(p, out, needle)
    assert p.returncode == code, p.stderr[-3000:]


def test_cli_truncated_idx_and_corrupt_image(tmp_path, fake_mnist, fake_imagefolder):
    f = fake_mnist / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    f.write_bytes(f.read_bytes()[:20])
    out = tmp_path / "res"
    p = run_cli("train", "--dataset", "mnist", "--data-root", str(fake_mnist), "--results", str(out), "--no-progress",
             "--cache-dir", str(tmp_path / "c"))
    _assert_clean_failure(p, out, "train-labels-idx1-ubyte")
    (fake_imagefolder / "train" / "dark" / "0001.png").write_bytes(b"garbage")
    p = run_cli("train", "--dataset", "imagefolder", "--data-root", str(fake_imagefolder), "--results", str(out),
             "--no-progress", "--cache-dir", str(tmp_path / "c"))
    _assert_clean_failure(p, out, "0001.png")


def test_two_rank_gloo_run(tmp_path):
    """torchrun --nproc_per_node=2: the global batch is split, rank 0 writes one row."""
    out1, out2 = tmp_path / "one", tmp_path / "two"
    args = ["train", "--normal-class", "0", "--epochs", "2", "--no-progress", "--device", "cpu", "--threads", "1",
            *as_flags(DDP_PINNED)]
    p1 = run_cli(*args, "--results", str(out1))
    assert p1.returncode == 0, p1.stderr
    p2 = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                         "-m", "novelty.cli", *args, "--results", str(out2)],
                        capture_output=True, text=True, timeout=300)
    assert p2.returncode == 0, p2.stderr[-3000:]
    r1, r2 = read_rows(str(out1)), read_rows(str(out2))
    assert len(r2) == 1 and r2.loc[0, "world_size"] == 2 and r1.loc[0, "world_size"] == 1
    assert r2.loc[0, "key"] == r1.loc[0, "key"]  # same trial, different hardware
    assert r2.loc[0, "n_train"] == r1.loc[0, "n_train"]
    assert abs(r2.loc[0, "auc"] - r1.loc[0, "auc"]) < 0.05
    assert abs(r2.loc[0, "final_loss_con"] - r1.loc[0, "final_loss_con"]) < 0.05


def test_results_to_a_uri(tmp_path):
    """Results may be a pyarrow.fs URI (file:// here; s3:// and gs:// take the same path)."""
    uri = f"file://{tmp_path}/remote"
    cfg = TrialConfig(normal_class=5, epochs=1)
    row = run_trial(cfg, RunOptions(results=uri, progress=False, checkpoint_dir=str(tmp_path / "ck")))
    assert (tmp_path / "remote" / "rows" / f"{cfg.key(DIGITS)}.parquet").exists()
    rows = read_rows(uri)
    assert list(rows["key"]) == [cfg.key(DIGITS)] and rows.loc[0, "auc"] == row["auc"]
    assert len(read_scores(uri)) == row["n_test"]


def test_cli_preset_paper_with_explicit_overrides(tmp_path):
    from novelty.config import PAPER

    p = run_cli("train", "--preset", "paper", "--epochs", "1", "--nz", "7", "--results", str(tmp_path), "--no-progress")
    assert p.returncode == 0, p.stderr
    row = read_rows(str(tmp_path)).iloc[0]
    assert row["nz"] == 7 and row["epochs"] == 1  # explicit options win
    for k in ("lr", "batch_size", "score_norm", "score_lambda", "w_con", "noise_std"):
        assert row[k] == PAPER[k], k
