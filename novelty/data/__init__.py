"""Data in: the first part of the flow dataset -> split -> trial -> row -> table.

- `datasets.py`: the dataset registry (names, readers, protocols; torch-free).
- `readers.py`: one reader per format, files -> uint8 tensors (N, C, 32, 32).
- `load.py`: decoded datasets cached as tensors, their fingerprints, the one-class splits.
- `preprocess.py`: input preprocessing of a split (`--preprocess`).

Imports nothing of the parts after it (methods, store, trial, sweep, report).
"""
