"""The report's tables as DataFrames, from result rows: labels, per-class summaries, the
class-mean column, the paper's rows beside ours, and paired differences between variants.

Conventions (repeated in the notes under every written table):
- A cell is "mean ± std (n)" over the seeds of one (dataset, variant, config, class);
  std uses ddof=1 (pandas' default), so it is blank when n = 1.
- Rows are methods; when a hyper-parameter other than seed / normal_class / variant
  varies among one method's rows of a dataset, the row label names it ("full (epochs=5)"),
  so different configurations are never averaged together.
- Mean column: the mean over classes of the per-class means. Its std is the std
  (ddof=1) over seeds of each seed's mean over classes, given only when every seed
  covers every class; its n is the number of seeds. When the seed drew the class (COIL-100:
  rows with class_drawn), the mean column is the mean ± std over those repetitions, as the
  paper's table 1 reports it.
- Paired differences: variant a − variant b on the (class, seed) pairs both have,
  with the Wilcoxon signed-rank test (scipy defaults: zero differences dropped).

Every function takes result rows, labelled (`label_rows`) or not: `write_report` labels once.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import methods
from ..config import plain_fields
from .effects import wilcoxon_p
from .paper import published
from ..methods import VARIANTS

FIXED_FIELDS = ("dataset", "normal_class", "seed", "variant")


def hyper_fields() -> tuple[str, ...]:
    """The knobs that can label a row: TrialConfig's (less FIXED_FIELDS) and the methods' own."""
    return (*(name for name in plain_fields() if name not in FIXED_FIELDS), *methods.param_columns())
PAPER_LABELS = {"paper (full)": methods.TIAN2020.paper_label}  # paper_tables.csv's name of its own method


def _reads(variant: str) -> set[str]:
    """The knobs a variant's method reads (its own and the common ones)."""
    return methods.spec_for(variant).knobs()


def _display(variant: str) -> str:
    return methods.spec_for(variant).display or variant


def _fmt_value(value: object) -> str:
    return f"{value:g}" if isinstance(value, (float, np.floating)) else str(value)


