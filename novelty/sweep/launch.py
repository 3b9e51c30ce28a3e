"""Entry points of sweeps: a sweep file's `main`, and the `sweep`, `array-task` and
`report` subcommands of `novelty`. The Ray driver (`novelty.sweep.driver`) is imported only
when a sweep runs through Ray, so a Slurm job-array task runs without Ray.
"""
from __future__ import annotations

import argparse
import os
import sys

from ..arguments import (DeprecatedAlias, add_dataclass_args, add_results_arg, from_namespace, refuse_dataclass_args,
                         results_folder)
from ..config import ConfigError
from ..errors import exit_codes_help, run_user_command
from .grid import Sweep, SweepOptions, load_sweep

# SweepOptions an array task has no use for: it runs one trial in this process, without Ray
NOT_IN_ARRAY_TASKS = ("ray_address", "max_concurrent", "cpus_per_trial", "gpus_per_trial", "ranks_per_trial",
                      "report")
NOT_IN_ARRAY_TASKS_WHY = ("an array task runs one trial in this process, without Ray (its CPUs and GPUs are the "
                          "Slurm task's; render the tables with `novelty report` once the array is done)")


def sweep_parser(sweep: Sweep) -> argparse.ArgumentParser:
    """The command line of a sweep file: its SweepOptions."""
    parser = argparse.ArgumentParser(prog=f"sweep {sweep.name}",
                                     description=f"Run the {sweep.name!r} sweep through Ray Tune.",
                                     epilog=exit_codes_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_args(parser, SweepOptions)
    return parser


def main(sweep: Sweep, argv: list[str] | None = None) -> int:
    """Entry point of a sweep file: parse SweepOptions and run the sweep through Ray Tune."""
    ns = sweep_parser(sweep).parse_args(argv)
    return run_user_command(lambda: run_with_ray(sweep, from_namespace(SweepOptions, ns)))


def run_with_ray(sweep: Sweep, opts: SweepOptions) -> int:
    from .driver import run_sweep  # the only module that imports Ray

    summary = run_sweep(opts.resources(sweep), opts)
    if opts.report and summary.total > len(summary.failed):
        from ..report.write import write_report

        write_report(opts.results_uri(sweep))
    if summary.failed:
        print(f"novelty: error: {len(summary.failed)} trial(s) of sweep {sweep.name} ended without a row "
              f"(see the FAILED lines above; rerun the same command to retry them): {', '.join(summary.failed)}",
              file=sys.stderr)
        return 1
    return 0


# ------------------------------------------------------------------ subcommands


def _cmd_sweep(ns: argparse.Namespace) -> int:
    return run_with_ray(load_sweep(ns.sweep_file), from_namespace(SweepOptions, ns))


def _cmd_array_task(ns: argparse.Namespace) -> int:
    """One trial of a sweep per Slurm array task, no Ray: SLURM_ARRAY_TASK_ID -> trial."""
    from ..store.results import existing_keys
    from ..trial.run import prepare_data, run_trial

    sweep, opts = load_sweep(ns.sweep_file), from_namespace(SweepOptions, ns)
    trials = sweep.trials(opts)
    if ns.count:
        print(len(trials))
        return 0
    index = ns.index if ns.index >= 0 else int(os.environ.get("SLURM_ARRAY_TASK_ID", "-1"))
    if not 0 <= index < len(trials):
        raise ConfigError(f"array index {index} is outside the sweep's {len(trials)} trials (0..{len(trials) - 1})")
    cfg = trials[index]
    run = opts.run_options(sweep)  # progress is already off
    _, key = prepare_data(cfg, run)
    if key in existing_keys(run.results):
        print(f"trial {index} ({cfg.variant}, class {cfg.normal_class}, seed {cfg.seed}, key {key}) "
              "already has a row; nothing to do")
        return 0
    row = run_trial(cfg, run)
    print(f"trial {index} {row['run_name']} AUC {row['auc']:.4f}" if row else f"trial {index} done")
    return 0


def _cmd_report(ns: argparse.Namespace) -> int:
    from ..report.write import write_report

    results = results_folder(ns, "report")
    write_report(results, out_dir=ns.tables or None, plots=ns.plots, score_rules=ns.score_rules)
    return 0


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    common = {"epilog": exit_codes_help(), "formatter_class": argparse.RawDescriptionHelpFormatter}
    sweep = sub.add_parser("sweep", help="run a sweep file through Ray Tune",
                           description="Run the grid of a sweep file through Ray Tune; trials with a row are skipped.",
                           **common)
    sweep.add_argument("sweep_file", help="a sweep file, e.g. sweeps/digits.py")
    add_dataclass_args(sweep, SweepOptions)
    sweep.set_defaults(func=_cmd_sweep)

    array = sub.add_parser("array-task", help="run one trial of a sweep without Ray (Slurm job arrays)",
                           description="Run trial SLURM_ARRAY_TASK_ID (or --index) of a sweep file, no Ray.",
                           **common)
    array.add_argument("sweep_file", help="a sweep file, e.g. sweeps/digits.py")
    array.add_argument("--index", type=int, default=-1, help="trial index (default: $SLURM_ARRAY_TASK_ID)")
    array.add_argument("--count", action="store_true", help="print the number of trials and exit")
    add_dataclass_args(array, SweepOptions, skip=NOT_IN_ARRAY_TASKS)
    refuse_dataclass_args(array, SweepOptions, NOT_IN_ARRAY_TASKS, NOT_IN_ARRAY_TASKS_WHY)
    array.set_defaults(func=_cmd_array_task)

    report = sub.add_parser("report", help="rebuild mean ± std tables and plots from a results folder",
                            description="Read every row under --results; write tables (Markdown, CSV, LaTeX) and "
                                        "plots under --tables.", **common)
    add_results_arg(report, "to read")
    report.add_argument("--tables", default="", help="where to write tables and plots (default: <results>/tables)")
    report.add_argument("--out", dest="tables", action=DeprecatedAlias, new="--tables")
    report.add_argument("--plots", action=argparse.BooleanOptionalAction, default=True, help="also draw PNG plots")
    report.add_argument("--score-rules", action="store_true",
                        help="let leave-one-class-out also choose the score rule (mix lambda x component scale), "
                             "re-mixed from each trial's stored components")
    report.set_defaults(func=_cmd_report)
