"""How a trial's per-image scores are stored (`<results>/scores/<key>.parquet`), and the frame
every reader gets back from them, whichever version wrote the file.

The frame (one row per test image, in test order): key, index, label, score, raw_score and
the score's components c_* (every registered method's; NaN where a method has none).

Format 1 (files written before this module) stores that frame as it is: Snappy-compressed,
float64 scores, ~430 KB per CIFAR-10 trial. Format 2 leaves out what derives from the rest
and the trial's row, and the writer checks each derivation against the values it leaves
out, so the frame read back is the frame the trial wrote, bit for bit:

- not stored: index (0..n-1), raw_score (eq. 7 of the components under the row's score
  rule, or a method's one component: `derive_raw`), score (min-max of raw_score over the
  test split, eq. 8), each only where it derives exactly;
- stored: key, label (int8), and every component at the width it was computed in (float32
  from the networks, float64 from the pixel baselines; a column of NaN costs ~50 bytes), so
  `pd.read_parquet(<results>/scores)` still reads key, label and c_* across a folder;
- floats BYTE_STREAM_SPLIT-encoded and zstd-compressed, no statistics: what is left is
  ~3 bytes per float32 value (its low mantissa bytes do not compress).

Deriving raw_score needs the trial's row (its score rule and validation statistics):
`novelty.store.results.read_scores` reads it. A scores file whose row is missing (the writer died
between the two: the trial reruns) reads with raw_score and score NaN.
"""
from __future__ import annotations

import json
from typing import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from ..methods.scoring import minmax, mix

META = b"novelty.scores"
FORMAT = 2
WRITE_OPTIONS = {"compression": "zstd", "compression_level": 19, "write_statistics": False, "store_schema": False}
"""pyarrow.parquet.write_table options of a compact file (scores and rows); floats add BYTE_STREAM_SPLIT."""


def write_options(table: pa.Table) -> dict:
    """`pq.write_table` options for `table`: WRITE_OPTIONS, floats BYTE_STREAM_SPLIT, others dictionary."""
    floats = [f.name for f in table.schema if pa.types.is_floating(f.type)]
    return {**WRITE_OPTIONS, "use_dictionary": [n for n in table.column_names if n not in floats],
            "column_encoding": {n: "BYTE_STREAM_SPLIT" for n in floats} or None}


def derive_raw(comps: Mapping[str, np.ndarray], row: Mapping) -> np.ndarray | None:
    """The raw score a trial computed from its components: eq. 7 of con and fea under the row's
    score rule (score_lambda, score_norm and its validation statistics val_con_mean, ...), as
    the paper's method scores; a method's one component `score` otherwise. None when the row
    lacks what that needs (the writer then stores raw_score)."""
    if "con" in comps and "fea" in comps:
        stats = {k: _float(row.get(f"val_{k}")) for k in ("con_mean", "con_std", "fea_mean", "fea_std")}
        try:
            return mix(comps, float(row["score_lambda"]), str(row["score_norm"]), stats)
        except (KeyError, TypeError, ValueError):
            return None
    if "score" in comps:
        return np.asarray(comps["score"], dtype=np.float64)
    return None


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit for bit (NaN included)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def is_compact(schema: pa.Schema) -> bool:
    return bool(schema.metadata) and META in schema.metadata


def compact(frame: pd.DataFrame, row: Mapping) -> pa.Table:
    """The format-2 table of a trial's scores frame (see the module docstring); `row` is its row."""
    key, n = str(row["key"]), len(frame)
    if "index" in frame and not _same(frame["index"].to_numpy(np.int64), np.arange(n, dtype=np.int64)):
        raise ValueError(f"scores frame of trial {key}: index is not 0..n-1 (cannot be derived)")
    derived = [c for c in ("index",) if c in frame]
    if "raw_score" in frame:
        raw = frame["raw_score"].to_numpy()
        comps = {c[2:]: frame[c].to_numpy() for c in frame.columns if c.startswith("c_") and frame[c].notna().any()}
        got = derive_raw(comps, row)
        derived += ["raw_score"] if got is not None and _same(got, raw) else []
        derived += ["score"] if "score" in frame and _same(minmax(raw), frame["score"].to_numpy()) else []
    stored = frame.drop(columns=derived)
    labels = stored["label"].to_numpy()
    if _same(labels.astype(np.int8).astype(labels.dtype), labels):
        stored = stored.assign(label=labels.astype(np.int8))
    layout = {"format": FORMAT, "rows": n, "derived": derived,
              "columns": [[f.name, str(f.type)] for f in pa.Schema.from_pandas(frame, preserve_index=False)]}
    table = pa.Table.from_pandas(stored, preserve_index=False)
    return table.replace_schema_metadata({META: json.dumps(layout, separators=(",", ":")).encode()})


def expand(table: pa.Table, row: Mapping | None) -> pd.DataFrame:
    """The scores frame of a stored table: format 1 as it is, format 2 with what it derives
    (raw_score and score NaN when `row` is None: a file whose row is missing)."""
    if not is_compact(table.schema):
        return table.to_pandas()
    layout = json.loads(table.schema.metadata[META])
    n, derived = layout["rows"], set(layout["derived"])
    cols = {name: table[name].to_numpy(zero_copy_only=False) for name in table.column_names}
    if "index" in derived:
        cols["index"] = np.arange(n, dtype=np.int64)
    if "raw_score" in derived:
        comps = {c[2:]: v for c, v in cols.items() if c.startswith("c_") and not np.isnan(v).all()}
        got = derive_raw(comps, row) if row is not None else None
        cols["raw_score"] = got if got is not None else np.full(n, np.nan)
    if "score" in derived:
        raw = cols["raw_score"]
        cols["score"] = minmax(raw) if n and not np.isnan(raw).all() else np.full(n, np.nan)
    names = [name for name, _ in layout["columns"]]
    arrays = [pa.array(cols[name]).cast(pa.type_for_alias(kind)) for name, kind in layout["columns"]]
    return pa.table(arrays, names=names).to_pandas()
