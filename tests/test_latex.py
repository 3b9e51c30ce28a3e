"""The report's LaTeX tables compile and fit a page: each is `\\input` into a plain article
(landscape, 1 cm margins), as a user would paste it into a paper, and pdflatex must report
no overfull box and no float too large. Needs pdflatex (Debian: texlive-latex-base;
.ci/latex-up.sh installs it): skipped where it is missing, except under CI, where that fails."""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from novelty.config import TrialConfig
from novelty.report.render import class_table_latex
from novelty.report.write import write_report
from novelty.store.results import write_trial
from novelty.report.tables import wide_cells

REPO = Path(__file__).resolve().parents[1]
DOC = r"""\documentclass{article}
\usepackage[landscape,margin=1cm]{geometry}
\begin{document}
\input{table.tex}
\end{document}
"""


@pytest.fixture(scope="module")
def pdflatex() -> str:
    exe = shutil.which("pdflatex")
    if exe is None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail("pdflatex is missing under CI: .ci/latex-up.sh installs texlive-latex-base")
        pytest.skip("pdflatex is not installed (Debian: apt-get install texlive-latex-base)")
    return exe


def compile_log(pdflatex: str, tex: str, folder: Path) -> str:
    """Compile `tex` inside the page above; the log, after asserting the run succeeded."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "table.tex").write_text(tex)
    (folder / "doc.tex").write_text(DOC)
    done = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=folder,
                          capture_output=True, text=True, timeout=120)
    log = (folder / "doc.log").read_text(errors="replace")
    assert done.returncode == 0, log[-2000:]
    return log


def assert_fits(log: str) -> None:
    over = re.findall(r"Overfull \\[hv]box \(([\d.]+pt) too \w+\)", log)
    assert not over, f"overflows the page by {over}"
    assert "Float too large" not in log


def _rows(classes: int, seeds: int, labels: dict[str, dict], dataset: str = "mnist") -> pd.DataFrame:
    """Result rows (no files): every class x seed for each configuration in `labels`."""
    rng = np.random.default_rng(0)
    out = []
    for fields in labels.values():
        for c in range(classes):
            for s in range(seeds):
                cfg = TrialConfig(dataset=dataset, normal_class=c, seed=s, **fields)
                out.append({**dataclasses.asdict(cfg), "key": cfg.key("x"), "auc": float(rng.uniform(0.5, 1.0))})
    return pd.DataFrame(out)


# The widest labels a study makes: five knobs varying among the rows of the paper's method
STUDY = {f"c{i}": {"variant": v, "epochs": e, "nz": nz, "noise_std": sd, "w_con": w, "stop": st}
         for i, (v, e, nz, sd, w, st) in enumerate([("full", 5, 8, 0.05, 50.0, "val_fea"), ("full", 10, 100, 0.2, 10.0, "last"),
                                                     ("base", 5, 32, 0.1, 100.0, "last"), ("full", 15, 8, 0.1, 50.0, "last")])}


def test_uniform_n_goes_to_the_caption_and_the_table_fits(pdflatex, tmp_path):
    rows = _rows(10, 20, STUDY)  # 20 seeds everywhere: two-digit n, a std in every cell
    tex = class_table_latex(wide_cells(rows)["mnist"], "mnist: AUC per normal class")
    assert "n = 20 seeds" in tex and "$^{" not in tex and "(20)" not in tex
    assert re.search(r"0\.\d{3}\{\\scriptsize\$\\pm\$\.\d{3}\}", tex)  # the compact form
    assert_fits(compile_log(pdflatex, tex, tmp_path))


def test_mixed_n_goes_per_row_with_superscripts_and_the_table_fits(pdflatex, tmp_path):
    rows = _rows(10, 12, STUDY)
    # the worst case: in every column some row's cell has another n than its row (two digits)
    drop = rows[(rows["variant"] == "base") & (rows["seed"] == 11)].index
    rows = rows.drop(drop[::2])  # base: even classes at 11 seeds (marked), odd at 12 (its row's n)
    extra = rows[(rows["variant"] == "full") & (rows["epochs"] == 5) & (rows["normal_class"] % 2 == 0)]
    rows = pd.concat([rows, extra.assign(seed=extra["seed"] + 12)], ignore_index=True)  # even 24 (row), odd 12
    tex = class_table_latex(wide_cells(rows)["mnist"], "mnist: AUC per normal class")
    assert "n: the number of seeds of a row of ours" in tex and "$^{11}$" in tex and "$^{12}$" in tex
    base = next(line for line in tex.splitlines() if line.startswith(r"\raggedright base"))
    assert base.count("$^{11}$") == 5 and " & 12 & " in base  # the row's n in its column, the others marked
    assert_fits(compile_log(pdflatex, tex, tmp_path))


def test_more_classes_than_a_page_holds_are_split(pdflatex, tmp_path):
    rows = _rows(17, 3, {"a": {"variant": "full", "epochs": 5}, "b": {"variant": "full", "epochs": 7}},
                 dataset="imagefolder")
    tex = class_table_latex(wide_cells(rows)["imagefolder"], "imagefolder: AUC per normal class")
    assert tex.count(r"\begin{tabular}") == 2
    assert_fits(compile_log(pdflatex, tex, tmp_path))


def test_report_writes_tables_that_fit(pdflatex, tmp_path):
    """Through `novelty report`: the per-class table and the paired differences."""
    rng = np.random.default_rng(1)
    uri = tmp_path / "res"
    paired = {**STUDY, "b0": {**STUDY["c0"], "variant": "base"}}  # base beside c0: a paired difference
    for fields in paired.values():
        for c in range(10):
            for s in range(2):
                cfg = TrialConfig(dataset="mnist", normal_class=c, seed=s, **fields)
                key = cfg.key("synthetic")
                write_trial(str(uri), {"key": key, "sweep": "t", **dataclasses.asdict(cfg),
                                       "auc": float(rng.uniform(0.5, 1))},
                            pd.DataFrame({"key": key, "index": [0, 1], "label": [0, 1],
                                          "score": [0.1, 0.9], "raw_score": [0.1, 0.9]}))
    write_report(str(uri), str(tmp_path / "tables"), plots=False)
    texs = sorted((tmp_path / "tables").glob("*.tex"))
    assert [t.name for t in texs] == ["ablation.tex", "mnist.tex"]
    for tex in texs:
        assert_fits(compile_log(pdflatex, tex.read_text(), tmp_path / tex.stem))


@pytest.mark.parametrize("tex", sorted(REPO.glob("results/*/tables/*.tex")),
                         ids=lambda p: str(p.relative_to(REPO / "results")))
def test_committed_tables_fit(pdflatex, tmp_path, tex):
    assert_fits(compile_log(pdflatex, tex.read_text(), tmp_path))
