"""The compact results store: score files keep only what cannot be derived, rows lose their
per-column metadata, and every reader gets back the frame the trial wrote, bit for bit; files
written before read the same; `novelty compact` rewrites uncommitted files only."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from novelty.store.compact import compact_folder
from novelty.store.results import read_rows, read_scores, write_trial
from novelty.store.scorefiles import compact, expand, is_compact
from novelty.methods.scoring import minmax, mix
from novelty.report.selection import rescore

RESULTS = Path(__file__).resolve().parents[1] / "results"
COMMITTED = RESULTS / "cifar10"  # CIFAR-10 trials at several score rules, committed in format 1


def _trial(key: str = "k1", n: int = 500, norm: str = "val", lam: float = 0.9, seed: int = 0):
    """A row and its scores frame as run_trial builds them: float32 components, raw_score by eq. 7."""
    rng = np.random.default_rng(seed)
    comps = {c: rng.gamma(2.0, 0.1, n).astype(np.float32) for c in ("con", "fea", "lat")}
    comps["ink"] = rng.random(n).astype(np.float32)
    row = {"key": key, "score_lambda": lam, "score_norm": norm, "auc": 0.5,
           **{f"val_{c}_{s}": float(rng.random()) + 0.1 for c in ("con", "fea", "lat") for s in ("mean", "std")}}
    stats = {k[4:]: v for k, v in row.items() if k.startswith("val_")}
    raw = mix(comps, lam, norm, stats)
    frame = pd.DataFrame({"key": key, "index": range(n), "label": (rng.random(n) < 0.8).astype(np.int64),
                          "score": minmax(raw), "raw_score": raw, "c_score": np.nan,
                          **{f"c_{c}": v for c, v in comps.items()}})
    return row, frame


def _format1(path: Path, frame: pd.DataFrame) -> None:
    """A scores file (or row) as the writer before the compact format wrote it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)


def _eq7_by_hand(part: pd.Series, row: dict) -> float:
    """The paper's eq. 7 for one image, written out here (not with novelty.methods.scoring): each component
    scaled as score_norm says (val: by its validation mean and std; ink: over the image's ink,
    floored at 1e-3), then lambda * L_con + (1 - lambda) * L_fea."""
    con, fea, lam = float(part["c_con"]), float(part["c_fea"]), row["score_lambda"]
    if row["score_norm"] == "val":
        con = (con - row["val_con_mean"]) / row["val_con_std"]
        fea = (fea - row["val_fea_mean"]) / row["val_fea_std"]
    elif row["score_norm"] == "ink":
        con, fea = con / max(float(part["c_ink"]), 1e-3), fea / max(float(part["c_ink"]), 1e-3)
    return lam * con + (1.0 - lam) * fea


@pytest.mark.parametrize("norm", ["none", "val", "ink"])
def test_compact_scores_read_back_bit_for_bit_without_derivable_columns(norm):
    row, frame = _trial(norm=norm)
    table = compact(frame, row)
    assert set(table.column_names) == {"key", "label", "c_con", "c_fea", "c_lat", "c_ink", "c_score"}  # nothing derivable
    assert table.schema.field("c_con").type == pa.float32() and table.schema.field("label").type == pa.int8()
    back = expand(table, row)
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    # the derived columns are eq. 7 and eq. 8, computed here without the code under test
    raw = [_eq7_by_hand(back.iloc[i], row) for i in range(len(back))]
    lo, hi = min(raw), max(raw)
    for i in (0, 7, 123, len(back) - 1):
        assert back["raw_score"].iloc[i] == pytest.approx(raw[i], rel=1e-12, abs=1e-15)
        assert back["score"].iloc[i] == pytest.approx((raw[i] - lo) / (hi - lo), rel=1e-12, abs=1e-15)


def test_what_does_not_derive_is_stored():
    row, frame = _trial()
    other_rule = {**row, "score_lambda": 0.5}  # the row says another rule than the scores were made with
    table = compact(frame, other_rule)
    assert "raw_score" in table.column_names
    pd.testing.assert_frame_equal(expand(table, other_rule), frame, check_exact=True)
    frame2 = frame.assign(score=frame["score"] * 0.5)  # a score that is not min-max of raw_score
    assert "score" in compact(frame2, row).column_names
    baseline = frame.assign(c_con=np.nan, c_fea=np.nan, c_lat=np.nan, c_ink=np.nan,  # a pixel baseline's
                            c_score=np.linspace(-3, 5, len(frame)), raw_score=np.linspace(-3, 5, len(frame)))
    baseline = baseline.assign(score=minmax(baseline["raw_score"].to_numpy()))
    table = compact(baseline, {"key": "k1"})
    assert "raw_score" not in table.column_names and table.schema.field("c_score").type == pa.float64()
    pd.testing.assert_frame_equal(expand(table, {"key": "k1"}), baseline, check_exact=True)
    with pytest.raises(ValueError, match="index"):
        compact(frame.assign(index=frame["index"] + 1), row)


