"""Quality instruments: baselines, the oracle trace, leave-one-class-out, test-free score scaling."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from novelty.config import RunOptions, TrialConfig
from novelty.store.results import read_rows, read_scores, read_trace
from novelty.report.selection import loco_select, oracle_per_class, oracle_table, paper_views, rescore
from novelty.trial.run import run_trial

from conftest import image_tree


def _opts(out, **kw):
    return RunOptions(results=str(out), progress=False, **kw)


# trials here train in this process: one torch thread for each test (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_trace_per_epoch_marked_oracle_and_changes_nothing(tmp_path):
    cfg = TrialConfig(dataset="digits", normal_class=3, epochs=3, batch_size=16)
    reported = []
    traced = run_trial(cfg, _opts(tmp_path / "a", trace=True, trace_images=200),
                       on_epoch=lambda m, p: reported.append(m))
    plain = run_trial(cfg, _opts(tmp_path / "b"))
    assert traced["auc"] == plain["auc"]  # the trace looks, it does not touch
    trace = read_trace(str(tmp_path / "a"))
    assert list(trace["epoch"]) == [1, 2, 3] and (trace["key"] == traced["key"]).all()
    oracle = ["oracle_auc_con", "oracle_auc_fea", "oracle_auc_lat", "oracle_auc_mix", "oracle_refcode_auc_mix"]
    assert trace[oracle].notna().all().all() and trace["val_loss_con"].notna().all()
    assert trace["oracle_auc_score"].isna().all()  # the baselines' column, empty for the method
    assert not any(k.startswith("oracle_") for m in reported for k in m)  # never handed to the caller/Tune
    assert read_trace(str(tmp_path / "b")).empty


@pytest.mark.parametrize("variant", ["ocsvm", "kde", "dae", "vae"])
def test_baseline_rows_have_the_trial_schema(tmp_path, variant):
    cfg = TrialConfig(dataset="digits", normal_class=0, epochs=2, batch_size=16, variant=variant, nz=16)
    row = run_trial(cfg, _opts(tmp_path, trace=True))
    rows, scores = read_rows(str(tmp_path)), read_scores(str(tmp_path))
    assert rows.loc[0, "method"] == variant and rows.loc[0, "variant"] == variant
    assert 0.5 < row["auc"] <= 1.0  # class 0 of digits is easy for every baseline
    assert len(scores) == row["n_test"] and scores["c_score"].notna().all()
    if variant in ("dae", "vae"):
        assert list(read_trace(str(tmp_path))["epoch"]) == [1, 2]
    if variant == "kde":
        assert rows.loc[0, "kde_bandwidth"] > 0


def _trees_differing_in_test(tmp_path):
    """Two ImageFolder trees with the same train/ and a different test/."""
    a = image_tree(tmp_path / "a", 12, 0)
    b = tmp_path / "b"
    shutil.copytree(a / "train", b / "train")
    image_tree(tmp_path / "other", 12, 40)
    shutil.copytree(tmp_path / "other" / "test", b / "test")
    return a, b


def test_score_scaling_uses_no_test_image(tmp_path):
    """Two trees with the same train/ and a different test/: the validation constants of
    score_norm=val are identical, the test components are not."""
    a, b = _trees_differing_in_test(tmp_path)
    out = tmp_path / "res"
    for root in (a, b):
        cfg = TrialConfig(dataset="imagefolder", epochs=2, batch_size=4, score_norm="val")
        run_trial(cfg, _opts(out, data_root=str(root), cache_dir=str(tmp_path / "cache"), trace=True))
    rows = read_rows(str(out))
    assert rows["key"].nunique() == 2
    for col in ("val_con_mean", "val_con_std", "val_fea_mean", "val_fea_std"):
        assert rows[col].nunique() == 1, col
    scores = read_scores(str(out))
    c = [g["c_con"].to_numpy() for _, g in scores.groupby("key")]
    assert not np.allclose(c[0], c[1])
    trace = read_trace(str(out))  # per-epoch validation figures don't move either
    assert trace.groupby("epoch")["val_con_mean"].nunique().eq(1).all()


def _hand_rows() -> pd.DataFrame:
    """Config A is best on classes 0, 1; config B wins class 2 by a mile."""
    auc = {("A", 0): 0.9, ("A", 1): 0.9, ("A", 2): 0.5, ("B", 0): 0.8, ("B", 1): 0.7, ("B", 2): 0.99}
    return pd.DataFrame([{"dataset": "mnist", "variant": "full", "config": cfg, "normal_class": c, "seed": s,
                          "auc": a + 0.01 * s} for (cfg, c), a in auc.items() for s in (0, 1)])


def test_loco_picks_what_a_hand_computation_picks():
    choices, summary = loco_select(_hand_rows())
    chosen = dict(zip(choices["normal_class"], choices["chosen"]))
    # class 0: others (1, 2) -> A 0.705, B 0.85 -> B; class 1: (0, 2) -> A 0.705, B 0.9 -> B;
    # class 2: (0, 1) -> A 0.905, B 0.755 -> A (B's 0.99 on class 2 itself does not count)
    assert chosen == {0: "B", 1: "B", 2: "A"}
    c2 = choices.set_index("normal_class").loc[2]
    assert c2["mean"] == pytest.approx(0.505) and c2["others_mean"] == pytest.approx(0.905)
    assert summary.loc[0, "mean"] == pytest.approx((0.805 + 0.705 + 0.505) / 3)
    assert summary.loc[0, "std"] == pytest.approx(np.std([(0.8 + 0.7 + 0.5) / 3, (0.81 + 0.71 + 0.51) / 3], ddof=1))


def test_loco_does_not_let_a_one_seed_screen_beat_configs_run_on_two():
    """C, screened on seed 0 alone, has a higher mean than A and B (its one lucky seed); it
    does not compete: the choice stays among the configurations run on both seeds."""
    rows = _hand_rows()
    lucky = rows[(rows["config"] == "A") & (rows["seed"] == 0)].assign(config="C", auc=1.0)
    choices, _ = loco_select(pd.concat([rows, lucky], ignore_index=True))
    assert dict(zip(choices["normal_class"], choices["chosen"])) == {0: "B", 1: "B", 2: "A"}
    run_twice = pd.concat([lucky, lucky.assign(seed=1)], ignore_index=True)  # once confirmed, it wins
    choices, _ = loco_select(pd.concat([rows, run_twice], ignore_index=True))
    assert set(choices["chosen"]) == {"C"}


def test_loco_keeps_beyond_paper_rules_in_their_own_rows():
    rows = _hand_rows().assign(score_norm="none")
    ink = [rows[rows["config"] == c].assign(config=f"{c} ink", score_norm="ink", auc=1.0) for c in ("A", "B")]
    choices, summary = loco_select(pd.concat([rows, *ink], ignore_index=True))
    assert set(summary["variant"]) == {"full", "full [beyond paper]"}
    paper = choices[choices["variant"] == "full"]
    assert set(paper["chosen"]) <= {"A", "B"}  # the perfect ink rule never wins a paper row


def test_loco_never_uses_the_held_out_class():
    rows = _hand_rows()
    before = loco_select(rows)[0].set_index("normal_class")["chosen"]
    for c in (0, 1, 2):  # any change to class c's own AUCs leaves class c's choice alone
        changed = rows.copy()
        changed.loc[changed["normal_class"] == c, "auc"] = np.where(
            changed.loc[changed["normal_class"] == c, "config"] == before[c], 0.0, 1.0)
        after = loco_select(changed)[0].set_index("normal_class")["chosen"]
        assert after[c] == before[c]


def test_paper_views_match_a_hand_computation():
    """Four classes x two seeds, three traced epochs each for classes 0-2: per class the views
    are means over seeds of each trial's best (and last) epoch, and the distance to the paper is
    the mean over classes of |paper - view|; an untraced trial (class 1 seed 1, class 3) and a
    class without a paper number (class 2) drop out."""
    rows = pd.DataFrame([{"key": f"k{c}{s}", "dataset": "mnist", "label": "full", "normal_class": c,
                          "seed": s, "auc": 0.6 + 0.1 * c + 0.02 * s} for c in (0, 1, 2, 3) for s in (0, 1)])
    mix = {0: [0.5, 0.9, 0.7], 1: [0.6, 0.8, 0.95], 2: [0.7, 0.7, 0.7]}  # epochs 1-3, per class; seed 1 adds 0.02
    trace = pd.DataFrame([{"key": f"k{c}{s}", "epoch": e + 1, "oracle_auc_mix": m + 0.02 * s,
                           "oracle_refcode_auc_mix": m - 0.1, "oracle_refcode_nf_auc_mix": 1.0 - m}
                          for c in (0, 1, 2) for s in (0, 1) for e, m in enumerate(mix.get(c, [])) if (c, s) != (1, 1)])
    marks = pd.DataFrame({"dataset": "mnist", "label": "full", "normal_class": [0, 1, 3], "auc": [0.95, 0.5, 0.9]})
    per_class = oracle_per_class(rows, trace).set_index("normal_class")
    assert list(per_class.index) == [0, 1, 2]  # class 3 has no trace
    assert per_class.loc[0, "oracle_best"] == pytest.approx(0.91)  # (0.9 + 0.92) / 2
    assert per_class.loc[1, "oracle_best"] == pytest.approx(0.95) and per_class.loc[1, "auc"] == pytest.approx(0.7)
    assert per_class.loc[0, "oracle_refcode_last"] == pytest.approx(0.6)
    assert per_class.loc[0, "oracle_refcode_nf_best"] == pytest.approx(0.5)
    assert per_class.loc[1, "oracle_best_epoch"] == 3
    both, dist = paper_views(oracle_per_class(rows, trace), marks)
    assert list(both["normal_class"]) == [0, 1] and list(both["paper"]) == [0.95, 0.5]
    d = dist.set_index("view")
    assert (d["classes"] == 2).all() and d["r"].isna().all()  # no correlation from two classes
    assert d.loc["honest", "mean_abs_diff"] == pytest.approx((abs(0.95 - 0.61) + abs(0.5 - 0.7)) / 2)
    assert d.loc["honest", "mean"] == pytest.approx((0.61 + 0.7) / 2) and d["paper_mean"].eq(0.725).all()
    assert d.loc["ORACLE best epoch", "mean_abs_diff"] == pytest.approx((0.04 + 0.45) / 2)
    stored, nf = "ORACLE reference code, stored order", "ORACLE reference code, normal-first"
    assert d.loc[f"{stored}, best epoch", "mean_abs_diff"] == pytest.approx((abs(0.95 - 0.8) + abs(0.5 - 0.85)) / 2)
    assert d.loc[f"{stored}, last epoch", "mean_abs_diff"] == pytest.approx((abs(0.95 - 0.6) + abs(0.5 - 0.85)) / 2)
    assert d.loc[f"{nf}, best epoch", "mean_abs_diff"] == pytest.approx((abs(0.95 - 0.5) + abs(0.5 - 0.4)) / 2)
    three = pd.concat([both, both.iloc[:1].assign(normal_class=7, paper=0.1, auc=0.2)], ignore_index=True)
    _, dist3 = paper_views(three.drop(columns="paper"), three[["dataset", "label", "normal_class", "paper"]]
                           .rename(columns={"paper": "auc"}))
    r = dist3.set_index("view").loc["honest", "r"]
    assert r == pytest.approx(np.corrcoef([0.95, 0.5, 0.1], [0.61, 0.7, 0.2])[0, 1])
    table = oracle_table(oracle_per_class(rows, trace)).set_index("label")  # the per-label table is the mean over classes
    assert table.loc["full", "oracle_best"] == pytest.approx((0.91 + 0.95 + 0.71) / 3) and table.loc["full", "classes"] == 3
    assert "oracle_refcode_last" not in table


@pytest.mark.parametrize("norm", ["val", "ink"])
def test_rescore_equals_a_trial_with_that_rule(tmp_path, norm):
    base = TrialConfig(dataset="digits", normal_class=5, epochs=2, batch_size=16)
    run_trial(base, _opts(tmp_path / "a"))
    other = TrialConfig(**{**base.__dict__, "score_lambda": 0.5, "score_norm": norm})
    direct = run_trial(other, _opts(tmp_path / "b"))
    re = rescore(read_rows(str(tmp_path / "a")), read_scores(str(tmp_path / "a")), lambdas=(0.5,), norms=(norm,))
    assert len(re) == 1 and bool(re.loc[0, "rescored"])
    assert re.loc[0, "auc"] == pytest.approx(direct["auc"], abs=1e-9)


def test_stored_components_reproduce_the_score(tmp_path):
    """The scores file keeps each component; their mix (eq. 7), min-max normalised, is the score."""
    out = tmp_path / "res"
    for norm in ("none", "val", "ink"):
        run_trial(TrialConfig(normal_class=4, epochs=1, batch_size=8, score_norm=norm), _opts(out))
    rows = read_rows(str(out)).set_index("key")
    scores = read_scores(str(out))
    for key, part in scores.groupby("key"):
        row = rows.loc[key]
        con, fea = part["c_con"].to_numpy(), part["c_fea"].to_numpy()
        if row["score_norm"] == "val":
            con = (con - row["val_con_mean"]) / row["val_con_std"]
            fea = (fea - row["val_fea_mean"]) / row["val_fea_std"]
        if row["score_norm"] == "ink":  # the image's own mean intensity in [0, 1]
            con, fea = con / part["c_ink"].to_numpy(), fea / part["c_ink"].to_numpy()
        raw = row["score_lambda"] * con + (1 - row["score_lambda"]) * fea
        np.testing.assert_allclose(part["raw_score"], raw, rtol=1e-5)  # float32 components
        np.testing.assert_allclose(part["score"], (raw - raw.min()) / (raw.max() - raw.min()), rtol=1e-5,
                                   atol=1e-9)
        assert part["c_lat"].notna().all()


def test_pandas_reads_a_folder_mixing_methods_with_every_column(tmp_path):
    """pyarrow takes one file's schema for a folder: every row/scores/trace file has the same columns."""
    for variant in ("kde", "full"):
        run_trial(TrialConfig(dataset="digits", normal_class=6, epochs=1, batch_size=16, variant=variant),
                  _opts(tmp_path, trace=True))
    rows = pd.read_parquet(tmp_path / "rows")
    assert {"kde_bandwidth", "val_con_mean", "final_loss_d", "method"} <= set(rows.columns) and len(rows) == 2
    assert rows.set_index("method").loc["kde", "kde_bandwidth"] > 0
    assert rows.set_index("method").loc["tian2020", "val_con_mean"] > 0
    scores = pd.read_parquet(tmp_path / "scores")  # compact files too: key, label and every component
    assert {"c_con", "c_fea", "c_lat", "c_score"} <= set(scores.columns)
    assert scores.groupby("key")["c_con"].apply(lambda s: s.notna().any()).sum() == 1
    trace = pd.read_parquet(tmp_path / "trace")
    assert {"oracle_auc_mix", "oracle_auc_score", "loss_d", "val_score"} <= set(trace.columns)


