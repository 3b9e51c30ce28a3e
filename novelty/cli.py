"""`novelty` command line: train one trial, run a sweep, report a results folder.

Every option comes from the frozen dataclasses in `novelty.config` and `novelty.sweep.grid`,
so `novelty <command> --help` is the documentation. Every command names its results
folder --results. Every image becomes C×32×32 (3×32×32 for colour datasets: ImageFolder,
CIFAR-10, COIL-100; 1×32×32 for MNIST, Fashion-MNIST and digits): the networks are built
for 32×32 inputs, so there is no image-size option.
"""
from __future__ import annotations

import argparse
import sys

from . import __version__, git_commit
from .arguments import DeprecatedAlias, add_dataclass_args, add_method_args, from_namespace
from .config import PRESETS, RunOptions, TrialConfig, trial_fields
from .errors import exit_codes_help, run_user_command


def version() -> str:
    """The package version, and the git commit of its source when it runs from a git checkout."""
    commit = git_commit()
    return f"novelty {__version__}" + (f" (git {commit[:12]})" if commit else "")


class _Version(argparse.Action):
    """--version, computed only when asked (reading the commit runs git)."""

    def __init__(self, option_strings, dest, **kw):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=kw.get("help"))

    def __call__(self, parser, namespace, values, option_string=None):
        print(version())
        parser.exit()


def _normal_class(ns: argparse.Namespace, opts: RunOptions) -> dict:
    """--normal-class as a number, or as an ImageFolder class folder's name (e.g. good)."""
    text = getattr(ns, "normal_class", None)
    if text is None:
        return {}
    if text.lstrip("-").isdigit():
        return {"normal_class": int(text)}
    from .data.load import class_index, load_imageset

    data = load_imageset(getattr(ns, "dataset", "digits"), opts.data_root, opts.cache_dir, opts.download)
    return {"normal_class": class_index(data, text)}


def cmd_train(ns: argparse.Namespace) -> int:
    opts = from_namespace(RunOptions, ns)
    given = {k: v for k, v in vars(ns).items() if k != "preset"}
    given = {k: v for k, v in {**PRESETS.get(ns.preset, {}), **given}.items() if k in trial_fields()}
    cfg = TrialConfig.from_flat({**given, **_normal_class(ns, opts)})  # a bad value ends here, before torch loads
    import torch.distributed as dist

    from .trial.distributed import init_from_env
    from .trial.run import run_trial

    started = init_from_env(opts.device)
    try:
        row = run_trial(cfg, opts)
    finally:
        if started:
            dist.destroy_process_group()
    if row is not None:
        print(f"{row['run_name']}  AUC {row['auc']:.4f}  ({row['train_seconds']:.1f}s training, "
              f"{row['images_per_second']:.0f} img/s, world_size {row['world_size']})  -> {opts.results}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="novelty", description=__doc__, epilog=exit_codes_help(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_Version, help="print the version (and git commit) and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train and score one trial; write its Parquet row",
                           description="Train one trial (Tian et al.) and write its row and per-image scores "
                                       "under --results. Images become C×32×32 (3×32×32 in colour).",
                           epilog=exit_codes_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--preset", choices=sorted(PRESETS), default="",
                       help="start from a named set of values (paper: the paper's stated choices and the "
                            "provisional open knobs); options given explicitly still win")
    add_dataclass_args(train, TrialConfig, skip=("params",))
    add_method_args(train)  # a method's params: each field an option of its own
    add_dataclass_args(train, RunOptions)
    train.add_argument("--out", dest="results", action=DeprecatedAlias, new="--results")
    train.set_defaults(func=cmd_train)
    from .store.compact import add_subcommand as add_compact
    from .sweep.launch import add_subcommands

    add_subcommands(sub)
    add_compact(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    return run_user_command(lambda: ns.func(ns))


if __name__ == "__main__":
    sys.exit(main())
