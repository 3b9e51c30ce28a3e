"""Aggregate a results folder into mean ± std tables, paired ablation tests and plots.

Conventions (repeated in the notes under every written table):
- A cell is "mean ± std (n)" over the seeds of one (dataset, variant, config, class);
  std uses ddof=1 (pandas' default), so it is blank when n = 1.
- Rows are variants; when a hyper-parameter other than seed / normal_class / variant
  varies within a dataset, the row label names it ("full (epochs=5)"), so different
  configurations are never averaged together.
- Mean column: the mean over classes of the per-class means. Its std is the std
  (ddof=1) over seeds of each seed's mean over classes, given only when every seed
  covers every class; its n is the number of seeds. When the seed drew the class (COIL-100:
  rows with class_drawn), the mean column is the mean ± std over those repetitions, as the
  paper's table 1 reports it.
- Paired differences: variant a − variant b on the (class, seed) pairs both have,
  with the Wilcoxon signed-rank test (scipy defaults: zero differences dropped).
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs

from .config import (BASELINE_IGNORED_FIELDS, BASELINES, METHODS, PIXEL_BASELINES, VARIANT_ONLY_FIELDS,
                     VARIANTS, TrialConfig)
from .effects import BOOT, effects_table, wilcoxon_p
from .results import ResultsError, open_store, read_rows, read_scores

FIXED_FIELDS = ("dataset", "normal_class", "seed", "variant")
HYPER_FIELDS = tuple(f.name for f in dataclasses.fields(TrialConfig) if f.name not in FIXED_FIELDS)
PAPER_LABELS = {"paper (full)": "paper: full (Tian et al.)"}
BASELINE_LABELS = {b: f"ours: {b.upper()}" for b in BASELINES}  # beside the paper's "paper: OCSVM", ...
NOTES = (
    "Cells: mean ± std (n) of the AUC over seeds; std with ddof=1 (blank when n = 1). "
    "Mean column: mean over classes of the per-class means; its ± is the std (ddof=1) over seeds "
    "of each seed's class-mean, shown only when every seed covers every class; its n is the number of seeds. "
    "Where the seed drew the normal class (COIL-100), the mean column is mean ± std over the repetitions. "
    "Rows labelled 'paper' are the published AUCs of Tian et al. (MMAsia '20), tables 1-4; "
    "their mean is the paper's, over all of its classes, whichever classes were run here."
)
ABLATION_NOTES = (
    "a − b over the (class, seed) pairs both variants have, within one dataset and configuration; "
    "std with ddof=1; p: two-sided Wilcoxon signed-rank test (scipy defaults, zero differences dropped); "
    "p is blank when there are fewer than 2 pairs or every difference is zero."
)

EFFECTS_NOTES = (
    "effect: a − b, the mean over classes of each class's mean difference over its seeds, on the (class, seed) "
    f"pairs both variants ran. 95% CI: percentile bootstrap ({BOOT} resamples, fixed seed) that resamples classes "
    "and, within each drawn class, its seeds, both with replacement. Wilcoxon p: two-sided signed-rank test over "
    "the (class, seed) pairs. min detectable: the smallest true difference a two-sided test at α 0.05 detects "
    "with 80% power, (z_0.975 + z_0.80) × std of the per-class differences / √classes. paper claims: the "
    "difference of the paper's table 4 means (CIFAR-10 only). Per class: effects_per_class.csv and the forest plot."
)


@dataclass
class Report:
    """What `write_report` computed and where it wrote it."""

    summary: pd.DataFrame
    """Long form: dataset, label, variant, config, normal_class, mean, std, n."""
    tables: dict[str, pd.DataFrame]
    """Dataset -> wide table of formatted cells (rows: labels, columns: classes + mean)."""
    paired: pd.DataFrame
    """Paired differences between variants (see `paired_differences`)."""
    files: list[str] = field(default_factory=list)
    """Every file written."""


def _fmt_value(value: object) -> str:
    return f"{value:g}" if isinstance(value, (float, np.floating)) else str(value)


def label_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Add `config` (the hyper-parameters that vary within the row's dataset, "" if none)
    and `label` (variant plus that config) to a copy of `rows`. A knob of the paper's variants
    alone (VARIANT_ONLY_FIELDS, e.g. stop) varies only if it varies among them; no knob a
    baseline ignores (BASELINE_IGNORED_FIELDS, e.g. score_lambda) is in a baseline's label."""
    out = rows.copy()
    out["normal_class"] = out["normal_class"].astype(int)
    out["config"] = ""
    for _, idx in out.groupby("dataset").groups.items():
        part = out.loc[idx]
        variants = part[~part["variant"].isin(BASELINES)]
        varying = [c for c in HYPER_FIELDS if c in part
                   and (variants if c in VARIANT_ONLY_FIELDS else part)[c].nunique(dropna=False) > 1]
        def config(r: pd.Series) -> str:
            shown = [c for c in varying if not (r["variant"] in BASELINES and c in BASELINE_IGNORED_FIELDS)]
            return ", ".join(f"{c}={_fmt_value(r[c])}" for c in shown)
        out.loc[idx, "config"] = [config(r) for _, r in part.iterrows()]
    out.loc[out["variant"].isin(PIXEL_BASELINES), "config"] = ""  # no training knob applies to them
    names = [BASELINE_LABELS.get(v, v) for v in out["variant"]]
    out["label"] = [f"{v} ({c})" if c else v for v, c in zip(names, out["config"])]
    return out


