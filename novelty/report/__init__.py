"""The report: rows -> tables. `write.py` (`novelty report`: `write_report`), `tables.py`
(mean ± std per class beside the paper's numbers), `render.py` (Markdown, CSV, LaTeX),
`plots.py`, `effects.py` (the ablation's effects and CIs), `selection.py` (leave-one-class-out
choices, re-scored score rules, the oracle views), `paper.py` + `paper_tables.csv` (the
published numbers).

Reads the store; imports no torch (a report runs where nothing trains) and nothing of trial or sweep.
"""
