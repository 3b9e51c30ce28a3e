"""The errors a user can cause, and how every entry point reports them: one line, exit 2.
Torch-free, so `novelty report` and the sweep driver import it without a network."""
from __future__ import annotations

import signal
import sys

from .config import ConfigError
from .results import ResultsError


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


def run_user_command(fn) -> int:
    """Run fn(); a mistake the user can fix ends as one line on stderr and exit status 2; SIGTERM
    as one line and exit status 143 (128 + 15, as a shell reports a process it ended)."""
    stop_on_sigterm()
    try:
        return fn()
    except Terminated as exc:
        print(f"novelty: stopped by SIGTERM: {exc}; rerun the same command to resume (a trial in training goes "
              "on from its last epoch's checkpoint)", file=sys.stderr, flush=True)
        return 143
    except USER_ERRORS as exc:
        print(f"novelty: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("novelty: interrupted; completed trials are kept, rerun the same command to resume",
              file=sys.stderr)
        return 130
