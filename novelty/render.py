"""Rendering the report's DataFrames: GitHub Markdown and LaTeX tabulars.

Written here rather than with pandas' `DataFrame.to_markdown` / `Styler.to_latex`, for a
reason: `to_markdown` needs the `tabulate` package and pads every cell to its column's
width, and `Styler.to_latex` needs `jinja2` and writes a `\\toprule`-style table that needs
the booktabs package; either would rewrite every committed table's bytes (the report must
rebuild byte-identical tables from committed rows) for no gain in content. These two
renderers are ten lines each, escape `|` and LaTeX's specials, and need no package.
"""
from __future__ import annotations

import pandas as pd

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
