"""The store: a trial's row, its per-image scores and trace as Parquet, written atomically to a
local folder or a bucket, and read back (`results.py`); the compact scores format
(`scorefiles.py`) and rewriting old files into it (`compact.py`).

Below the trial (which writes through it) and the report (which reads through it); imports
the methods' scoring (the derived score columns) and nothing after it.
"""