def test_stop_rule_uses_no_test_image(tmp_path):
    """Same train/, different test/: the stopping rule picks the same epoch, the epoch whose
    normal validation images have the lowest mean L_fea."""
    a, b = _trees_differing_in_test(tmp_path)
    out = tmp_path / "res"
    for root in (a, b):
        cfg = TrialConfig(dataset="imagefolder", epochs=3, batch_size=4, stop="val_fea")
        run_trial(cfg, _opts(out, data_root=str(root), cache_dir=str(tmp_path / "cache"), trace=True))
    rows, trace = read_rows(str(out)), read_trace(str(out))
    assert rows["key"].nunique() == 2 and rows["scored_epoch"].nunique() == 1
    for key, t in trace.groupby("key"):
        best = int(t.loc[t["val_loss_fea"].idxmin(), "epoch"])
        assert rows.set_index("key").loc[key, "scored_epoch"] == best


def test_stop_rule_scores_the_kept_epoch_and_survives_a_crash(tmp_path):
    """val_fea keeps an early epoch on digits (D's features drift apart as it trains): the row
    is the model of that epoch, exactly as a trial trained for that many epochs scores it,
    also when the trial is killed after the kept epoch and resumed from its checkpoint."""
    cfg = TrialConfig(dataset="digits", normal_class=3, epochs=3, batch_size=16, stop="val_fea")
    whole = run_trial(cfg, _opts(tmp_path / "whole", trace=True))
    trace = read_trace(str(tmp_path / "whole"))
    kept = int(trace.loc[trace["val_loss_fea"].idxmin(), "epoch"])
    assert whole["scored_epoch"] == kept < cfg.epochs and whole["epochs_run"] == cfg.epochs
    short = run_trial(TrialConfig(dataset="digits", normal_class=3, epochs=kept, batch_size=16), _opts(tmp_path / "s"))
    assert whole["auc"] == short["auc"] and whole["val_fea_mean"] == short["val_fea_mean"]

    class Killed(Exception):
        pass

    def die(metrics, path):
        if metrics["epoch"] == 2:
            raise Killed

    with pytest.raises(Killed):
        run_trial(cfg, _opts(tmp_path / "resumed"), on_epoch=die)
    resumed = run_trial(cfg, _opts(tmp_path / "resumed"))
    assert resumed["resumed_from_epoch"] == 2 and resumed["scored_epoch"] == kept
    assert resumed["auc"] == whole["auc"]