def label_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Add `config` (the knobs that vary among the rows of the row's method within its dataset,
    "" if none) and `label` (the method's display name plus that config) to a copy of `rows`.
    A method's rows are those of every variant it serves (the paper's method serves base,
    entropy, cam and full), so variants of one method that ran at the same knobs share a
    config and are compared with each other; another method's knobs never label it (a
    baseline trained for 4 epochs does not make "epochs=5" appear on the paper's method).
    Only the knobs a method reads (the registry's MethodSpec.reads) can label its rows."""
    out = rows.copy()
    out["normal_class"] = out["normal_class"].astype(int)
    out["config"] = ""
    method = out["variant"].map({v: methods.spec_for(v).name for v in out["variant"].unique()})
    for _, idx in out.groupby([out["dataset"], method]).groups.items():
        part = out.loc[idx]
        reads = set().union(*(_reads(v) for v in part["variant"].unique()))
        varying = [c for c in hyper_fields() if c in part and c in reads and part[c].nunique(dropna=False) > 1]
        out.loc[idx, "config"] = [", ".join(f"{c}={_fmt_value(r[c])}" for c in varying) for _, r in part.iterrows()]
    out["label"] = [f"{_display(v)} ({c})" if c else _display(v) for v, c in zip(out["variant"], out["config"])]
    return out


def labelled_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` as `label_rows` gives them (unchanged if they already carry labels)."""
    return rows if "label" in rows and "config" in rows else label_rows(rows)


def _order(frame: pd.DataFrame, *extra: str) -> pd.DataFrame:
    """Sort by dataset, variant (in VARIANTS order), config, then `extra` columns."""
    rank = {v: i for i, v in enumerate(methods.variant_names())}
    return frame.assign(_r=frame["variant"].map(rank).fillna(len(rank))).sort_values(
        ["dataset", "_r", "config", *extra], kind="stable").drop(columns="_r").reset_index(drop=True)


def summary_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, label, class): mean, std (ddof=1) and n of the AUC over seeds."""
    labelled = labelled_rows(rows)
    keys = ["dataset", "label", "variant", "config", "normal_class"]
    out = labelled.groupby(keys, sort=False)["auc"].agg(["mean", "std", "count"]).reset_index()
    return _order(out.rename(columns={"count": "n"}), "normal_class")


def class_mean_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, label): the mean over classes of the per-class means, and the std
    (ddof=1) over seeds of each seed's class-mean when every seed covers every class."""
    labelled = labelled_rows(rows)
    records = []
    for (dataset, label), part in labelled.groupby(["dataset", "label"], sort=False):
        if "class_drawn" in part and part["class_drawn"].eq(True).all():  # one drawn class per repetition
            records.append({"dataset": dataset, "label": label, "variant": part["variant"].iloc[0],
                            "config": part["config"].iloc[0], "mean": part["auc"].mean(),
                            "std": part["auc"].std(), "n": len(part), "complete": True})
            continue
        classes = set(part["normal_class"])
        per_class = part.groupby("normal_class")["auc"].mean()
        complete = all(set(g["normal_class"]) == classes for _, g in part.groupby("seed"))
        per_seed = part.groupby("seed")["auc"].mean() if complete else pd.Series(dtype=float)
        records.append({"dataset": dataset, "label": label, "variant": part["variant"].iloc[0],
                        "config": part["config"].iloc[0], "mean": per_class.mean(),
                        "std": per_seed.std() if complete else np.nan,
                        "n": part["seed"].nunique(), "complete": complete})
    return _order(pd.DataFrame(records))


def paper_table() -> pd.DataFrame:
    """The paper's published AUCs: table, dataset, method, normal_class (str: 0-9 or mean), auc; other
    papers' (table 0) labelled "published: <method (citation)>"."""
    paper = published()
    labels = [f"paper T4: {m}" if t == 4 else f"published: {m}" if t == 0 else PAPER_LABELS.get(m, f"paper: {m}")
              for t, m in zip(paper["table"], paper["method"])]
    return paper.assign(label=labels)


def _cell(mean: float, std: float, n: int) -> str:
    return f"{mean:.3f} ({n})" if pd.isna(std) else f"{mean:.3f} ± {std:.3f} ({n})"


def _row_order(label: str) -> tuple:
    """Each variant of ours, then the paper's rows for it; each other method as ours beside the
    paper's; then the paper's other rows."""
    for i, v in enumerate(VARIANTS):
        if label == f"paper T4: {v}" or (v == "full" and label == PAPER_LABELS["paper (full)"]):
            return (0, i, 1)
        if label == v or label.startswith((f"{v} (", f"{v} [")):
            return (0, i, 0)
    others = [v for v in methods.variant_names() if v not in VARIANTS]
    for i, v in enumerate(others):
        spec = methods.spec_for(v)
        if label == _display(v) or label.startswith(f"{_display(v)} ("):
            return (1, i, 0)
        if spec.paper_label and label.lower() == spec.paper_label.lower():
            return (1, i, 1)
    return (2, 0, 0)


@dataclass(frozen=True)
class Cell:
    """One cell of a per-class table: ours (mean, std over seeds (NaN when n = 1), n seeds) or the
    paper's published AUC (n None, std NaN)."""

    mean: float
    std: float = float("nan")
    n: int | None = None

    def text(self) -> str:
        """As the Markdown and CSV tables print it: "0.715 ± 0.035 (5)"; the paper's "0.715"."""
        return f"{self.mean:.3f}" if self.n is None else _cell(self.mean, self.std, self.n)


def wide_cells(rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Dataset -> table of `Cell`s (None where a label has no number for a column): our labels
    then the paper's (each of ours above the paper's row for it), columns the classes + mean."""
    summary, means, paper = summary_table(rows), class_mean_table(rows), paper_table()
    tables = {}
    for dataset, part in summary.groupby("dataset", sort=False):
        classes = sorted(part["normal_class"].unique())
        cols = [str(c) for c in classes] + ["mean"]
        labels = list(dict.fromkeys(part["label"]))
        ours = {lab: {str(r.normal_class): Cell(r.mean, r.std, int(r.n)) for r in part[part["label"] == lab].itertuples()}
                for lab in labels}
        for r in means[means["dataset"] == dataset].itertuples():
            ours[r.label]["mean"] = Cell(r.mean, r.std, int(r.n))
        theirs = paper[paper["dataset"] == dataset]
        for lab, p in theirs.groupby("label", sort=False):
            ours[lab] = {str(c): Cell(float(a)) for c, a in zip(p["normal_class"], p["auc"])}
        table = pd.DataFrame.from_dict(ours, orient="index").reindex(columns=cols)
        table = table.astype(object).where(table.notna(), None)
        table = table.loc[sorted(table.index, key=_row_order)]
        table.index.name = "method"
        tables[dataset] = table
    return tables


def wide_tables(rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Dataset -> table of formatted cells ("mean ± std (n)"; "" where none): `wide_cells` as text."""
    return {dataset: cells.apply(lambda col: col.map(lambda c: "" if c is None else c.text()))
            for dataset, cells in wide_cells(rows).items()}


def paired_differences(rows: pd.DataFrame) -> pd.DataFrame:
    """Every pair of variants (later − earlier in base, entropy, cam, full) within each
    dataset and config: mean and std (ddof=1) of the differences over shared (class, seed)
    pairs, n_pairs, and the Wilcoxon signed-rank p-value (NaN, with a note, if undefined)."""
    labelled = labelled_rows(rows)
    records = []
    for (dataset, config), part in labelled.groupby(["dataset", "config"], sort=False):
        present = [v for v in VARIANTS if v in set(part["variant"])]
        aucs = part.pivot_table(index=["normal_class", "seed"], columns="variant", values="auc",
                                aggfunc="mean").reindex(columns=present)
        for b, a in itertools.combinations(present, 2):
            both = aucs[[a, b]].dropna()
            diff = (both[a] - both[b]).to_numpy()
            p, note = wilcoxon_p(both[a].to_numpy(), both[b].to_numpy())
            records.append({"dataset": dataset, "config": config, "a": a, "b": b, "comparison": f"{a} − {b}",
                            "mean_diff": diff.mean() if len(diff) else np.nan,
                            "std_diff": diff.std(ddof=1) if len(diff) > 1 else np.nan,
                            "n_pairs": len(diff), "wilcoxon_p": p, "note": note})
    columns = ["dataset", "config", "a", "b", "comparison", "mean_diff", "std_diff", "n_pairs", "wilcoxon_p", "note"]
    return pd.DataFrame(records, columns=columns)


def paper_marks(labelled: pd.DataFrame) -> pd.DataFrame:
    """The paper's per-class AUC for each of our labels whose method has a per-class paper row
    (MethodSpec.paper_label; for the paper's method, its `full` row): dataset, label, normal_class, auc."""
    paper = paper_table()
    paper = paper[paper["normal_class"] != "mean"]
    out = []
    for (dataset, label, variant), _ in labelled.groupby(["dataset", "label", "variant"], sort=False):
        want = methods.spec_for(variant).paper_label.lower() if variant not in VARIANTS or variant == "full" else ""
        hit = paper[(paper["dataset"] == dataset) & (paper["label"].str.lower() == want)] if want else paper[:0]
        out.append(pd.DataFrame({"dataset": dataset, "label": label,
                                 "normal_class": hit["normal_class"].astype(int).to_numpy(),
                                 "auc": hit["auc"].to_numpy()}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=["dataset", "label", "normal_class", "auc"])
