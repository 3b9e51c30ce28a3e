"""The results store: per trial, one Parquet row file, one per-image score file and, when
asked, one per-epoch trace file.

Layout under a results folder or URI (anything pyarrow.fs understands: a local path,
file://, s3://, gs://):

    rows/<key>.parquet     one row: the trial's config, AUC and run facts (docs/design.md §3)
    scores/<key>.parquet   key, index, label, score, raw_score and a c_<name> column per score
                           component of every registered method (c_con, c_fea, c_lat, c_ink for
                           the paper's method, c_score for a baseline; NaN where another's) for
                           every test image, as `read_scores` returns them; stored without what
                           derives from the rest and the row (`novelty.store.scorefiles`)
    trace/<key>.parquet    optional (--trace): one row per epoch, validation figures and ORACLE test AUCs

Each is written to a hidden temporary name and moved into place, trace and scores before
the row, so a row's presence means the trial is complete, and a rerun overwrites instead of adding.
Rows and scores are written zstd-compressed without Parquet statistics or pandas metadata
(`ROW_META` marks such a row); files written before (Snappy, full score frames) read the same.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .. import methods
from ..config import LATER_FIELDS, first_line
from ..errors import ResultsError
from .scorefiles import compact, expand, is_compact, write_options

ROWS, SCORES, TRACE = "rows", "scores", "trace"
ROW_META = {b"novelty.rows": b"2"}


def open_store(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, base path) for a local path or a URI."""
    if "://" in uri:
        try:
            fs, path = pafs.FileSystem.from_uri(uri)
        except (OSError, pa.ArrowException) as exc:
            why = first_line(exc, 240)
            raise ResultsError(f"cannot open the results URI {uri}: {why}") from exc
        return fs, path.rstrip("/")
    return pafs.LocalFileSystem(), str(Path(uri).absolute())


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def check_writable(uri: str) -> None:
    """Fail before training, with the folder's name, if results cannot be written there."""
    fs, base = open_store(uri)
    probe = f"{base}/{ROWS}/.probe-{uuid.uuid4().hex}"
    try:
        fs.create_dir(f"{base}/{ROWS}", recursive=True)
        fs.create_dir(f"{base}/{SCORES}", recursive=True)
        with fs.open_output_stream(probe) as fh:
            fh.write(b"ok")
    except (OSError, pa.ArrowException) as exc:
        raise ResultsError(f"results folder {uri} is not writable: {exc}") from exc
    finally:  # however the write ended (a full disk mid-write too), no probe stays behind
        try:
            if fs.get_file_info(probe).type == pafs.FileType.File:
                fs.delete_file(probe)
        except (OSError, pa.ArrowException):
            pass


ARROW_TYPES = {int: pa.int64(), float: pa.float64(), str: pa.string(), bool: pa.bool_()}


def row_table(row: pd.DataFrame) -> pa.Table:
    """A trial's row (a one-row frame) as written: no pandas metadata (the frame has no index), `ROW_META`.
    The methods' own hyper-parameters take their declared types whichever method wrote the row
    (null in other methods' rows), so `pd.read_parquet(<results>/rows)` reads a folder that mixes
    methods whichever file pyarrow takes the schema from."""
    table = pa.Table.from_pandas(row, preserve_index=False)
    for name, kind in methods.param_types().items():
        i = table.schema.get_field_index(name)
        if i >= 0 and kind in ARROW_TYPES and table.schema.field(i).type != ARROW_TYPES[kind]:
            table = table.set_column(i, pa.field(name, ARROW_TYPES[kind]), table.column(i).cast(ARROW_TYPES[kind]))
    return table.replace_schema_metadata(ROW_META)


def table_options(table: pa.Table) -> dict:
    """How a table is written: rows and compact scores small (zstd, no statistics), others as pyarrow does."""
    if is_compact(table.schema):
        return write_options(table)
    if table.schema.metadata == ROW_META:
        return {**write_options(table), "use_dictionary": False}  # one value a column: a dictionary only adds a page
    return {}


def _write_parquet(fs: pafs.FileSystem, table: pa.Table, path: str) -> None:
    options = table_options(table)
    with pq.ParquetWriter(path, table.schema, filesystem=fs, **options) as writer:
        writer.write_table(table)
        if options.get("store_schema") is False and table.schema.metadata:  # else only ARROW:schema carries it
            writer.add_key_value_metadata(table.schema.metadata)