def test_a_later_field_at_its_old_value_keeps_old_keys(tmp_path):
    """Adding the `stop` knob did not re-key trials that stop at the last epoch (the committed
    rows' keys were hashed without it); another stop rule is another trial. A baseline has no
    discriminator: it scores its last epoch whatever the default rule, and keeps its old key."""
    def old_key(cfg):
        # stop and preprocess came later; so did params (a method's own knobs: None for the built-in ones)
        fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("stop", "preprocess", "params")}
        blob = json.dumps({**fields, "data": "abc"}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    cfg = TrialConfig(dataset="digits", normal_class=2, stop="last")
    assert cfg.key("abc") == old_key(cfg)
    assert dataclasses.replace(cfg, stop="val_fea").key("abc") != cfg.key("abc")
    dae = TrialConfig(dataset="digits", variant="dae", stop="val_fea")
    assert dae.stop == "last" and dae.key("abc") == old_key(dae)
    run_trial(dataclasses.replace(cfg, epochs=1, batch_size=16), _opts(tmp_path))
    rows = pd.read_parquet(tmp_path / "rows").drop(columns="stop")  # a row written before the field
    rows.to_parquet(next((tmp_path / "rows").iterdir()))
    assert list(read_rows(str(tmp_path))["stop"]) == ["last"]
