"""Honest choices and the oracle views beside them, for `novelty report`.

- `loco_select`: leave-one-class-out. Among the configurations of one (dataset, variant),
  class c gets the configuration with the best mean AUC over the *other* classes; the
  class being scored never informs its own choice, and it chooses only among the
  configurations run on the most (class, seed) cells of the other classes: a configuration
  screened on one seed does not compete, by its luckier mean, with those run on two. This is
  the only way test labels inform a choice in this project.
- `rescore`: the score rule needs no retraining. Each trial stores its per-image
  components (c_con, c_fea), and the validation statistics of each (val_con_mean, ...),
  so the AUC a trial would have had with another mix lambda or component scale is
  computed exactly from its files. Those rows are marked `rescored` and exist only inside
  the report (never written as trial rows).
- `oracle_table`: from the per-epoch traces (test labels, a diagnostic): the honest AUC
  (the model at the epoch the trial's stop rule chose, as the row holds it) beside the best epoch on the test
  subset, and beside "as the reference code scores" (the best epoch, BatchNorm in train
  mode over the test split in stored order, and with the normal images first); per class
  (`oracle_per_class`), and beside the paper's per-class numbers with the mean distance to
  each view (`paper_views`). Nothing is selected on these.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import BEYOND_PAPER_NORMS, SCORE_NORMS
from ..methods.scoring import auc, mix

SCORE_LAMBDAS = (0.0, 0.5, 0.9, 1.0)
RULE = ("leave-one-class-out: for each class c, among the configurations of one (dataset, variant), "
        "the one with the best mean AUC over the other classes (each class's AUC its mean over seeds); "
        "the cell is class c's AUC under it (mean ± std over seeds). Class c's own AUCs never inform its choice.")


def rescore(rows: pd.DataFrame, scores: pd.DataFrame, lambdas=SCORE_LAMBDAS, norms=SCORE_NORMS) -> pd.DataFrame:
    """One row per (trial with components, lambda, norm): the trial's row with that score rule
    and the AUC its stored components give under it (min-max does not change an AUC)."""
    if scores.empty or "c_con" not in scores:
        return rows.iloc[0:0].assign(rescored=pd.Series(dtype=bool))
    out = []
    by_key = {k: g for k, g in scores.dropna(subset=["c_con", "c_fea"]).groupby("key")}
    for _, row in rows.iterrows():
        part = by_key.get(row["key"])
        if part is None or "val_con_std" not in row or pd.isna(row.get("val_con_std")):
            continue
        labels = part["label"].to_numpy()
        comps = {c: part[f"c_{c}"].to_numpy(float) for c in ("con", "fea", "ink") if f"c_{c}" in part}
        stats = {k: row.get(f"val_{k}") for k in ("con_mean", "con_std", "fea_mean", "fea_std")}
        for norm in norms:
            if norm == "ink" and ("ink" not in comps or np.isnan(comps["ink"]).any()):
                continue
            for lam in lambdas:
                out.append({**row.to_dict(), "score_lambda": float(lam), "score_norm": norm, "rescored": True,
                            "auc": auc(labels, mix(comps, float(lam), norm, stats))})
    return pd.DataFrame(out)


def rescore_components(rows: pd.DataFrame, scores: pd.DataFrame, param: str) -> pd.DataFrame:
    """One row per (trial, stored component): the trial's row with its score `param` (e.g.
    transforms' tf_score) set to that component and the AUC the component gives, from the
    stored per-image components (nothing retrained). Marked `rescored`, as `rescore`'s."""
    out = []
    by_key = {k: g for k, g in scores.groupby("key")}
    for _, row in rows.iterrows():
        part = by_key.get(row["key"])
        if part is None:
            continue
        for column in (c for c in part if c.startswith("c_") and part[c].notna().all()):
            out.append({**row.to_dict(), param: column[2:], "rescored": True,
                        "auc": auc(part["label"].to_numpy(), part[column].to_numpy(float))})
    return pd.DataFrame(out)


