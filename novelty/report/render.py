"""Rendering the report's DataFrames: GitHub Markdown and LaTeX tabulars.

Written here rather than with pandas' `DataFrame.to_markdown` / `Styler.to_latex`, for a
reason: `to_markdown` needs the `tabulate` package and pads every cell to its column's
width, and `Styler.to_latex` needs `jinja2` and writes a `\\toprule`-style table that needs
the booktabs package (not in Debian's texlive-latex-base); either would rewrite every
committed table's bytes (the report must rebuild byte-identical tables from committed rows)
for no gain in content. These renderers escape `|` and LaTeX's specials and need no LaTeX
package: a table compiles in a plain article. The per-class tables are made to fit a
landscape page with 1 cm margins (checked with pdflatex by tests/test_latex.py): small type,
a compact "0.715±.035" cell, the number of seeds in the caption when it is the same for every
cell of ours (else per row), long row labels wrapped.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from .tables import Cell


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


def _compact(cell: "Cell | None", row_n: int | None) -> str:
    """One per-class cell in LaTeX: 0.715{\\scriptsize$\\pm$.035}, and its n as a superscript
    when it is not the row's `row_n` (None: n is in the caption)."""
    if cell is None:
        return ""
    text = f"{cell.mean:.3f}"
    if cell.n is None:  # the paper's number
        return text
    if not pd.isna(cell.std):
        text += r"{\scriptsize$\pm$" + f"{cell.std:.3f}".removeprefix("0") + "}"
    return text + (f"$^{{{cell.n}}}$" if row_n is not None and cell.n != row_n else "")


def _row_n(cells: list) -> int | None:
    """The n most cells of a row of ours have (ties: the larger); None for the paper's rows."""
    ns = [c.n for c in cells if c is not None and c.n is not None]
    return max(set(ns), key=lambda n: (ns.count(n), n)) if ns else None


COLUMNS_PER_TABULAR = 11
"""Value columns (10 classes + mean) side by side; a table with more classes is split into
tabulars stacked in one table, the row labels repeated."""
LABEL_WRAP = 28
"""Row labels longer than this many characters wrap in a column 16em wide (14em in a table
with superscript n's, set in \\footnotesize)."""


def class_table_latex(cells: pd.DataFrame, caption: str) -> str:
    """A per-class table (`novelty.report.tables.wide_cells`: rows labels, columns classes + mean, values
    Cell or None) as a LaTeX table that fits a landscape page with 1 cm margins, up to 10
    classes + the mean per tabular (tests/test_latex.py compiles the worst cases). The cell is
    the compact "0.715±.035"; n, the number of seeds, goes in the caption when every cell of
    ours has the same n, else in a column of its own (the row's usual n), a cell with another
    n carrying it as a superscript (such a table is set in \\footnotesize, others in
    \\small); labels longer than LABEL_WRAP characters wrap. No LaTeX package needed."""
    ns = {c.n for col in cells.columns for c in cells[col] if c is not None and c.n is not None}
    by_row = len(ns) > 1
    row_ns = {label: _row_n(row.tolist()) for label, row in cells.iterrows()} if by_row else {}
    marked = by_row and any(c is not None and c.n is not None and c.n != row_ns[label]
                            for label, row in cells.iterrows() for c in row.tolist())
    if by_row:
        caption += "; n: the number of seeds of a row of ours" + (", a superscript where a cell has another"
                                                                   if marked else "")
    elif ns:
        n = ns.pop()
        caption += f"; every cell of ours is over n = {n} seed{'s' if n != 1 else ''}"
    size, sep, width = (r"\footnotesize", "3pt", "14em") if marked else (r"\small", "4pt", "16em")
    wrap = max((len(str(lab)) for lab in cells.index), default=0) > LABEL_WRAP
    classes = [c for c in cells.columns if c != "mean"]
    chunks = [classes[i:i + COLUMNS_PER_TABULAR - 1] for i in range(0, len(classes), COLUMNS_PER_TABULAR - 1)] or [[]]
    chunks[-1] = chunks[-1] + [c for c in cells.columns if c == "mean"]
    lines = [r"\begin{table}", r"\centering", size, r"\setlength{\tabcolsep}{" + sep + "}",
             r"\caption{" + _tex_escape(caption) + "}"]
    for i, chunk in enumerate(chunks):
        head = [cells.index.name or ""] + (["n"] if by_row else []) + [str(c) for c in chunk]
        lines += ([r"\par\medskip"] if i else []) + [
            r"\begin{tabular}{" + (f"p{{{width}}}" if wrap else "l") + "r" * (len(head) - 1) + "}", r"\hline",
            " & ".join(_tex_escape(h) for h in head) + r" \tabularnewline", r"\hline"]
        for label, row in cells.iterrows():
            row_n = row_ns.get(label)
            name = (r"\raggedright " if wrap else "") + _tex_escape(label)
            n_col = [str(row_n) if row_n is not None else ""] if by_row else []
            lines.append(" & ".join([name, *n_col, *(_compact(row[c], row_n) for c in chunk)]) + r" \tabularnewline")
        lines += [r"\hline", r"\end{tabular}"]
    lines.append(r"\end{table}")
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


def _seeds(n: float) -> str:
    """Seeds per class: blank without a claim, '∞ (more classes)' when seeds alone cannot do it."""
    if pd.isna(n):
        return ""
    return "∞ (more classes)" if n == float("inf") else str(int(n))


def effects_by_seeds_display(moves: pd.DataFrame) -> pd.DataFrame:
    """`effects.effects_by_seeds` formatted for Markdown: one line per comparison and seed count."""
    shown = effects_display(moves).drop(columns=["paper claims"])
    shown.insert(0, "seeds", [str(n) for n in moves["seeds"]])
    return shown


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
        "paper claims": [num(v, "+.3f") for v in effects["paper_claim"]],
        "seeds for the claim": [_seeds(v) for v in effects["seeds_for_claim"]]},
        index=[f"{d}: {c}" for d, c in zip(effects["dataset"], effects["comparison"])])
    shown.index.name = "comparison"
    return shown if effects["config"].astype(bool).any() else shown.drop(columns="config")
