"""How much of a sweep's span its trials fill: span / (Σ trial wall / lanes), from the rows alone.

A trial's wall is its row's finished_at − started_at (data, training, scoring, writing: what a
lane spends on it); the span is from the first trial's start to the last one's end. 1.00 means
the lanes were never idle between trials; the rest is the driver's and Tune's time between them
(scheduling, a worker's start, the trial's report). Pick one invocation's rows with --seeds (a
run seed by seed) or --since/--until (ISO times, UTC).

    python bench/sweep_span.py --results results/ablation --lanes 2 --seeds 9
    python bench/sweep_span.py --results results/ablation --lanes 2 --since 2026-12-03T13:40
"""
from __future__ import annotations

import argparse

import pandas as pd

from novelty.store.results import read_rows


def span_ratio(rows: pd.DataFrame, lanes: int) -> dict:
    start = pd.to_datetime(rows["started_at"], utc=True, format="ISO8601")
    end = pd.to_datetime(rows["finished_at"], utc=True, format="ISO8601")
    wall = (end - start).dt.total_seconds()
    span = (end.max() - start.min()).total_seconds()
    ideal = wall.sum() / lanes
    return {"trials": len(rows), "span_s": round(span, 1), "sum_wall_s": round(wall.sum(), 1),
            "mean_wall_s": round(wall.mean(), 1), "ideal_s": round(ideal, 1), "ratio": round(span / ideal, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", required=True, help="results folder")
    ap.add_argument("--lanes", type=int, required=True, help="trials the sweep ran at once (--max-concurrent)")
    ap.add_argument("--seeds", default="", help="comma-separated seeds, each measured as its own invocation")
    ap.add_argument("--since", default="", help="only trials started at or after this ISO time (UTC)")
    ap.add_argument("--until", default="", help="only trials finished at or before this ISO time (UTC)")
    args = ap.parse_args()
    rows = read_rows(args.results)
    started = pd.to_datetime(rows["started_at"], utc=True, format="ISO8601")
    finished = pd.to_datetime(rows["finished_at"], utc=True, format="ISO8601")
    if args.since:
        rows = rows[started >= pd.Timestamp(args.since, tz="UTC")]
    if args.until:
        rows = rows[finished.loc[rows.index] <= pd.Timestamp(args.until, tz="UTC")]
    groups = ({f"seed {s}": rows[rows["seed"] == int(s)] for s in args.seeds.split(",")} if args.seeds
              else {"selected": rows})
    for name, part in groups.items():
        if part.empty:
            print(f"{name}: no rows")
            continue
        r = span_ratio(part, args.lanes)
        print(f"{name}: {r['trials']} trials, span {r['span_s']:.0f} s, Σ wall {r['sum_wall_s']:.0f} s "
              f"(mean {r['mean_wall_s']:.1f} s) / {args.lanes} lanes = {r['ideal_s']:.0f} s; ratio {r['ratio']:.3f}")


if __name__ == "__main__":
    main()
