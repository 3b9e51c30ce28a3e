"""Every error a user can cause, in one place, and how every entry point reports them: one line
on stderr and an exit status that says which kind of error it was (EXIT_CODES, listed in
`novelty --help`). Imports nothing of the package and no torch, so every module can use it."""
from __future__ import annotations

import signal
import sys


class ConfigError(ValueError):
    """A configuration value the user gave is invalid."""


class ResultsError(RuntimeError):
    """The results folder cannot be used (not writable, not reachable)."""


class DataError(RuntimeError):
    """The dataset the user pointed at is missing, incomplete or corrupt."""


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite."""


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be written."""


class Terminated(BaseException):
    """SIGTERM arrived (Slurm's time limit, scancel, a preempted node); the message says what is kept.
    A BaseException, so no `except Exception` on the way up swallows it."""


def stop_on_sigterm() -> None:
    """Make SIGTERM raise Terminated in the main thread. Call it again after `ray.init`, which
    installs a handler of its own (one that dumps a C++ stack and exits 134)."""
    def handler(signum, frame):
        raise Terminated("completed trials are kept")
    signal.signal(signal.SIGTERM, handler)


USER_ERRORS = (ConfigError, DataError, ResultsError, TrainingDiverged, CheckpointError, FileNotFoundError,
               PermissionError)

EXIT_CODES = (
    (0, "success"),
    (1, "a sweep finished with trials that ended without a row (see their FAILED lines; rerun to retry)"),
    (2, "usage or configuration error: an unknown option, a bad value, a sweep file that does not load"),
    (3, "data error: a dataset missing, incomplete or corrupt, a file or folder not found or not readable"),
    (4, "a trial diverged: a loss became NaN or infinite"),
    (5, "results store error: the results folder or a checkpoint cannot be read or written"),
    (130, "interrupted (Ctrl+C); completed trials are kept"),
    (143, "stopped by SIGTERM (Slurm's time limit, scancel); completed trials are kept"),
)
"""Every exit status of `novelty` and of a sweep file, and what it means."""
# Which exit status each user error ends with; the first match wins.
_EXIT_OF = ((ConfigError, 2), (DataError, 3), (FileNotFoundError, 3), (PermissionError, 3),
            (TrainingDiverged, 4), (ResultsError, 5), (CheckpointError, 5))


def exit_codes_help() -> str:
    """EXIT_CODES as the epilog of `--help`."""
    return "exit status:\n" + "\n".join(f"  {code:>3}  {what}" for code, what in EXIT_CODES)


def exit_code(exc: BaseException) -> int:
    """The exit status a user error ends with (EXIT_CODES)."""
    return next((code for kind, code in _EXIT_OF if isinstance(exc, kind)), 2)


def run_user_command(fn) -> int:
    """Run fn(); a mistake the user can fix ends as one line on stderr and the exit status of its
    kind (EXIT_CODES); SIGTERM as one line and exit status 143 (128 + 15, as a shell reports a
    process it ended); Ctrl+C as one line and 130."""
    stop_on_sigterm()
    try:
        return fn()
    except Terminated as exc:
        print(f"novelty: stopped by SIGTERM: {exc}; rerun the same command to resume (a trial in training goes "
              "on from its last epoch's checkpoint)", file=sys.stderr, flush=True)
        return 143
    except USER_ERRORS as exc:
        print(f"novelty: error: {exc}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        print("novelty: interrupted; completed trials are kept, rerun the same command to resume",
              file=sys.stderr)
        return 130
