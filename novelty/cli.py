"""`novelty` command line: train one trial, run a sweep, report a results folder.

Every option comes from the frozen dataclasses in `novelty.config` and `novelty.grid`,
so `novelty <command> --help` is the documentation.
"""
from __future__ import annotations

import argparse
import sys

import torch.distributed as dist

from .config import ConfigError, RunOptions, TrialConfig, add_dataclass_args, from_namespace
from .data import DataError
from .results import ResultsError
from .train import CheckpointError, TrainingDiverged

USER_ERRORS = (ConfigError, DataError, ResultsError, TrainingDiverged, CheckpointError, FileNotFoundError,
               PermissionError)


def cmd_train(ns: argparse.Namespace) -> int:
    from .distributed import init_from_env
    from .trial import run_trial

    cfg = from_namespace(TrialConfig, ns)
    opts = from_namespace(RunOptions, ns)
    started = init_from_env(opts.device)
    try:
        row = run_trial(cfg, opts)
    finally:
        if started:
            dist.destroy_process_group()
    if row is not None:
        print(f"{row['run_name']}  AUC {row['auc']:.4f}  ({row['train_seconds']:.1f}s training, "
              f"{row['images_per_second']:.0f} img/s, world_size {row['world_size']})  -> {opts.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="novelty", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train and score one trial; write its Parquet row",
                           description="Train one trial (Tian et al.) and write its row and per-image scores.")
    add_dataclass_args(train, TrialConfig)
    add_dataclass_args(train, RunOptions)
    train.set_defaults(func=cmd_train)
    from .grid import add_subcommands

    add_subcommands(sub)
    return parser


def run_user_command(fn) -> int:
    """Run fn(); a mistake the user can fix ends as one line on stderr and exit status 2."""
    try:
        return fn()
    except USER_ERRORS as exc:
        print(f"novelty: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("novelty: interrupted; completed trials are kept, rerun the same command to resume",
              file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    return run_user_command(lambda: ns.func(ns))


if __name__ == "__main__":
    sys.exit(main())
