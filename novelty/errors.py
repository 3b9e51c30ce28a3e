"""The errors a user can cause, and how every entry point reports them: one line, exit 2.
Torch-free, so `novelty report` and the sweep driver import it without a network."""
from __future__ import annotations

import sys

from .config import ConfigError
from .results import ResultsError


class DataError(RuntimeError):
    """The dataset the user pointed at is missing, incomplete or corrupt."""


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite."""


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be written."""


USER_ERRORS = (ConfigError, DataError, ResultsError, TrainingDiverged, CheckpointError, FileNotFoundError,
               PermissionError)


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