def loco_select(labelled: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Leave-one-class-out over the `config`s of each (dataset, variant) that has two or more.

    `labelled`: rows with dataset, variant, config, normal_class, seed, auc. Returns
    (choices: one row per (dataset, variant, class) with the chosen config, the mean over
    the other classes it won with, and the class's mean/std/n under it;
    summary: per (dataset, variant) the mean over classes of the chosen cells, and the
    std over seeds of each seed's mean over the chosen cells when every seed has every class).

    For class c, only configurations with the most (class, seed) cells among the other
    classes compete (a screen run on seed 0 alone does not beat the configurations confirmed
    on seeds 0 and 1 by the luck of one seed; the confirmed ones are compared on equal data).

    Score rules beyond the paper (score_norm in BEYOND_PAPER_NORMS) are chosen among
    themselves, in their own rows (variant "full [beyond paper]"), never mixed into the paper's."""
    choices, summary = [], []
    labelled = labelled.copy()
    if "score_norm" in labelled:
        beyond = labelled["score_norm"].isin(BEYOND_PAPER_NORMS)
        labelled.loc[beyond, "variant"] = labelled.loc[beyond, "variant"] + " [beyond paper]"
    for (dataset, variant), part in labelled.groupby(["dataset", "variant"], sort=False):
        cell = part.groupby(["config", "normal_class"])["auc"].mean().unstack("normal_class")  # config x class
        if len(cell) < 2:
            continue
        runs = part.groupby(["config", "normal_class"])["seed"].nunique().unstack("normal_class")  # seeds run
        classes = list(cell.columns)
        picked = []
        for c in classes:
            others = [k for k in classes if k != c]
            usable = cell[cell[others].notna().all(axis=1) & cell[c].notna()]
            if usable.empty or not others:
                continue
            n_cells = runs.loc[usable.index, others].sum(axis=1)  # (class, seed) cells on the others
            usable = usable[n_cells == n_cells.max()]
            merit = usable[others].mean(axis=1).sort_index()  # sorted: ties go to the first config by name
            best = merit.idxmax()
            aucs = part[(part["config"] == best) & (part["normal_class"] == c)]["auc"]
            choices.append({"dataset": dataset, "variant": variant, "normal_class": c, "chosen": best,
                            "others_mean": float(merit[best]), "mean": aucs.mean(), "std": aucs.std(),
                            "n": len(aucs)})
            picked.append(part[(part["config"] == best) & (part["normal_class"] == c)])
        if not picked:
            continue
        sel = pd.concat(picked)
        per_class = sel.groupby("normal_class")["auc"].mean()
        complete = all(set(g["normal_class"]) == set(per_class.index) for _, g in sel.groupby("seed"))
        per_seed = sel.groupby("seed")["auc"].mean()
        summary.append({"dataset": dataset, "variant": variant, "mean": per_class.mean(),
                        "std": per_seed.std() if complete and len(per_seed) > 1 else np.nan,
                        "n_seeds": sel["seed"].nunique(), "n_configs": len(cell),
                        "classes": len(per_class)})
    return pd.DataFrame(choices), pd.DataFrame(summary)


VIEW_COLUMNS = ("oracle_last", "oracle_best", "oracle_best_epoch", "oracle_best_con", "oracle_best_fea",
                "oracle_best_lat", "oracle_refcode_best", "oracle_refcode_last", "oracle_refcode_nf_best",
                "oracle_refcode_nf_last")  # oracle_per_class's views, in display order


def oracle_per_class(labelled: pd.DataFrame, trace: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, label, normal_class), means over seeds: the honest AUC beside the ORACLE
    views from the traces (test subset): last epoch, best epoch (and its epoch), each score
    component's best epoch, the reference-code scoring's best and last epoch (stored order and
    normal-first). Empty where nothing was traced."""
    if trace.empty:
        return pd.DataFrame()
    mix = "oracle_auc_mix" if "oracle_auc_mix" in trace else None
    per_key = []
    for key, t in trace.groupby("key"):
        col = mix if mix and t[mix].notna().any() else "oracle_auc_score" if "oracle_auc_score" in t else None
        if col is None or t[col].isna().all():
            continue
        t = t.sort_values("epoch")
        rec = {"key": key, "oracle_last": t[col].iloc[-1], "oracle_best": t[col].max(),
               "oracle_best_epoch": int(t.loc[t[col].idxmax(), "epoch"])}
        for comp in ("con", "fea", "lat"):
            if f"oracle_auc_{comp}" in t and t[f"oracle_auc_{comp}"].notna().any():
                rec[f"oracle_best_{comp}"] = t[f"oracle_auc_{comp}"].max()
        for view, name in (("oracle_refcode_auc_mix", "oracle_refcode"),
                           ("oracle_refcode_nf_auc_mix", "oracle_refcode_nf")):
            if view in t and t[view].notna().any():
                rec[f"{name}_best"], rec[f"{name}_last"] = t[view].max(), t[view].iloc[-1]
        per_key.append(rec)
    if not per_key:
        return pd.DataFrame()
    merged = labelled.merge(pd.DataFrame(per_key), on="key")
    cols = ["auc"] + [c for c in VIEW_COLUMNS if c in merged]
    return merged.groupby(["dataset", "label", "normal_class"])[cols].mean().reset_index()


def oracle_table(per_class: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, label): the means over classes of `oracle_per_class`'s table (the last-epoch
    reference-code views left out: `paper_views` shows them per class)."""
    if per_class.empty:
        return per_class
    per_class = per_class.drop(columns=[c for c in ("oracle_refcode_last", "oracle_refcode_nf_last")
                                        if c in per_class])
    grouped = per_class.drop(columns="normal_class").groupby(["dataset", "label"])
    out = grouped.mean()
    out["classes"] = grouped.size()
    return out.reset_index()


PAPER_VIEWS = (("honest", "auc"), ("ORACLE best epoch", "oracle_best"),
               ("ORACLE reference code, stored order, best epoch", "oracle_refcode_best"),
               ("ORACLE reference code, stored order, last epoch", "oracle_refcode_last"),
               ("ORACLE reference code, normal-first, best epoch", "oracle_refcode_nf_best"),
               ("ORACLE reference code, normal-first, last epoch", "oracle_refcode_nf_last"))


def paper_views(per_class: pd.DataFrame, marks: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each traced class beside the paper's published AUC for it (`marks`: dataset, label,
    normal_class, auc), and per (dataset, label, view of PAPER_VIEWS) over those classes: the
    view's mean, the paper's mean, the mean |paper − view| and the Pearson r between the two
    across classes (blank under 3 classes): which evaluation the published numbers sit nearest
    to, in level and in pattern. A diagnostic (the views look at test labels); it chooses nothing."""
    if per_class.empty or marks.empty:
        return pd.DataFrame(), pd.DataFrame()
    both = per_class.merge(marks.rename(columns={"auc": "paper"}), on=["dataset", "label", "normal_class"])
    dist = []
    for (dataset, label), g in both.groupby(["dataset", "label"], sort=False):
        for name, col in PAPER_VIEWS:
            if col not in g or g[col].isna().any():
                continue
            r = float(np.corrcoef(g["paper"], g[col])[0, 1]) if len(g) >= 3 else float("nan")
            dist.append({"dataset": dataset, "label": label, "view": name, "classes": len(g), "mean": g[col].mean(),
                         "paper_mean": g["paper"].mean(), "mean_abs_diff": (g["paper"] - g[col]).abs().mean(), "r": r})
    return both, pd.DataFrame(dist)
