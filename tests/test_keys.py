"""Every committed row under results/ keeps its key: the key recomputed from the row's own
configuration columns and data fingerprint equals the key it was written under. A change to
TrialConfig (a new field, a renamed module, a refactor) that would re-key a committed trial fails here."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from novelty import methods
from novelty.config import TrialConfig
from novelty.store.results import read_rows

RESULTS = Path(__file__).resolve().parents[1] / "results"
# written before a key covered its data (its README says so): its keys cannot be recomputed
PRE_FINGERPRINT = {"mnist-provisional"}
FOLDERS = sorted(p.parent for p in RESULTS.glob("*/rows")
                 if any(p.glob("*.parquet")) and p.parent.name not in PRE_FINGERPRINT)


def _config(row: dict) -> TrialConfig:
    """The row's trial: TrialConfig's fields and its method's own hyper-parameters, by name."""
    kinds = {f.name: f.type for f in dataclasses.fields(TrialConfig) if f.name != "params"}
    spec = methods.spec_for(row["variant"])
    if spec.params is not None:
        kinds.update({f.name: f.type for f in dataclasses.fields(spec.params)})
    casts = {"int": int, "float": float, "str": str, "bool": bool}
    values = {}
    for name, kind in kinds.items():
        value = row.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue  # a field added after the row was written: its default is the value it ran with
        values[name] = casts[kind](value)
    return TrialConfig.from_flat(values)


def test_there_are_committed_results():
    assert len(FOLDERS) >= 5, FOLDERS
    for name in PRE_FINGERPRINT:  # the one exception is still what it says it is
        assert "data_fingerprint" not in read_rows(str(RESULTS / name))


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_committed_rows_keep_their_keys(folder: Path):
    rows = read_rows(str(folder))
    assert len(rows) > 0
    for row in rows.to_dict("records"):
        cfg = _config(row)
        assert cfg.key(row["data_fingerprint"]) == row["key"], (folder.name, row["run_name"])
