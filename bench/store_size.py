"""Benchmark: the results store's size per trial before and after `novelty compact`, on a copy of
a results folder, with the proof that nothing a reader or the report computes changes.

    .venv/bin/python bench/store_size.py results/cifar10 [--report]

Copies RESULTS (rows/ and scores/) to a temporary folder, compacts the copy there (the
committed files are never touched), then checks: every trial's scores frame (`read_scores`:
key, index, label, score, raw_score, c_*) and the rows frame (`read_rows`) equal the
original's bit for bit, and so do the AUCs every score rule re-mixes from the stored
components (`selection.rescore`, what `novelty report --score-rules` chooses among). With
--report it also renders both folders' tables (`--score-rules`, no plots) and compares
every file byte for byte (report.md's first line names its folder: compared with the folder
replaced). Prints bytes per trial (rows, scores) before and after, and what
600 such trials would add to a repository.
"""
from __future__ import annotations

import argparse
import contextlib
import filecmp
import io
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from novelty.store.compact import compact_folder
from novelty.store.results import read_rows, read_scores
from novelty.report.selection import rescore


def folder_bytes(folder: Path, sub: str) -> int:
    return sum(p.stat().st_size for p in (folder / sub).glob("*.parquet"))


def _same_but_folder(a: Path, b: Path, old: Path, new: Path) -> bool:
    """The same text once each names its own folder alike (report.md starts with its folder)."""
    return a.suffix == ".md" and a.read_text().replace(str(old), "RESULTS") == b.read_text().replace(str(new), "RESULTS")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", help="a results folder (read only)")
    p.add_argument("--report", action="store_true", help="also render both folders' tables and compare them")
    p.add_argument("--trials", type=int, default=600, help="trials to project the repository growth for")
    args = p.parse_args(argv)
    src = Path(args.results)
    with tempfile.TemporaryDirectory(prefix="store_size-") as tmp:
        old, new = Path(tmp) / "old", Path(tmp) / "new"
        for dst in (old, new):
            for sub in ("rows", "scores"):
                shutil.copytree(src / sub, dst / sub)
        done = compact_folder(str(new))
        rows_old, rows_new = read_rows(str(old)), read_rows(str(new))
        pd.testing.assert_frame_equal(rows_new, rows_old, check_exact=True)
        scores_old, scores_new = read_scores(str(old)), read_scores(str(new))
        pd.testing.assert_frame_equal(scores_new, scores_old, check_exact=True)
        remix_old, remix_new = rescore(rows_old, scores_old), rescore(rows_new, scores_new)
        pd.testing.assert_frame_equal(remix_new, remix_old, check_exact=True)
        n = len(rows_old)
        print(f"{src}: {n} trials, {len(done.rewritten)} files rewritten; rows, scores and {len(remix_old)} "
              "re-mixed AUCs identical bit for bit")
        before = {sub: folder_bytes(old, sub) / n for sub in ("rows", "scores")}
        after = {sub: folder_bytes(new, sub) / n for sub in ("rows", "scores")}
        print(f"{'per trial':<12}{'before KB':>11}{'after KB':>10}{'ratio':>8}")
        for sub in ("rows", "scores"):
            print(f"{sub:<12}{before[sub] / 1e3:>11.1f}{after[sub] / 1e3:>10.1f}{after[sub] / before[sub]:>8.3f}")
        total_b, total_a = sum(before.values()), sum(after.values())
        print(f"{'total':<12}{total_b / 1e3:>11.1f}{total_a / 1e3:>10.1f}{total_a / total_b:>8.3f}")
        print(f"{args.trials} such trials: {args.trials * total_b / 1e6:.1f} MB before, {args.trials * total_a / 1e6:.1f} MB "
              f"after (rows alone {args.trials * after['rows'] / 1e6:.1f} MB)")
        if args.report:
            from novelty.report.write import write_report

            for folder in (old, new):
                with contextlib.redirect_stdout(io.StringIO()):  # the report prints its tables
                    write_report(str(folder), out_dir=str(folder / "tables"), plots=False, score_rules=True)
            names = sorted(q.name for q in (old / "tables").iterdir())
            same = [name for name in names if filecmp.cmp(old / "tables" / name, new / "tables" / name, shallow=False)
                    or _same_but_folder(old / "tables" / name, new / "tables" / name, old, new)]
            print(f"report --score-rules: {len(same)} of {len(names)} table files byte-identical"
                  + ("" if len(same) == len(names) else f"; differ: {sorted(set(names) - set(same))}"))
            return 0 if len(same) == len(names) else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
