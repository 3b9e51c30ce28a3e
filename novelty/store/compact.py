"""`novelty compact --results DIR`: rewrite a results folder's rows and score files written before
the compact format (`novelty.store.scorefiles`, `novelty.store.results.row_table`) in it, in place.

Each file is rewritten only after the new one is read back equal, value for value and
dtype for dtype, to the old one (scores: the frame `read_scores` returns, derived columns
included; rows: the frame `read_rows` starts from), and atomically. Files git tracks are
left alone: a committed file rewritten would only add its new version to the history, so
compact a new sweep's files before committing them. Files already compact, and score files
without their row (an unfinished trial, it reruns), are skipped.
"""
from __future__ import annotations

import argparse
import subprocess
from dataclasses import dataclass, field

import pandas as pd

from ..arguments import add_results_arg, results_folder
from .results import (ROW_META, ROWS, SCORES, _list, _write_atomic, is_local, open_store, read_table,
                      row_table)
from .scorefiles import compact, expand, is_compact


@dataclass
class Compacted:
    """What `compact_folder` did."""

    rewritten: list[str] = field(default_factory=list)
    """Paths rewritten (relative to the folder)."""
    tracked: int = 0
    """Files left alone because git tracks them."""
    skipped: int = 0
    """Files already compact, or score files without a row."""
    bytes_before: int = 0
    """Size of the rewritten files before."""
    bytes_after: int = 0
    """Their size after."""


def git_tracked(folder: str) -> set[str]:
    """Paths (relative to `folder`) that git tracks there; empty outside a git work tree."""
    try:
        out = subprocess.run(["git", "-C", folder, "ls-files", "-z", "--", ROWS, SCORES], capture_output=True,
                             timeout=60)
    except (OSError, subprocess.SubprocessError):
        return set()
    return set(out.stdout.decode().split("\0")) - {""} if out.returncode == 0 else set()


def compact_folder(uri: str, dry_run: bool = False) -> Compacted:
    """Rewrite the folder's old-format rows and scores in the compact format (module docstring)."""
    fs, base = open_store(uri)
    tracked = git_tracked(base) if is_local(uri) else set()
    done = Compacted()
    rows = _list(uri, ROWS)
    for sub, files in ((SCORES, _list(uri, SCORES)), (ROWS, rows)):
        for key, path in sorted(files.items()):
            rel = f"{sub}/{key}.parquet"
            if rel in tracked:
                done.tracked += 1
                continue
            old = read_table(fs, path)
            if sub == SCORES:
                if is_compact(old.schema) or key not in rows:
                    done.skipped += 1
                    continue
                row = read_table(fs, rows[key]).to_pandas().iloc[0].to_dict()
                new = compact(old.to_pandas(), row)
                pd.testing.assert_frame_equal(expand(new, row), old.to_pandas(), check_exact=True)
            else:
                if old.schema.metadata == ROW_META:
                    done.skipped += 1
                    continue
                new = row_table(old.to_pandas())
                pd.testing.assert_frame_equal(new.to_pandas(), old.to_pandas(), check_exact=True)
            done.bytes_before += fs.get_file_info(path).size
            if not dry_run:
                _write_atomic(fs, new, path)
                done.bytes_after += fs.get_file_info(path).size
            done.rewritten.append(rel)
    return done


def _cmd_compact(ns: argparse.Namespace) -> int:
    done = compact_folder(results_folder(ns, "compact"), dry_run=ns.dry_run)
    verb = "would rewrite" if ns.dry_run else "rewrote"
    print(f"{verb} {len(done.rewritten)} files ({done.bytes_before / 1e6:.1f} MB"
          + ("" if ns.dry_run else f" -> {done.bytes_after / 1e6:.1f} MB") + f"); left {done.tracked} git-tracked "
          f"files and {done.skipped} compact or row-less ones as they were")
    return 0


def add_subcommand(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compact", help="rewrite a results folder's uncommitted rows and scores compactly",
                       description="Rewrite the rows and score files of --results written before the compact format, "
                                   "in place, each read back equal to the old one first. Git-tracked files are left alone.")
    add_results_arg(p, "to compact")
    p.add_argument("--dry-run", action="store_true", help="check and count, write nothing")
    p.set_defaults(func=_cmd_compact)