def _order(frame: pd.DataFrame, *extra: str) -> pd.DataFrame:
    """Sort by dataset, variant (in VARIANTS order), config, then `extra` columns."""
    rank = {v: i for i, v in enumerate(METHODS)}
    return frame.assign(_r=frame["variant"].map(rank).fillna(len(rank))).sort_values(
        ["dataset", "_r", "config", *extra], kind="stable").drop(columns="_r").reset_index(drop=True)


def summary_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, label, class): mean, std (ddof=1) and n of the AUC over seeds."""
    labelled = label_rows(rows)
    keys = ["dataset", "label", "variant", "config", "normal_class"]
    out = labelled.groupby(keys, sort=False)["auc"].agg(["mean", "std", "count"]).reset_index()
    return _order(out.rename(columns={"count": "n"}), "normal_class")


def class_mean_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, label): the mean over classes of the per-class means, and the std
    (ddof=1) over seeds of each seed's class-mean when every seed covers every class."""
    labelled = label_rows(rows)
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
    """The paper's published AUCs: table, dataset, method, normal_class (str: 0-9 or mean), auc."""
    with resources.files("novelty").joinpath("paper_tables.csv").open("r") as fh:
        paper = pd.read_csv(fh, dtype={"normal_class": str})
    labels = [f"paper T4: {m}" if t == 4 else PAPER_LABELS.get(m, f"paper: {m}")
              for t, m in zip(paper["table"], paper["method"])]
    return paper.assign(label=labels)


def _cell(mean: float, std: float, n: int) -> str:
    return f"{mean:.3f} ({n})" if pd.isna(std) else f"{mean:.3f} ± {std:.3f} ({n})"


def _row_order(label: str) -> tuple:
    """Each variant of ours, then the paper's rows for it; each baseline as ours beside the
    paper's; then the paper's other rows."""
    for i, v in enumerate(VARIANTS):
        if label == f"paper T4: {v}" or (v == "full" and label == PAPER_LABELS["paper (full)"]):
            return (0, i, 1)
        if label == v or label.startswith((f"{v} (", f"{v} [")):
            return (0, i, 0)
    for i, b in enumerate(BASELINES):
        if label.startswith(BASELINE_LABELS[b]):
            return (1, i, 0)
        if label.lower() == f"paper: {b}":
            return (1, i, 1)
    return (2, 0, 0)


