"""`novelty` command line: train one trial, run a sweep, report a results folder.

Every option comes from the frozen dataclasses in `novelty.config` and `novelty.grid`,
so `novelty <command> --help` is the documentation.
"""
from __future__ import annotations

import argparse
import sys

from .config import PRESETS, RunOptions, TrialConfig, add_dataclass_args, from_namespace
from .errors import run_user_command


def _normal_class(ns: argparse.Namespace, opts: RunOptions) -> dict:
    """--normal-class as a number, or as an ImageFolder class folder's name (e.g. good)."""
    text = getattr(ns, "normal_class", None)
    if text is None:
        return {}
    if text.lstrip("-").isdigit():
        return {"normal_class": int(text)}
    from .data import class_index, load_imageset

    data = load_imageset(getattr(ns, "dataset", "digits"), opts.data_root, opts.cache_dir, opts.download)
    return {"normal_class": class_index(data, text)}


def cmd_train(ns: argparse.Namespace) -> int:
    import torch.distributed as dist

    from .distributed import init_from_env
    from .trial import run_trial

    opts = from_namespace(RunOptions, ns)
    given = {k: v for k, v in vars(ns).items() if k != "preset"}
    cfg = from_namespace(TrialConfig, {**PRESETS.get(ns.preset, {}), **given}, **_normal_class(ns, opts))
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
    train.add_argument("--preset", choices=sorted(PRESETS), default="",
                       help="start from a named set of values (paper: the paper's stated choices and the "
                            "provisional open knobs); options given explicitly still win")
    add_dataclass_args(train, TrialConfig)
    add_dataclass_args(train, RunOptions)
    train.set_defaults(func=cmd_train)
    from .compact import add_subcommand as add_compact
    from .launch import add_subcommands

    add_subcommands(sub)
    add_compact(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    return run_user_command(lambda: ns.func(ns))


if __name__ == "__main__":
    sys.exit(main())