def test_read_scores_mixes_old_and_new_files_into_one_frame(tmp_path):
    old_row, old = _trial("old", seed=1)
    new_row, new = _trial("new", seed=2)
    write_trial(str(tmp_path), new_row, new)
    _format1(tmp_path / "scores" / "old.parquet", old)
    _format1(tmp_path / "rows" / "old.parquet", pd.DataFrame([old_row]))
    assert is_compact(pq.read_schema(tmp_path / "scores" / "new.parquet"))
    got = read_scores(str(tmp_path))
    want = pd.concat([new, old], ignore_index=True)  # read in key order: new < old
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert (tmp_path / "scores" / "new.parquet").stat().st_size < (tmp_path / "scores" / "old.parquet").stat().st_size / 2
    pd.testing.assert_frame_equal(read_scores(str(tmp_path), {"old"}), old, check_exact=True)
    (tmp_path / "rows" / "new.parquet").unlink()  # a scores file whose row was never written
    orphan = read_scores(str(tmp_path), {"new"})
    assert orphan["raw_score"].isna().all() and orphan["score"].isna().all()
    pd.testing.assert_frame_equal(orphan.drop(columns=["raw_score", "score"]), new.drop(columns=["raw_score", "score"]))


def test_rows_written_compact_read_the_same(tmp_path):
    row, frame = _trial()
    row = {**row, "variant": "full", "traced": False, "n_test": 500, "note": None}
    write_trial(str(tmp_path), row, frame)
    path = tmp_path / "rows" / "k1.parquet"
    old = pa.Table.from_pandas(pd.DataFrame([row]), preserve_index=False)
    pd.testing.assert_frame_equal(pq.read_table(path).to_pandas(), old.to_pandas(), check_exact=True)
    pq.write_table(old, tmp_path / "old.parquet")
    assert path.stat().st_size < (tmp_path / "old.parquet").stat().st_size / 2


@pytest.mark.skipif(not (COMMITTED / "scores").is_dir(), reason="no committed CIFAR-10 scores")
def test_committed_scores_compact_without_changing_any_auc():
    """On committed files: every column comes back bit for bit, so every re-mixed AUC does too."""
    rows = read_rows(str(COMMITTED))
    keys = sorted(rows["key"])[:4]
    old = read_scores(str(COMMITTED), set(keys))
    new = pd.concat([expand(compact(part, row), row) for row, part in
                     ((rows.set_index("key").loc[k].to_dict() | {"key": k}, old[old["key"] == k].reset_index(drop=True))
                      for k in keys)], ignore_index=True)
    pd.testing.assert_frame_equal(new, old, check_exact=True)
    part = rows[rows["key"].isin(keys)]
    assert (rescore(part, new)["auc"].to_numpy() == rescore(part, old)["auc"].to_numpy()).all()


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_compact_rewrites_untracked_files_only(tmp_path):
    folder = tmp_path / "res"
    for key, seed in (("a", 1), ("b", 2)):
        row, frame = _trial(key, seed=seed)
        _format1(folder / "scores" / f"{key}.parquet", frame)
        _format1(folder / "rows" / f"{key}.parquet", pd.DataFrame([row]))
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "res/rows/a.parquet", "res/scores/a.parquet")
    before_rows, before_scores = read_rows(str(folder)), read_scores(str(folder))
    tracked = (folder / "scores" / "a.parquet").read_bytes()
    done = compact_folder(str(folder))
    assert sorted(done.rewritten) == ["rows/b.parquet", "scores/b.parquet"] and done.tracked == 2
    assert done.bytes_after < done.bytes_before / 2
    assert (folder / "scores" / "a.parquet").read_bytes() == tracked  # committed: left alone
    assert is_compact(pq.read_schema(folder / "scores" / "b.parquet"))
    pd.testing.assert_frame_equal(read_scores(str(folder)), before_scores, check_exact=True)
    pd.testing.assert_frame_equal(read_rows(str(folder)), before_rows, check_exact=True)
    again = compact_folder(str(folder))
    assert again.rewritten == [] and again.skipped == 2