def wide_tables(rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Dataset -> table of formatted cells: our labels then the paper's, classes + mean."""
    summary, means, paper = summary_table(rows), class_mean_table(rows), paper_table()
    tables = {}
    for dataset, part in summary.groupby("dataset", sort=False):
        classes = sorted(part["normal_class"].unique())
        cols = [str(c) for c in classes] + ["mean"]
        labels = list(dict.fromkeys(part["label"]))
        ours = {lab: {str(r.normal_class): _cell(r.mean, r.std, r.n) for r in part[part["label"] == lab].itertuples()}
                for lab in labels}
        for r in means[means["dataset"] == dataset].itertuples():
            ours[r.label]["mean"] = _cell(r.mean, r.std, r.n)
        theirs = paper[paper["dataset"] == dataset]
        for lab, p in theirs.groupby("label", sort=False):
            ours[lab] = {str(c): f"{a:.3f}" for c, a in zip(p["normal_class"], p["auc"])}
        table = pd.DataFrame.from_dict(ours, orient="index").reindex(columns=cols).fillna("")
        table = table.loc[sorted(table.index, key=_row_order)]
        table.index.name = "method"
        tables[dataset] = table
    return tables


def paired_differences(rows: pd.DataFrame) -> pd.DataFrame:
    """Every pair of variants (later − earlier in base, entropy, cam, full) within each
    dataset and config: mean and std (ddof=1) of the differences over shared (class, seed)
    pairs, n_pairs, and the Wilcoxon signed-rank p-value (NaN, with a note, if undefined)."""
    labelled = label_rows(rows)
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


# ------------------------------------------------------------------ rendering


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown table, the index as the first column."""
    head = [" / ".join(n or "" for n in table.index.names)] + [str(c) for c in table.columns]
    lines = ["| " + " | ".join(_md_escape(h) for h in head) + " |", "|" + "---|" * len(head)]
    for idx, row in table.iterrows():
        idx = " / ".join(map(str, idx)) if isinstance(idx, tuple) else idx
        lines.append("| " + " | ".join(_md_escape(v) for v in [idx, *row.tolist()]) + " |")
    return "\n".join(lines) + "\n"


def _tex_escape(text: str) -> str:
    out = str(text).replace("\\", r"\textbackslash{}")
    for ch in "&%$#_{}":
        out = out.replace(ch, "\\" + ch)
    return out.replace("±", r"$\pm$").replace("−", "$-$")


def to_latex(table: pd.DataFrame, caption: str) -> str:
    """A LaTeX tabular (no packages needed), the index as the first column."""
    head = [table.index.name or ""] + [str(c) for c in table.columns]
    lines = [r"\begin{table}", r"\centering", r"\caption{" + _tex_escape(caption) + "}",
             r"\begin{tabular}{l" + "r" * len(table.columns) + "}", r"\hline",
             " & ".join(_tex_escape(h) for h in head) + r" \\", r"\hline"]
    for idx, row in table.iterrows():
        lines.append(" & ".join(_tex_escape(v) for v in [idx, *row.tolist()]) + r" \\")
    lines += [r"\hline", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def ablation_display(paired: pd.DataFrame) -> pd.DataFrame:
    """The paired differences formatted for Markdown / LaTeX."""
    def num(v: float, spec: str) -> str:
        return "" if pd.isna(v) else format(v, spec)

    shown = pd.DataFrame({
        "config": list(paired["config"]), "mean diff": [num(v, "+.4f") for v in paired["mean_diff"]],
        "std": [num(v, ".4f") for v in paired["std_diff"]], "n pairs": [str(n) for n in paired["n_pairs"]],
        "Wilcoxon p": [num(v, ".4g") for v in paired["wilcoxon_p"]], "note": list(paired["note"])},
        index=[f"{d}: {c}" for d, c in zip(paired["dataset"], paired["comparison"])])
    shown.index.name = "comparison"
    return shown if paired["config"].astype(bool).any() else shown.drop(columns="config")


def effects_display(effects: pd.DataFrame) -> pd.DataFrame:
    """The ablation effects formatted for Markdown."""
    def num(v: float, spec: str) -> str:
        return "" if pd.isna(v) else format(v, spec)

    shown = pd.DataFrame({
        "config": list(effects["config"]),
        "effect [95% CI]": [f"{e:+.4f} [{lo:+.4f}, {hi:+.4f}]" for e, lo, hi in
                            zip(effects["effect"], effects["ci_low"], effects["ci_high"])],
        "classes": [str(n) for n in effects["n_classes"]], "pairs": [str(n) for n in effects["n_pairs"]],
        "Wilcoxon p": [num(v, ".4g") for v in effects["wilcoxon_p"]],
        "min detectable": [num(v, ".4f") for v in effects["min_detectable"]],
        "paper claims": [num(v, "+.3f") for v in effects["paper_claim"]]},
        index=[f"{d}: {c}" for d, c in zip(effects["dataset"], effects["comparison"])])
    shown.index.name = "comparison"
    return shown if effects["config"].astype(bool).any() else shown.drop(columns="config")


def paper_marks(labelled: pd.DataFrame) -> pd.DataFrame:
    """The paper's per-class AUC for each of our labels that has one (full: table 2-3's method
    row; a baseline: its row): dataset, label (ours), normal_class, auc."""
    paper = paper_table()
    paper = paper[paper["normal_class"] != "mean"]
    names = {"full": PAPER_LABELS["paper (full)"], **{b: f"paper: {b}" for b in BASELINES}}
    out = []
    for (dataset, label, variant), _ in labelled.groupby(["dataset", "label", "variant"], sort=False):
        want = names.get(variant, "").lower()
        hit = paper[(paper["dataset"] == dataset) & (paper["label"].str.lower() == want)]
        out.append(pd.DataFrame({"dataset": dataset, "label": label,
                                 "normal_class": hit["normal_class"].astype(int).to_numpy(),
                                 "auc": hit["auc"].to_numpy()}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=["dataset", "label", "normal_class", "auc"])


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in ".-" else "_" for ch in text)


class _Writer:
    """Writes bytes under a local folder or a pyarrow.fs URI, remembering what it wrote."""

    def __init__(self, out: str) -> None:
        self.fs, self.base = open_store(out)
        self.out, self.files = out, []
        try:
            self.fs.create_dir(self.base, recursive=True)
        except (OSError, pa.ArrowException) as exc:
            raise ResultsError(f"cannot create the report folder {out}: {exc}") from exc

    def put(self, name: str, data: str | bytes) -> None:
        path = f"{self.base}/{name}"
        try:
            with self.fs.open_output_stream(path) as fh:
                fh.write(data.encode() if isinstance(data, str) else data)
        except (OSError, pa.ArrowException) as exc:
            raise ResultsError(f"cannot write {path}: {exc}") from exc
        self.files.append(path if isinstance(self.fs, pafs.LocalFileSystem) else f"{self.out.rstrip('/')}/{name}")


def _fmt_frame(frame: pd.DataFrame, index: list[str]) -> pd.DataFrame:
    shown = frame.copy()
    for c in shown.columns:
        if shown[c].dtype.kind == "f":
            shown[c] = [("" if pd.isna(v) else f"{v:.3f}") for v in shown[c]]
    return shown.set_index(index)


def quality_sections(uri: str, rows: pd.DataFrame, writer: "_Writer", score_rules: bool) -> list[str]:
    """Honest vs oracle (from the traces) and leave-one-class-out choices, as Markdown + CSV."""
    from .results import read_trace
    from .selection import RULE, loco_select, oracle_table, rescore

    md = []
    labelled = label_rows(rows)
    oracle = oracle_table(labelled, read_trace(uri, set(rows["key"])))
    if not oracle.empty:
        writer.put("oracle.csv", oracle.to_csv(index=False))
        md.append("## Honest vs oracle\n\n" + to_markdown(_fmt_frame(oracle, ["dataset", "label"])) +
                  "\nauc: the honest number (the model at the epoch the trial's stop rule chose without test images: "
                  "the last one for stop=last; whole test split, eval mode). "
                  "oracle_*: ORACLE views from the per-epoch traces, on a fixed seeded subset of the test split: "
                  "oracle_last (last epoch: compare with auc for the subset's noise where stop=last), oracle_best (best epoch on "
                  "the test labels), oracle_best_con/fea/lat (each score component's best epoch), "
                  "oracle_refcode_best (as the reference code scores: best test epoch, BatchNorm in train mode, "
                  "test batches of 64 in stored order), oracle_refcode_nf_best (the same with the normal test images first, "
                  "then the outliers, as the reference code's loader orders them). Means over classes of per-class means over seeds. "
                  "None of these chose anything.\n")
    pool = labelled
    if score_rules:
        scores = read_scores(uri, set(rows[~rows["variant"].isin(BASELINES)]["key"]))
        extra = rescore(rows[~rows["variant"].isin(BASELINES)], scores)
        if not extra.empty:
            pool = label_rows(pd.concat([rows.assign(rescored=False), extra], ignore_index=True)
                              .drop_duplicates(subset=["key", "score_lambda", "score_norm"]))
    choices, summary = loco_select(pool)
    if not choices.empty:
        writer.put("loco_choices.csv", choices.to_csv(index=False))
        writer.put("loco.csv", summary.to_csv(index=False))
        cells = summary.assign(cell=[_cell(m, sd, n) for m, sd, n in zip(summary["mean"], summary["std"],
                                                                          summary["n_seeds"])])
        md.append("## Leave-one-class-out selection\n\n" + RULE +
                  (" Score rules (mix lambda x component scale) re-mixed from each trial's stored components "
                   "are candidates too." if score_rules else "") + "\n\n" +
                  to_markdown(cells[["dataset", "variant", "cell", "n_configs", "classes"]]
                              .set_index(["dataset", "variant"])) +
                  "\nChoices per class:\n\n" + to_markdown(_fmt_frame(choices, ["dataset", "variant", "normal_class"])))
    return md


def write_report(uri: str, out_dir: str | None = None, plots: bool = True, score_rules: bool = False) -> Report:
    """Read every row under `uri`, print the tables and write them under `out_dir`
    (default `<uri>/tables`; a local path or any pyarrow.fs URI) as Markdown, CSV and
    LaTeX, the ablation as its own table, honest vs oracle from the traces, the
    leave-one-class-out choices (over re-mixed score rules too if `score_rules`), and (if
    `plots`) PNG bar and ROC plots."""
    rows = read_rows(uri)
    if rows.empty or "auc" not in rows:
        raise ResultsError(f"no trial rows under {uri.rstrip('/')}/rows: nothing to report")
    out = out_dir or f"{uri.rstrip('/')}/tables"
    writer = _Writer(out)
    summary, means, tables = summary_table(rows), class_mean_table(rows), wide_tables(rows)
    paired = paired_differences(rows)
    report_md = [f"# Results: {uri}\n", f"{len(rows)} trials. {NOTES}\n"]
    for dataset, table in tables.items():
        md = to_markdown(table)
        writer.put(f"{dataset}.md", f"# {dataset}: AUC per normal class\n\n{md}\n{NOTES}\n")
        writer.put(f"{dataset}.csv", table.to_csv())
        writer.put(f"{dataset}.tex", to_latex(table, f"{dataset}: AUC per normal class, mean ± std (n) over seeds"))
        report_md.append(f"## {dataset}\n\n{md}")
        print(f"\n{dataset}: AUC per normal class (mean ± std (n) over seeds)\n{md}")
    long = pd.concat([summary.assign(source="ours"),
                      means.drop(columns="complete").assign(normal_class="mean", source="ours"),
                      paper_table().rename(columns={"auc": "mean"}).assign(source="paper")], ignore_index=True)
    writer.put("summary.csv", long.to_csv(index=False))
    if not paired.empty:
        shown = ablation_display(paired)
        md = to_markdown(shown)
        writer.put("ablation.md", f"# Ablation: paired differences between variants\n\n{md}\n{ABLATION_NOTES}\n")
        writer.put("ablation.csv", paired.to_csv(index=False))
        writer.put("ablation.tex", to_latex(shown, "Paired AUC differences between variants (Wilcoxon signed-rank)"))
        report_md.append(f"## Ablation: paired differences\n\n{md}\n{ABLATION_NOTES}\n")
        print(f"\nAblation: paired differences (a − b)\n{md}")
    effects, per_class = effects_table(label_rows(rows))
    if not effects.empty:
        md = to_markdown(effects_display(effects))
        writer.put("effects.md", f"# Ablation effects\n\n{md}\n{EFFECTS_NOTES}\n")
        writer.put("effects.csv", effects.to_csv(index=False))
        writer.put("effects_per_class.csv", per_class.to_csv(index=False))
        report_md.append(f"## Ablation effects\n\n{md}\n{EFFECTS_NOTES}\n")
        print(f"\nAblation effects (a − b, 95% bootstrap CI)\n{md}")
    for section in quality_sections(uri, rows, writer, score_rules):
        report_md.append(section)
        print("\n" + section)
    if plots:
        from .plots import class_bars_png, forest_png, roc_png

        labelled = label_rows(rows)
        marks = paper_marks(labelled)
        for (dataset, config), eff in effects.groupby(["dataset", "config"], sort=False):
            name = f"{dataset}_forest{'_' + _slug(config) if config else ''}.png"
            title = f"{dataset}{' (' + config + ')' if config else ''}: paired AUC differences, 95% bootstrap CI"
            writer.put(name, forest_png(eff, per_class[(per_class["dataset"] == dataset) &
                                                       (per_class["config"] == config)], title))
            report_md.append(f"![{dataset} forest plot]({name})\n")
        for dataset in tables:
            writer.put(f"{dataset}_auc.png", class_bars_png(summary[summary["dataset"] == dataset], dataset,
                                                            marks[marks["dataset"] == dataset]))
            first = labelled[labelled["dataset"] == dataset]
            first = first[first["seed"] == first.groupby(["label", "normal_class"])["seed"].transform("min")]
            report_md.append(f"![{dataset} AUC]({dataset}_auc.png)\n")
            scores = read_scores(uri, set(first["key"]))
            if not scores.empty:
                writer.put(f"{dataset}_roc.png", roc_png(first, scores, dataset))
                report_md.append(f"![{dataset} ROC]({dataset}_roc.png)\n")
    writer.put("report.md", "\n".join(report_md))
    print(f"\nwrote {len(writer.files)} files to {out}")
    return Report(summary=summary, tables=tables, paired=paired, files=list(writer.files))

