"""`novelty report`: read a results folder, build the tables (`novelty.report.tables`, the
ablation's effects in `novelty.report.effects`), render them (`novelty.report.render`) and write them
(Markdown, CSV, LaTeX, PNG) under `<results>/tables` or any pyarrow.fs URI. Imports no torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs

from .effects import BOOT, effects_by_seeds, effects_table
from .. import methods
from .render import (ablation_display, class_table_latex, effects_by_seeds_display, effects_display, to_latex,
                     to_markdown)
from ..store.results import ResultsError, open_store, read_rows, read_scores
from .tables import (_cell, class_mean_table, label_rows, paired_differences, paper_marks, paper_table,
                     summary_table, wide_cells, wide_tables)

NOTES = (
    "Cells: mean ± std (n) of the AUC over seeds; std with ddof=1 (blank when n = 1). "
    "Mean column: mean over classes of the per-class means; its ± is the std (ddof=1) over seeds "
    "of each seed's class-mean, shown only when every seed covers every class; its n is the number of seeds. "
    "Where the seed drew the normal class (COIL-100), the mean column is mean ± std over the repetitions. "
    "Rows labelled 'paper' are the published AUCs of Tian et al. (MMAsia '20), tables 1-4; "
    "their mean is the paper's, over all of its classes, whichever classes were run here. "
    "Rows labelled 'published' are other papers' one-class AUCs on the same protocol, from scratch "
    "(the label cites them; novelty/report/paper_tables.csv, table 0)."
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
    "difference of the paper's table 4 means (CIFAR-10 only). seeds for the claim: the seeds per class at which "
    "min detectable over these classes would reach the paper's claimed size, from the between-class and "
    "within-class (across seeds) variance of the differences; ∞ when the classes differ so much that only "
    "more classes would do. Per class: effects_per_class.csv and the forest plot."
)
BY_SEEDS_NOTES = (
    "The effects table (same columns, same definitions) on the first 5, 10, … seeds run and on all of them: "
    "how the answer moved as seeds were added. Each line uses only the rows of its seeds."
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
    from ..store.results import read_trace
    from .selection import (RULE, loco_select, oracle_per_class, oracle_table, paper_views, rescore,
                            rescore_components)

    md = []
    labelled = rows
    per_class = oracle_per_class(labelled, read_trace(uri, set(rows["key"])))
    oracle = oracle_table(per_class)
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
        md.extend(_views_section(*paper_views(per_class, paper_marks(labelled)), writer))
    pool = labelled
    if score_rules:
        # the methods whose score the score rule drives (the paper's: eq. 7's mix)
        ruled = {v for v in rows["variant"].unique() if {"score_lambda", "score_norm"} <= set(methods.spec_for(v).reads)}
        mixed = rows[rows["variant"].isin(ruled)]
        extra = [rescore(mixed, read_scores(uri, set(mixed["key"])))]
        # the methods whose score names one stored component (MethodSpec.score_param): each component
        params = {s.score_param: s for s in methods.specs() if s.score_param}
        for param, spec in params.items():
            mine = rows[rows["variant"].isin(spec.variants)]
            if not mine.empty:
                extra.append(rescore_components(mine, read_scores(uri, set(mine["key"])), param))
        extra = [e for e in extra if not e.empty]
        if extra:
            pool = label_rows(pd.concat([rows.assign(rescored=False), *extra], ignore_index=True)
                              .drop_duplicates(subset=["key", "score_lambda", "score_norm", *params]))
    choices, summary = loco_select(pool)
    if not choices.empty:
        writer.put("loco_choices.csv", choices.to_csv(index=False))
        writer.put("loco.csv", summary.to_csv(index=False))
        cells = summary.assign(cell=[_cell(m, sd, n) for m, sd, n in zip(summary["mean"], summary["std"],
                                                                          summary["n_seeds"])])
        md.append("## Leave-one-class-out selection\n\n" + RULE +
                  (" Score rules (mix lambda x component scale; a method's score component) re-scored from "
                   "each trial's stored components are candidates too." if score_rules else "") + "\n\n" +
                  to_markdown(cells[["dataset", "variant", "cell", "n_configs", "classes"]]
                              .set_index(["dataset", "variant"])) +
                  "\nChoices per class:\n\n" + to_markdown(_fmt_frame(choices, ["dataset", "variant", "normal_class"])))
    return md


def _views_section(both: pd.DataFrame, dist: pd.DataFrame, writer: "_Writer") -> list[str]:
    """Each traced class beside the paper's number for it (`both`), and each view's mean,
    distance to and correlation with the paper (`dist`), from `selection.paper_views`."""
    if both.empty:
        return []
    writer.put("views.csv", both.to_csv(index=False))
    writer.put("views_distance.csv", dist.to_csv(index=False))
    shown = both[["dataset", "label", "normal_class", "paper", "auc", "oracle_best"]].rename(
        columns={"auc": "honest", "oracle_best": "ORACLE best epoch"})
    for name, col in (("stored order", "oracle_refcode"), ("normal-first", "oracle_refcode_nf")):
        if f"{col}_best" in both:
            shown[f"ORACLE reference code, {name}: best (last)"] = [
                "" if pd.isna(b) else f"{b:.3f} ({last:.3f})"
                for b, last in zip(both[f"{col}_best"], both[f"{col}_last"])]
    md = ("## Where the paper's numbers sit among the views\n\n" +
          to_markdown(_fmt_frame(shown, ["dataset", "label", "normal_class"])) +
          "\nEach view against the paper over the traced classes that have a paper number:\n\n" +
          to_markdown(_fmt_frame(dist, ["dataset", "label", "view"])) +
          "\npaper: the published per-class AUC; honest: the row's AUC; the ORACLE views as in the table "
          "above, per class (means over seeds), the reference code's last epoch in brackets. mean, paper_mean: "
          "means over those classes; mean_abs_diff: mean over them of |paper − view|; r: Pearson correlation "
          "between paper and view across them. A diagnostic: it looks at test labels and chooses nothing.\n")
    writer.put("views.md", md)
    return [md]


def cpu_kinds_note(rows: pd.DataFrame) -> str:
    """One line when a folder's rows come from more than one device (a GPU's rows among CPU rows, two
    kinds of GPU), kind of CPU or thread count (or some rows do not say): a rerun reproduces a row
    bit for bit only on the kind of device that made it."""
    if "cpu_model" not in rows:
        return ""
    threads = rows["threads"].map(lambda t: "" if pd.isna(t) else f", {int(t)} thread(s)")
    kind = (rows["cpu_model"].astype(str) + " (" + rows["cpu_capability"].astype(str) + threads + ")")
    kind = kind.where(rows["cpu_model"].notna(), "not recorded")
    if "device_name" in rows:  # rows trained on a GPU are that GPU's, whatever CPU drove them
        gpu = rows["device_name"].fillna("cpu").astype(str)
        kind = kind.where(gpu == "cpu", "GPU " + gpu)
    counts = kind.value_counts()
    if len(counts) < 2:
        return ""
    return ("Rows from more than one device, kind of CPU or thread count (a rerun reproduces a row bit for bit "
            "only on its own kind): " + "; ".join(f"{k}: {n} row(s)" for k, n in counts.items()) + ".")


def write_report(uri: str, out_dir: str | None = None, plots: bool = True, score_rules: bool = False) -> Report:
    """Read every row under `uri`, print the tables and write them under `out_dir`
    (default `<uri>/tables`; a local path or any pyarrow.fs URI) as Markdown, CSV and
    LaTeX, the ablation as its own table, honest vs oracle from the traces, the
    leave-one-class-out choices (over re-mixed score rules too if `score_rules`), and (if
    `plots`) PNG bar and ROC plots."""
    rows = read_rows(uri)
    if rows.empty or "auc" not in rows:
        raise ResultsError(f"no trial rows under {uri.rstrip('/')}/rows: nothing to report")
    rows = label_rows(rows)  # once: every table below reads these labels
    out = out_dir or f"{uri.rstrip('/')}/tables"
    writer = _Writer(out)
    summary, means, cells = summary_table(rows), class_mean_table(rows), wide_cells(rows)
    tables = wide_tables(rows)
    paired = paired_differences(rows)
    report_md = [f"# Results: {uri}\n", f"{len(rows)} trials. {NOTES}\n"]
    machines = cpu_kinds_note(rows)
    if machines:
        report_md.append(machines + "\n")
        print(machines)
    for dataset, table in tables.items():
        md = to_markdown(table)
        writer.put(f"{dataset}.md", f"# {dataset}: AUC per normal class\n\n{md}\n{NOTES}\n")
        writer.put(f"{dataset}.csv", table.to_csv())
        writer.put(f"{dataset}.tex", class_table_latex(cells[dataset], f"{dataset}: AUC per normal class, mean ± std over seeds"))
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
    effects, per_class = effects_table(rows)
    if not effects.empty:
        md = to_markdown(effects_display(effects))
        writer.put("effects.md", f"# Ablation effects\n\n{md}\n{EFFECTS_NOTES}\n")
        writer.put("effects.csv", effects.to_csv(index=False))
        writer.put("effects_per_class.csv", per_class.to_csv(index=False))
        report_md.append(f"## Ablation effects\n\n{md}\n{EFFECTS_NOTES}\n")
        print(f"\nAblation effects (a − b, 95% bootstrap CI)\n{md}")
        moves = effects_by_seeds(rows)
        if not moves.empty:
            md = to_markdown(effects_by_seeds_display(moves))
            writer.put("effects_by_seeds.md", f"# Ablation effects as seeds were added\n\n{md}\n{BY_SEEDS_NOTES}\n")
            writer.put("effects_by_seeds.csv", moves.to_csv(index=False))
            report_md.append(f"## Ablation effects as seeds were added\n\n{md}\n{BY_SEEDS_NOTES}\n")
    for section in quality_sections(uri, rows, writer, score_rules):
        report_md.append(section)
        print("\n" + section)
    if plots:
        from .plots import class_bars_png, forest_png, roc_png

        labelled = rows
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

