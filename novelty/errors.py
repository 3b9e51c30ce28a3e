"""The errors a user can cause, and how every entry point reports them: one line, exit 2."""
from __future__ import annotations

import sys

from .config import ConfigError
from .data import DataError
from .results import ResultsError
from .train import CheckpointError, TrainingDiverged

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
