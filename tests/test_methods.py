"""The method interface: a method added in a file of its own (here, this test file) runs
through `novelty train`, a Ray Tune sweep (tests/test_sweep.py) and the report with no
change anywhere else; the trained baselines resume like the paper's method; the registry
drives configuration, rows and labels."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from novelty.cli import main
from novelty.config import ConfigError, RunOptions, TrialConfig
from novelty.data.load import load_imageset, one_class_split
from novelty.methods import MethodSpec, register, spec_for, unregister, variant_names
from novelty.report.write import write_report
from novelty.store.results import read_rows, read_scores
from novelty.trial.run import run_trial, trace_columns

from conftest import Killed, die_after, toy_class


def test_a_method_in_a_test_file_runs_through_novelty_train_and_the_report(tmp_path, capsys, toy_method):
    out = tmp_path / "res"
    assert main(["train", "--variant", "toy", "--normal-class", "1", "--results", str(out), "--no-progress"]) == 0
    assert main(["train", "--variant", "full", "--epochs", "1", "--normal-class", "1", "--results", str(out),
                 "--no-progress"]) == 0
    rows = read_rows(str(out)).set_index("variant")
    split = one_class_split(load_imageset("digits"), "digits", 1, 0, 0.15)  # the toy's AUC, by hand
    by_hand = roc_auc_score(split.test_labels.numpy(),
                            (split.test.flatten(1).mean(1).double() - float(split.train.mean())).abs().numpy())
    assert rows.loc["toy", "method"] == "toy" and rows.loc["toy", "auc"] == pytest.approx(by_hand, abs=1e-12)
    scores = read_scores(str(out), {rows.loc["toy", "key"]})
    assert scores["c_score"].notna().all() and scores["c_con"].isna().all()
    table = write_report(str(out), plots=False).tables["digits"]
    assert "ours: toy" in table.index and table.loc["ours: toy", "1"].endswith("(1)")
    # the toy reads no training knob: its label never shows the epochs the full variant ran
    assert not any("epochs" in label for label in table.index if "toy" in label)


def test_registry_drives_config_and_knobs(toy_method):
    assert "toy" in variant_names()
    with pytest.raises(ConfigError, match="unknown variant 'nope'.*toy"):
        TrialConfig(variant="nope")
    with pytest.raises(ValueError, match="already registered"):
        register(MethodSpec(name="other", variants=("full",), reads=(), impl=toy_method.impl))
    # a later knob a method does not read stays at its old value: a dae's stop, whatever was asked
    assert TrialConfig(variant="dae", stop="val_fea").stop == "last"
    assert TrialConfig(variant="full", stop="val_con").stop == "val_con"
    assert "stop" in spec_for("full").reads and "score_lambda" not in spec_for("vae").reads


def test_dae_resumes_from_a_checkpoint_to_the_same_auc(tmp_path):
    cfg = TrialConfig(dataset="digits", normal_class=4, variant="dae", epochs=3, nz=8, batch_size=32)
    whole = run_trial(cfg, RunOptions(results=str(tmp_path / "whole"), progress=False))
    opts = RunOptions(results=str(tmp_path / "resumed"), progress=False)
    with pytest.raises(Killed):
        run_trial(cfg, opts, on_epoch=die_after(2))
    resumed = run_trial(cfg, opts)
    assert resumed["resumed_from_epoch"] == 2 and whole["resumed_from_epoch"] == 0
    assert resumed["auc"] == whole["auc"] and resumed["final_loss"] == whole["final_loss"]


def test_report_imports_no_torch(tmp_path):
    out = tmp_path / "res"
    run_trial(TrialConfig(variant="ocsvm", normal_class=2), RunOptions(results=str(out), progress=False))
    code = ("import sys; import novelty.report.write; assert 'torch' not in sys.modules, 'import'; "
            "from novelty.cli import main; rc = main(['report', '--results', sys.argv[1], '--no-plots']); "
            "assert rc == 0; assert 'torch' not in sys.modules, 'novelty report'")
    done = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_every_built_in_dataset_has_a_reader():
    from novelty.config import DATASETS
    from novelty.data.datasets import dataset_spec

    assert DATASETS == ("digits", "mnist", "fashion_mnist", "cifar10", "imagefolder", "coil100")
    for name in DATASETS:
        assert callable(dataset_spec(name).load_reader())


def test_rows_carry_every_registered_column(tmp_path, toy_method):
    from novelty.trial.run import row_columns

    row = run_trial(TrialConfig(variant="kde", normal_class=0), RunOptions(results=str(tmp_path), progress=False))
    for spec in (spec_for("full"), spec_for("dae"), spec_for("kde"), toy_method):
        for column in spec.columns:
            assert column in row
    assert set(row_columns()) <= set(row) and row["kde_bandwidth"] > 0 and pd.isna(row["val_loss_fea"])
    assert dataclasses.asdict(TrialConfig(variant="kde"))["stop"] == "last"


def test_a_registered_methods_losses_are_trace_columns():
    class Losses(toy_class()):
        loss_names = ("loss_toy_a", "loss_toy_b")

    before = trace_columns()
    assert "loss_toy_a" not in before
    register(MethodSpec(name="toy_losses", variants=("toy_losses",), reads=(), impl=Losses))
    try:
        columns = trace_columns()
    finally:
        unregister("toy_losses")
    assert trace_columns() == before
    # its losses sit with the others, in its order, before the loop's figures; nothing else moves
    assert columns.index("loss_toy_a") + 1 == columns.index("loss_toy_b") < columns.index("d_reinits")
    assert tuple(c for c in columns if not c.startswith("loss_toy_")) == before


def test_scoring_changes_no_value_and_restores_the_nan_fill():
    """components() runs in inference mode without the NaN fill of torch.empty: the values of a
    plain no_grad pass with the fill on, and the fill setting as it was, even after an error."""
    split = one_class_split(load_imageset("digits"), "digits", 1, 0, 0.15)
    method = spec_for("full").load()(TrialConfig(variant="full"), 1, torch.device("cpu"))
    fill = torch.utils.deterministic.fill_uninitialized_memory
    with torch.no_grad():
        want = method._components(split.test, 256, False)
    got = method.components(split.test)
    assert all(torch.equal(got[c], want[c]) for c in want) and not got["fea"].requires_grad
    assert torch.utils.deterministic.fill_uninitialized_memory == fill
    with pytest.raises(RuntimeError):
        method.components(split.test[:, :, :7])  # too small for the networks
    assert torch.utils.deterministic.fill_uninitialized_memory == fill


def test_score_rules_re_mix_only_the_methods_the_score_rule_drives(tmp_path):
    """`novelty report --score-rules` re-mixes the stored components of the trials whose method
    reads score_lambda and score_norm (the paper's, eq. 7), and no other method's."""
    out = tmp_path / "res"
    for variant, k in (("full", 0), ("full", 1), ("dae", 0), ("dae", 1)):
        run_trial(TrialConfig(variant=variant, normal_class=k, epochs=1, batch_size=32),
                  RunOptions(results=str(out), progress=False, threads=1))
    write_report(str(out), plots=False, score_rules=True)
    choices = pd.read_csv(out / "tables" / "loco_choices.csv")
    # dae has one configuration (nothing to choose); full's re-mixed rules are the candidates, those
    # beyond the paper (score_norm ink) in a row of their own
    assert set(choices["variant"]) == {"full", "full [beyond paper]"}
    assert choices["chosen"].str.contains("score_lambda=").all()


def test_vae_ranks_draw_their_own_part_of_the_global_batch_noise(monkeypatch):
    """Under DDP each rank draws the whole global batch's reparameterisation noise from the shared
    generator and keeps its own rows, so 2 ranks use the noise 1 process would: rank 0 the first
    half, rank 1 the second (before, both drew the same half-sized noise)."""
    method = spec_for("vae").load()(TrialConfig(variant="vae", nz=8), 1, torch.device("cpu"))
    whole = method.eps(10, 1.0, torch.Generator().manual_seed(3))  # one process, a batch of 10
    parts = []
    for rank in (0, 1):
        monkeypatch.setattr("novelty.methods.autoencoders.world", lambda rank=rank: (rank, 2))
        parts.append(method.eps(5, 0.5, torch.Generator().manual_seed(3)))
    assert whole.shape == (10, 8) and torch.equal(torch.cat(parts), whole)
    assert not torch.equal(parts[0], parts[1])