def _write_atomic(fs: pafs.FileSystem, table: pa.Table, path: str) -> None:
    parent, name = path.rsplit("/", 1)
    tmp = f"{parent}/.tmp-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _write_parquet(fs, table, tmp)
        fs.move(tmp, path)
    except BaseException:
        try:
            fs.delete_file(tmp)
        except (OSError, pa.ArrowException):
            pass
        raise


def write_trial(uri: str, row: dict, scores: pd.DataFrame, trace: pd.DataFrame | None = None) -> str:
    """Write the trial's trace (if any) and scores, then its row; returns the row's path.
    A failure (full disk, lost bucket) leaves no partial file and raises ResultsError."""
    fs, base = open_store(uri)
    key = row["key"]
    parts = ([(TRACE, pa.Table.from_pandas(trace, preserve_index=False))] if trace is not None else []) + \
        [(SCORES, compact(scores, row)), (ROWS, row_table(pd.DataFrame([row])))]
    written = []
    try:
        for sub, table in parts:
            fs.create_dir(f"{base}/{sub}", recursive=True)
            _write_atomic(fs, table, f"{base}/{sub}/{key}.parquet")
            written.append(f"{base}/{sub}/{key}.parquet")
    except (OSError, pa.ArrowException) as exc:
        for path in written:  # no trace or scores without their row
            try:
                fs.delete_file(path)
            except (OSError, pa.ArrowException):
                pass
        why = first_line(exc, 200)
        raise ResultsError(f"cannot write the results of trial {key} under {uri}: {why}") from exc
    return f"{base}/{ROWS}/{key}.parquet"


def _list(uri: str, sub: str) -> dict[str, str]:
    fs, base = open_store(uri)
    try:
        infos = fs.get_file_info(pafs.FileSelector(f"{base}/{sub}", allow_not_found=True))
    except (OSError, pa.ArrowException) as exc:
        raise ResultsError(f"cannot list {uri}/{sub}: {exc}") from exc
    return {i.base_name[: -len(".parquet")]: i.path for i in infos
            if i.type == pafs.FileType.File and i.base_name.endswith(".parquet") and not i.base_name.startswith(".")}


def existing_keys(uri: str) -> set[str]:
    """Keys of the trials whose row is already written."""
    return set(_list(uri, ROWS))


def delete_trial(uri: str, key: str) -> None:
    fs, base = open_store(uri)
    for sub in (ROWS, SCORES, TRACE):
        info = fs.get_file_info(f"{base}/{sub}/{key}.parquet")
        if info.type == pafs.FileType.File:
            fs.delete_file(info.path)


def read_table(fs: pafs.FileSystem, path: str) -> pa.Table:
    try:
        return pq.read_table(path, filesystem=fs)
    except (OSError, pa.ArrowException) as exc:
        why = first_line(exc, 200)
        raise ResultsError(f"cannot read {path} ({why}); delete it (its trial reruns) or restore it") from exc


def _read_one(fs: pafs.FileSystem, path: str) -> pd.DataFrame:
    return read_table(fs, path).to_pandas()


def _read(uri: str, sub: str, keys: set[str] | None = None) -> pd.DataFrame:
    fs, _ = open_store(uri)
    files = _list(uri, sub)
    frames = [_read_one(fs, p) for k, p in sorted(files.items()) if keys is None or k in keys]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_rows(uri: str) -> pd.DataFrame:
    """Every trial row under a results folder, one DataFrame row per trial. A TrialConfig
    field added after a row was written (config.LATER_FIELDS) gets the value that row ran with."""
    rows = _read(uri, ROWS)
    if not rows.empty:
        for name, value in LATER_FIELDS.items():
            rows[name] = rows[name].fillna(value) if name in rows else value
    return rows


def read_scores(uri: str, keys: set[str] | None = None) -> pd.DataFrame:
    """Per-image scores (key, index, label, score, raw_score, c_*) of the given trials (default all),
    the same frame from either format; a compact file's derived columns come from its row."""
    fs, _ = open_store(uri)
    files = {k: p for k, p in sorted(_list(uri, SCORES).items()) if keys is None or k in keys}
    tables = {k: read_table(fs, p) for k, p in files.items()}
    row_files = _list(uri, ROWS) if any(is_compact(t.schema) for t in tables.values()) else {}
    frames = []
    for k, table in tables.items():
        row = _read_one(fs, row_files[k]).iloc[0].to_dict() if is_compact(table.schema) and k in row_files else None
        frames.append(expand(table, row))
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_trace(uri: str, keys: set[str] | None = None) -> pd.DataFrame:
    """Per-epoch traces (key, epoch, val_*, oracle_*) of the given trials (default all)."""
    return _read(uri, TRACE, keys)
