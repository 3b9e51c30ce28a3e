"""Sweeps as data: a grid of trials, its resources, and the options that narrow it.

A sweep file under `sweeps/` declares one `SWEEP = Sweep(...)` and ends with
`raise SystemExit(main(SWEEP))` (`novelty.sweep.launch.main`). This module is data only: it
imports neither Ray nor the driver, so a Slurm job-array task runs without them.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..config import ConfigError, RunOptions, TrialConfig, default_cache_dir, trial_fields
# What every screen of the MNIST quality study fixes (sweeps/study_mnist*.py): score_lambda and
# stop are pinned to the values the first rows were trained with, so keys stay stable; the score rule
# itself is re-mixed from stored components (novelty report --score-rules)
STUDY_MNIST = {"dataset": "mnist", "epochs": 5, "score_lambda": 0.9, "stop": "last"}
# The paper's table 2-3 baselines in our harness (sweeps/*_baselines.py), the variant axis first so
# the quick pixel methods finish before the trained ones; dae / vae: the generator's encoder/decoder,
# nz 32 (a VAE's latent; the DAE shares it), batch 64, Adam 1e-3, 4 epochs (a 2-core CPU budget);
# ocsvm / kde ignore these (see novelty/methods/pixels.py)
BASELINES_GRID = {"variant": ("kde", "ocsvm", "vae", "dae"), "normal_class": range(10), "seed": [0]}
BASELINES_FIXED = {"epochs": 4, "nz": 32}
# The methods beyond the paper, at the presets this machine can pay for (docs/selfsup.md: how each
# value was chosen, what it costs, what was tried and dropped). transforms: GEOM's 72
# transformations (their published set) on a WRN-10-1, 8 images (576 transformed) a batch, one
# epoch over the 72-fold set; deepsvdd: Ruff et al.'s network, GCN, Adam 1e-4, batch 200.
SELFSUP_FIXED = {
    "transforms": {"tf_set": "geom72", "tf_depth": 10, "tf_widen": 1, "tf_lr": 0.05, "tf_score": "dirichlet",
                   "epochs": 1, "batch_size": 8},
    "deepsvdd": {"preprocess": "gcn", "svdd_objective": "one-class", "svdd_lr": 1e-4, "svdd_pretrain_epochs": 0,
                 "epochs": 10, "batch_size": 200},
}


@dataclass(frozen=True)
class Sweep:
    """A grid of trials (the product of `grid`'s value lists) and how to run them."""

    name: str
    """Sweep name: the `sweep` column of its rows and the default results folder runs/<name>."""
    grid: dict[str, Sequence[Any]] = field(default_factory=dict)
    """TrialConfig field (or a method's own hyper-parameter) -> values; the trials are their Cartesian
    product (a method's own hyper-parameter is left out of another method's trials)."""
    fixed: dict[str, Any] = field(default_factory=dict)
    """TrialConfig fields held fixed for every trial (e.g. dataset, epochs)."""
    screens: tuple[dict[str, Any], ...] = ()
    """One-knob-at-a-time screens: each is a set of TrialConfig values laid over `fixed`, and
    the sweep is the grid run once per screen, screen by screen (none: the grid once)."""
    cpus_per_trial: float = 1.0
    """CPUs Ray reserves per trial."""
    gpus_per_trial: float = 0.0
    """GPUs Ray reserves per trial (0.25 packs four trials on one GPU); ignored without GPUs."""
    ranks_per_trial: int = 1
    """torch.distributed ranks per trial (DDP): one per GPU on GPUs, gloo processes on CPU."""
    max_failures: int = 2
    """Ray Tune retries of a failed trial; a retry resumes from the last epoch's checkpoint."""

    def check(self) -> None:
        """Raise ConfigError naming any grid or fixed field that is not a TrialConfig field.
        (Called by `main` and `trials`, not at construction, so a sweep file run as a script
        reports a typo as one line instead of a traceback from its module body.)"""
        known = trial_fields()
        unknown = (set(self.grid) | set(self.fixed) | {k for s in self.screens for k in s}) - known
        if unknown:
            raise ConfigError(f"sweep {self.name!r}: unknown trial field(s) {', '.join(sorted(unknown))} in its "
                              f"grid/fixed/screens; valid fields: {', '.join(sorted(known))}")
        clash = {k for s in self.screens for k in s} & (set(self.grid) | {"normal_class", "seed", "variant"})
        if clash:
            raise ConfigError(f"sweep {self.name!r}: a screen sets {', '.join(sorted(clash))}; put classes, seeds, "
                              "variants and every grid field in the grid only")

    def trials(self, opts: "SweepOptions | None" = None) -> list[TrialConfig]:
        """Every trial of the grid, narrowed and overridden by `opts`, in a stable order."""
        self.check()
        grid = {k: list(v) for k, v in self.grid.items()}
        fixed = dict(self.fixed)
        screens = list(self.screens) or [{}]
        forced: dict[str, Any] = {}  # what the options set over the grid, fixed and every screen
        if opts is not None:
            for name, text in (("normal_class", opts.classes), ("seed", opts.seeds), ("variant", opts.variants)):
                if text:
                    kind = str if name == "variant" else int
                    values = [v.strip() for v in text.split(",") if v.strip()]
                    if name == "normal_class" and any(not v.lstrip("-").isdigit() for v in values):
                        grid[name] = self._class_indices(values, opts, grid, fixed, screens)
                    else:
                        try:
                            grid[name] = [kind(v) for v in values]
                        except ValueError as exc:
                            raise ConfigError(f"--{name.replace('_', '-')}s: {exc}") from exc
                    fixed.pop(name, None)
            if opts.epochs:
                grid.pop("epochs", None)
                forced["epochs"] = opts.epochs
            if opts.smoke_test:
                grid = {k: v[:2] if k in ("normal_class", "variant") else v[:1] for k, v in grid.items()}
                forced["epochs"] = 1
                screens = screens[:1]
        names = list(grid)
        trials = [TrialConfig.from_flat({**fixed, **screen, **forced, **dict(zip(names, values))}, strict=False)
                  for screen in screens for values in itertools.product(*grid.values())]
        trials = list(dict.fromkeys(trials))  # a method's own knob in the grid repeats other methods' trials
        if not trials:
            raise ConfigError(f"sweep {self.name!r} has no trials (an empty value list in its grid or options)")
        return trials

    def _class_indices(self, values: list[str], opts: "SweepOptions", grid: dict, fixed: dict,
                       screens: list[dict]) -> list[int]:
        """--classes as numbers or class folder names (ImageFolder: --classes good,cut), each name
        resolved against the sweep's one dataset, loaded (and cached) as its trials will load it."""
        datasets = set(grid.get("dataset", [fixed.get("dataset", TrialConfig.dataset)]))
        datasets |= {s["dataset"] for s in screens if "dataset" in s}
        if len(datasets) != 1:
            raise ConfigError(f"--classes {','.join(values)}: class names need a sweep over one dataset "
                              f"(this one runs {', '.join(sorted(datasets))}); give class numbers")
        from ..data.load import class_index, load_imageset  # torch, only when a class is named

        data = load_imageset(datasets.pop(), opts.data_root, opts.cache_dir, opts.download)
        return [class_index(data, v) for v in values]


@dataclass(frozen=True)
class SweepOptions:
    """Command-line options of a sweep: where data and results are, and how to narrow it."""

    data_root: str = ""
    """Folder holding the dataset (e.g. /path/to/data); a '~' that reaches the sweep unexpanded (quoted: '~/data') is expanded on each node its trials run on, to that node's home."""
    download: bool = False
    """Let torchvision download MNIST / Fashion-MNIST / CIFAR-10 into --data-root where it is missing: on the driver before the sweep starts, and on each node its trials run on (needs a network there)."""
    results: str = ""
    """Results folder or URI (s3://, gs://, NFS path); default env NOVELTY_RESULTS, else runs/<sweep name> (git-ignored)."""
    cache_dir: str = field(default_factory=default_cache_dir)
    """Folder of decoded datasets cached as tensors (env NOVELTY_CACHE; a leading '~', as for --data-root: each node's home)."""
    max_concurrent: int = 0
    """Most trials running at once (0 = as many as the resources allow)."""
    epochs: int = 0
    """Override every trial's epochs (0 = the sweep's)."""
    classes: str = ""
    """Comma-separated normal classes to run, as numbers or, where the dataset names them (ImageFolder), as class folder names: --classes good (default: the sweep's)."""
    seeds: str = ""
    """Comma-separated seeds to run (default: the sweep's)."""
    variants: str = ""
    """Comma-separated variants to run (default: the sweep's)."""
    smoke_test: bool = False
    """Tiny run: first 2 classes and variants, first seed, 1 epoch."""
    cpus_per_trial: float = 0.0
    """Override the sweep's CPUs per trial (0 = the sweep's)."""
    gpus_per_trial: float = -1.0
    """Override the sweep's GPUs per trial (-1 = the sweep's)."""
    ranks_per_trial: int = 0
    """Override the sweep's DDP ranks per trial (0 = the sweep's)."""
    ray_address: str = ""
    """Ray cluster to join: host:port, "auto", or "local" for a new one (default: RAY_ADDRESS, else a running cluster, else a new local one)."""
    report: bool = True
    """Render the tables (novelty report) when the sweep finishes."""
    trace: bool = False
    """Write every trial's per-epoch trace (validation losses, ORACLE test AUCs) to trace/<key>.parquet."""

    def results_uri(self, sweep: Sweep) -> str:
        return self.results or os.environ.get("NOVELTY_RESULTS") or f"runs/{sweep.name}"

    def run_options(self, sweep: Sweep, **kw: Any) -> RunOptions:
        """Trial options with local paths made absolute (Ray workers run in other folders), except
        that a data root or cache folder starting with '~' stays as it is: each node's trials expand
        it to their own home (novelty.data.load), not to the home of the machine the driver runs on."""
        results = self.results_uri(sweep)
        results = results if "://" in results else str(Path(results).absolute())
        return RunOptions(data_root=node_path(self.data_root), download=self.download,
                          cache_dir=node_path(self.cache_dir), results=results,
                          sweep=sweep.name, progress=False, trace=self.trace, **kw)

    def resources(self, sweep: Sweep) -> Sweep:
        """The sweep with this run's resource overrides applied."""
        changes: dict[str, Any] = {}
        if self.cpus_per_trial > 0:
            changes["cpus_per_trial"] = self.cpus_per_trial
        if self.gpus_per_trial >= 0:
            changes["gpus_per_trial"] = self.gpus_per_trial
        if self.ranks_per_trial > 0:
            changes["ranks_per_trial"] = self.ranks_per_trial
        return dataclasses.replace(sweep, **changes)


def node_path(path: str) -> str:
    """A local path as a sweep's trials get it: "" stays "", "~/..." stays unexpanded (each node's
    home, expanded where the trial runs), any other path is made absolute against this folder."""
    if not path or path.startswith("~"):
        return path
    return str(Path(path).absolute())


def load_sweep(path: str) -> Sweep:
    """Import a sweep file and return its SWEEP."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"sweep file {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"novelty_sweep_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    sweep = getattr(module, "SWEEP", None)
    if not isinstance(sweep, Sweep):
        raise ConfigError(f"{path} defines no `SWEEP = Sweep(...)`")
    return sweep


def baselines_sweep(dataset: str) -> Sweep:
    """The paper's table 2-3 baselines on `dataset` (BASELINES_GRID over BASELINES_FIXED):
    4 baselines x 10 classes x 1 seed = 40 trials (add seeds with --seeds 0,1,...)."""
    return Sweep(name=f"{dataset}_baselines", grid=BASELINES_GRID, fixed={"dataset": dataset, **BASELINES_FIXED},
                 cpus_per_trial=1)


def selfsup_sweep(variant: str, dataset: str, seeds: Sequence[int]) -> Sweep:
    """`variant` (transforms or deepsvdd) on `dataset` at its SELFSUP_FIXED preset:
    10 classes x len(seeds) seeds, one CPU a trial."""
    return Sweep(name=f"{dataset}_{variant}", grid={"normal_class": range(10), "seed": list(seeds)},
                 fixed={"dataset": dataset, "variant": variant, **SELFSUP_FIXED[variant]}, cpus_per_trial=1)


@dataclass(frozen=True)
class Resources:
    """What Ray reserves for each trial of a sweep, and how the trial uses it."""

    cpus: float
    """CPUs reserved per trial."""
    gpus: float
    """GPUs reserved per trial (a fraction packs several trials on one GPU)."""
    ranks: int
    """DDP ranks per trial (1: a single process)."""
    device: str
    """cpu or cuda."""
    threads: int
    """Torch CPU threads per rank: the trial's CPUs shared among its ranks."""


def trial_resources(sweep: Sweep, have_gpu: bool) -> Resources:
    """GPUs only where the cluster has them and the sweep asks for them (`gpus_per_trial` > 0);
    a DDP trial on GPUs takes one whole GPU per rank (two NCCL ranks cannot share a GPU), one
    on CPUs takes no GPU at all. More than one GPU for a single process would sit idle: refused."""
    ranks = max(1, sweep.ranks_per_trial)
    gpus = sweep.gpus_per_trial if have_gpu else 0.0
    if gpus > 1 and ranks == 1:
        raise ConfigError(f"sweep {sweep.name!r}: gpus_per_trial {gpus:g} > 1 for a single-process trial would "
                          f"reserve GPUs it never uses; for a DDP trial on N GPUs set ranks_per_trial N "
                          f"(--ranks-per-trial), else use gpus_per_trial <= 1")
    if gpus > 0 and ranks > 1:
        gpus = float(ranks)
    cpus = max(sweep.cpus_per_trial, 1.0 if gpus else float(ranks))
    return Resources(cpus=cpus, gpus=gpus, ranks=ranks, device="cuda" if gpus > 0 else "cpu",
                     threads=max(1, int(cpus // ranks)))


def trial_labels(trials: list[TrialConfig], fingerprints: dict[str, str]) -> dict[str, dict]:
    """Short unique labels for Tune's progress table (it cuts values to 20 characters):
    "c3-full-s0", with "-<key>" added where hyper-parameters alone tell trials apart.
    Each maps to {"config": TrialConfig fields, "key": the trial's key on its data}."""
    short = [f"c{t.normal_class}-{t.variant}-s{t.seed}" for t in trials]
    counts = Counter(short)
    out = {}
    for s, t in zip(short, trials):
        key = t.key(fingerprints[t.dataset])
        out[s if counts[s] == 1 else f"{s}-{key[:8]}"] = {"config": dataclasses.asdict(t), "key": key,
                                                          "data": fingerprints[t.dataset]}
    return out
