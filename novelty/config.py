"""Frozen dataclasses that configure a trial, and the CLI built from them.

A trial's *key* is a short stable hash of exactly the fields of `TrialConfig`
(dataset, class, seed, variant and every hyper-parameter) and of the fingerprint of
the data it decoded (two different trees under one dataset name are two trials), so a
rerun on the same data lands on the same key. `RunOptions` holds where and how a trial runs; it never changes the key.
The docstring under each field is the `--help` text of its option.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import methods
from .data.datasets import dataset_names
from .errors import ConfigError

SCORE_NORMS = ("none", "val", "ink")
STOP_RULES = ("last", "val_fea", "val_con")
PREPROCESS = ("none", "gcn")  # novelty/data/preprocess.py says what each does
BEYOND_PAPER_NORMS = ("ink",)  # score rules the paper does not have: reported in their own rows

PAPER = {
    # stated by the paper (section 4): Adam at lr 1e-3, batch 64, pixels in [-1, 1], eq. 7-8
    # over the whole test set (raw components mixed, then min-max)
    "lr": 1e-3, "batch_size": 64, "score_norm": "none", "stop": "last",
    # not stated; the provisional GANomaly-family values this project started with
    "beta1": 0.5, "beta2": 0.999, "nz": 100, "epochs": 15, "noise_std": 0.1, "w_adv": 1.0, "w_con": 50.0,
    "w_fea": 1.0, "w_inf": 1.0, "score_lambda": 0.9,
}
# CIFAR-10's own choice (results/study_cifar10: leave-one-class-out within CIFAR-10, screened on
# seed 0, confirmed on seed 1): per-image GCN, one epoch, and eq. 7 at λ 0.9 on validation-scaled
# components (leave-one-class-out splits 4/6 between it and λ 1 raw, within 0.001 of each other;
# 6/4 when this was fixed). MNIST keeps its defaults.
CIFAR10 = {"preprocess": "gcn", "epochs": 1, "score_lambda": 0.9, "score_norm": "val"}
PRESETS = {"paper": PAPER, "cifar10": CIFAR10}
"""Named sets of TrialConfig values: `novelty train --preset paper`, or `fixed={**PRESETS["paper"]}` in a sweep."""
DATASETS = dataset_names()  # the registry's (novelty.data.datasets)
# Fields added after rows were committed, with the value every earlier trial had: a trial at
# that value leaves the field out of its key, so adding a knob does not re-key old rows (and
# `results.read_rows` fills it into rows written before the field existed).
LATER_FIELDS = {"stop": "last", "preprocess": "none"}


@dataclass(frozen=True)
class TrialConfig:
    """What a trial computes. Every field is part of the trial's key."""

    dataset: str = "digits"
    """Dataset: digits (embedded), mnist, fashion_mnist, cifar10, imagefolder, coil100."""
    normal_class: int = 0
    """Index of the normal class (COIL-100: object index, or -1 to draw it from the seed); on the command line an ImageFolder class may be named (--normal-class good)."""
    seed: int = 0
    """Seed of everything random in the trial: init, validation split, noise, batch order."""
    variant: str = "full"
    """Method: the paper's, as an ablation variant: base (DAE+D), entropy (+L_inf), cam (+CAM), full (+L_inf +CAM); or a baseline: dae, vae, ocsvm, kde (novelty.methods lists every registered one)."""
    epochs: int = 5
    """Training epochs; --stop says which epoch's model is scored (MNIST study: 5; the paper's preset: 15)."""
    stop: str = "val_fea"
    """Which epoch's model is scored: val_fea / val_con (the epoch whose normal validation images have the lowest mean L_fea / L_con: a stopping rule that looks at no test image; val_fea chosen by leave-one-class-out on MNIST); last (after the last epoch, as the paper's preset reads). A method that does not read it (the baselines) scores its last epoch (stop is held at last for them)."""
    batch_size: int = 64
    """Global batch size (split across DDP ranks). The paper's COIL-100 protocol uses 15."""
    lr: float = 1e-3
    """Adam learning rate of G and D."""
    beta1: float = 0.5
    """Adam beta1."""
    beta2: float = 0.999
    """Adam beta2."""
    nz: int = 8
    """Length of the latent vector h (chosen by leave-one-class-out on MNIST among 8 and 32; the paper's preset: 100)."""
    noise_std: float = 0.1
    """Std of the Gaussian noise added to the encoder input (denoising AE)."""
    cam_reduction: int = 16
    """Reduction ratio R of the CAM's MLP (hidden width max(C/R, 4))."""
    w_adv: float = 1.0
    """Weight of the adversarial loss L_adv."""
    w_con: float = 50.0
    """Weight of the contextual (L1 reconstruction) loss L_con."""
    w_fea: float = 1.0
    """Weight of the feature-matching loss L_fea."""
    w_inf: float = 1.0
    """Weight of the latent entropy loss L_inf (used by variants entropy and full)."""
    score_lambda: float = 0.0
    """Score A(x) = lambda*L_con(x) + (1-lambda)*L_fea(x) (chosen by leave-one-class-out on MNIST among 0, 0.5, 0.9, 1: the feature error alone; the paper's preset: 0.9)."""
    score_norm: str = "none"
    """Scale of each score component before mixing: none (the paper's eq. 7, raw); val (standardised by its mean and std on the normal validation images); ink (beyond the paper: each divided by the image's own mean intensity in [0, 1], so a thin digit's small error counts as much as an inky one's)."""
    val_fraction: float = 0.15
    """Fraction of the normal training images held out for validation."""
    preprocess: str = "none"
    """Input preprocessing: none (pixels in [-1, 1]); gcn (per-image global contrast normalisation, l1, then min-max into [-1, 1] with constants from the trial's own normal training images, as Deep SVDD's code)."""
    params: Any = None
    """The method's own hyper-parameters: an instance of its MethodSpec.params (built from its defaults when None; a dict of its fields is taken too), None for a method without. Each field is an option, a grid field, a row column and a part of the key by its own name."""

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ConfigError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}")
        if self.variant not in methods.variant_names():
            raise ConfigError(f"unknown variant {self.variant!r}; choose one of {', '.join(methods.variant_names())}")
        for name in ("epochs", "nz", "cam_reduction"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1 (got {getattr(self, name)})")
        if self.batch_size < 2:
            raise ConfigError(f"--batch-size must be >= 2: BatchNorm needs two images a batch (got {self.batch_size})")
        for name in ("lr", "beta1", "beta2", "noise_std", "w_adv", "w_con", "w_fea", "w_inf",
                     "score_lambda", "val_fraction"):
            if not math.isfinite(getattr(self, name)):
                raise ConfigError(f"--{name.replace('_', '-')} must be a finite number (got {getattr(self, name)})")
        if self.lr <= 0:
            raise ConfigError(f"--lr must be > 0 (got {self.lr})")
        if not (0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0):
            raise ConfigError(f"--beta1 and --beta2 must be in [0, 1) (got {self.beta1}, {self.beta2})")
        for name in ("noise_std", "w_adv", "w_con", "w_fea", "w_inf"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0 (got {getattr(self, name)})")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction must be in [0, 1) (got {self.val_fraction})")
        if self.preprocess not in PREPROCESS:
            raise ConfigError(f"unknown preprocess {self.preprocess!r}; choose one of {', '.join(PREPROCESS)}")
        if self.stop not in STOP_RULES:
            raise ConfigError(f"unknown stop rule {self.stop!r}; choose one of {', '.join(STOP_RULES)}")
        reads = methods.spec_for(self.variant).knobs()
        for name, old in LATER_FIELDS.items():  # a later knob its method does not read (e.g. a dae's stop)
            if name not in reads:               # stays at the value every earlier trial had: same key
                object.__setattr__(self, name, old)
        object.__setattr__(self, "params", _method_params(self.variant, self.params))
        if self.score_norm not in SCORE_NORMS:
            raise ConfigError(f"unknown score_norm {self.score_norm!r}; choose one of {', '.join(SCORE_NORMS)}")
        if not 0.0 <= self.score_lambda <= 1.0:
            raise ConfigError(f"--score-lambda must be in [0, 1] (got {self.score_lambda})")

    def flat(self) -> dict[str, Any]:
        """Every field, the method's own hyper-parameters among them by name (the row's columns)."""
        own = dataclasses.asdict(self.params) if self.params is not None else {}
        return {**{name: getattr(self, name) for name in plain_fields()}, **own}

    @classmethod
    def from_flat(cls, values: dict[str, Any], strict: bool = True) -> "TrialConfig":
        """The config of flat `values` (TrialConfig fields and the variant's method's own
        hyper-parameters by name, as a row, a sweep's grid or the command line has them).
        Another method's hyper-parameter is an error when `strict`, else left out (a grid that
        spans methods sets each method's own); a name nobody declares is an error."""
        variant = values.get("variant", cls.variant)
        spec = methods.spec_for(variant) if variant in methods.variant_names() else None  # else __post_init__ says
        own = set(spec.param_names()) if spec else set()
        fields = set(plain_fields())
        unknown = set(values) - trial_fields()
        if unknown:
            raise ConfigError(f"unknown trial field(s) {', '.join(sorted(unknown))}; valid: "
                              f"{', '.join(sorted(trial_fields()))}")
        foreign = set(values) - fields - own
        if foreign and strict:
            raise ConfigError(f"{', '.join(sorted(foreign))}: hyper-parameter(s) of another method than "
                              f"{variant!r}'s ({spec.name if spec else '?'})")
        params = {k: values[k] for k in own if k in values}
        return cls(**{k: v for k, v in values.items() if k in fields}, **({"params": params} if params else {}))

    def _identity(self) -> dict[str, Any]:
        """Every field (`flat`), less those of LATER_FIELDS left at the value earlier trials all had."""
        return {k: v for k, v in self.flat().items() if LATER_FIELDS.get(k, ...) != v}

    def key(self, data: str) -> str:
        """The trial's identity in results folders: a hash of every field (see LATER_FIELDS)
        and of `data`, the fingerprint of the decoded dataset (`ImageSet.fingerprint`)."""
        if not data:
            raise ValueError("a trial's key needs the fingerprint of its data")
        blob = json.dumps({**self._identity(), "data": data}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def run_name(self, data: str) -> str:
        """Readable, deterministic name (CleanRL-style) for logs and folders."""
        return f"{self.dataset}__c{self.normal_class}__{self.variant}__s{self.seed}__{self.key(data)[:8]}"


def _method_params(variant: str, given: Any) -> Any:
    """The `params` of a trial of `variant`: its method's dataclass, from a dict, or its defaults."""
    cls = methods.spec_for(variant).params
    if cls is None:
        if given:
            raise ConfigError(f"variant {variant!r} has no hyper-parameters of its own (got {given!r})")
        return None
    if given is None or isinstance(given, dict):
        try:
            return cls(**(given or {}))
        except TypeError as exc:
            raise ConfigError(f"variant {variant!r}: {exc}") from exc
    if not isinstance(given, cls):
        raise ConfigError(f"variant {variant!r} takes params of type {cls.__name__} (got {type(given).__name__})")
    return given


def plain_fields() -> tuple[str, ...]:
    """TrialConfig's fields less `params` (whose fields count by their own names instead)."""
    return tuple(f.name for f in dataclasses.fields(TrialConfig) if f.name != "params")


def trial_fields() -> set[str]:
    """The names a trial can be configured by: TrialConfig's fields and every registered method's own."""
    return set(plain_fields()) | set(methods.param_columns())


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type when empty), cut to `limit` characters."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]


def default_cache_dir() -> str:
    return os.environ.get("NOVELTY_CACHE", str(Path.home() / ".cache" / "novelty"))


@dataclass(frozen=True)
class RunOptions:
    """Where and how a trial runs. None of these fields changes the trial's key."""

    data_root: str = ""
    """Folder holding the dataset (e.g. /path/to/data); unused by digits."""
    download: bool = False
    """Let torchvision download MNIST / Fashion-MNIST / CIFAR-10 into data_root."""
    cache_dir: str = dataclasses.field(default_factory=default_cache_dir)
    """Folder of decoded datasets cached as tensors (env NOVELTY_CACHE)."""
    results: str = "runs/scratch"
    """Results folder or URI (pyarrow.fs: s3://..., gs://..., file://...): rows/, scores/ and checkpoints/ go there."""
    sweep: str = "cli"
    """Sweep name written in the result row."""
    device: str = "auto"
    """Torch device: auto (cuda if available), cpu, cuda, cuda:1 ..."""
    threads: int = 0
    """Torch CPU threads (0 = torch's default)."""
    checkpoint_dir: str = ""
    """Folder of per-epoch checkpoints (default: <results>/checkpoints/<key> when the results folder is local)."""
    progress: bool = True
    """Show a progress bar per epoch."""
    trace: bool = False
    """Also write trace/<key>.parquet: every epoch's validation losses and ORACLE test AUCs (diagnostic only)."""
    trace_images: int = 2000
    """Test images (a fixed, seeded subset in stored order) the oracle trace scores each epoch (0 = all)."""


# The row's columns beyond the trial's configuration and the methods' own (novelty.trial.run.run_trial
# writes them). With TrialConfig's and RunOptions' fields, the names a method's own hyper-parameter
# may not take (its fields become row columns and options beside these); then the methods that
# installed packages declare (entry-point group novelty.methods) are registered.
RUN_COLUMNS = ("key", "sweep", "run_name", "method", "class_drawn", "auc", "data_root", "data_fingerprint",
               "val_score", "scored_epoch", "d_reinits", "resumed_from_epoch",
               "n_train", "n_val", "n_test", "n_outliers", "train_seconds", "score_seconds", "images_per_second",
               "device", "device_name", "world_size", "threads", "cpu_model", "cpu_capability",
               "ray_node_id", "node_ip", "gpu_ids", "device_note", "torch_version", "package_version",
               "git_commit", "hostname", "started_at", "finished_at", "epochs_run", "traced")
methods.set_taken({f.name for f in dataclasses.fields(TrialConfig)},
                  {*RUN_COLUMNS, *(f.name for f in dataclasses.fields(RunOptions))})
methods.load_entry_points()
