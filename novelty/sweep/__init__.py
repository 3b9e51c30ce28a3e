"""Sweeps: many trials, scheduled.

- `grid.py`: a sweep as data (`Sweep`: its grid, resources, options); Ray-free, so a Slurm job
  array's task runs without Ray. Sweep files import it as `novelty.grid` (kept for them).
- `driver.py`: the Ray Tune driver (`run_sweep`): the only module that imports Ray.
- `launch.py`: a sweep file's command line (`main`; `novelty.launch` for sweep files) and the
  `novelty sweep` / `novelty array-task` commands.

The top of the flow below the CLI: it runs trials and renders the report when they are done.
"""
