"""One trial: dataset -> split -> the one training loop -> scores -> row.

- `run.py`: `run_trial`, what the CLI, the Ray sweep driver and a Slurm array task all call.
- `loop.py`: the training loop every method runs in (epochs, DDP, validation, the stopping
  rule, the oracle trace, per-epoch checkpoints and resume).
- `distributed.py`: devices and process groups; `checkpoints.py`: atomic, code-free checkpoints.

Imports data, methods and store; imports no Ray and nothing of sweep or report.
"""
