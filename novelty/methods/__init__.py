"""The method registry: what each method is called, which knobs it reads, which row
columns it writes, and where its implementation lives. Torch-free, so configuration,
sweeps and the report consult it without importing a network.

A method is one module holding one `Method` subclass (`novelty.methods.base`): it builds
its state from a TrialConfig, takes one optimisation step (or one fit, for a pixel method),
returns per-image score components and gives its state dict; the one training loop
(`novelty.loop`) does the rest. Adding a method is that module plus one `register(...)`:
here for the built-in ones, or anywhere (a test file, a user's package) for others:

    register(MethodSpec(name="mine", variants=("mine",), reads=("epochs", "lr"),
                        impl=MyMethod))   # or impl="mypackage.mine:MyMethod"
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

# Knobs every method runs under: the trial reads them (data, split, seed, preprocessing),
# whatever the method, so they always belong to its label and key.
COMMON_FIELDS = ("dataset", "normal_class", "seed", "variant", "val_fraction", "preprocess")
TRAINING_FIELDS = ("epochs", "batch_size", "lr", "beta1", "beta2", "nz", "noise_std")


@dataclass(frozen=True)
class MethodSpec:
    """One method as the registry knows it."""

    name: str
    """The method's name: the row's `method` column."""
    variants: tuple[str, ...]
    """The --variant values it serves (the paper's method serves base, entropy, cam, full)."""
    reads: tuple[str, ...]
    """TrialConfig fields it reads beyond COMMON_FIELDS; the others are left out of its label
    (and a later-added field it does not read is held at its old value, keeping old keys)."""
    impl: Any
    """The Method subclass, or "module:Class" imported when a trial runs."""
    columns: tuple[str, ...] = ()
    """Row columns of its own (NaN in other methods' rows; every row has every registered column)."""
    components: tuple[str, ...] = ("score",)
    """Names of its per-image score components (the scores file's c_<name> columns)."""
    paper_label: str = ""
    """The label of its row in the paper's tables 1-3 (paper_tables.csv), if it has one per class."""
    display: str = ""
    """How the report names it ("ours: DAE"); the variant's own name when empty."""

    def load(self) -> type:
        if isinstance(self.impl, str):
            module, cls = self.impl.split(":")
            return getattr(importlib.import_module(module), cls)
        return self.impl


_REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    """Make `spec`'s variants valid everywhere (config, CLI, sweeps, report)."""
    for variant in spec.variants:
        if variant in _REGISTRY and _REGISTRY[variant] != spec:
            raise ValueError(f"variant {variant!r} is already registered by method {_REGISTRY[variant].name!r}")
    for variant in spec.variants:
        _REGISTRY[variant] = spec
    return spec


def spec_for(variant: str) -> MethodSpec:
    """The method serving `variant` (KeyError when none does: config validates first)."""
    return _REGISTRY[variant]


def variant_names() -> tuple[str, ...]:
    """Every registered variant, in registration order."""
    return tuple(_REGISTRY)


def specs() -> list[MethodSpec]:
    """Every registered method once, in registration order."""
    return list(dict.fromkeys(_REGISTRY.values()))


def plugins() -> tuple[MethodSpec, ...]:
    """The methods registered from outside this package (a sweep ships them to its workers)."""
    return tuple(s for s in specs() if not (isinstance(s.impl, str) and s.impl.startswith("novelty.methods.")))


def method_columns() -> tuple[str, ...]:
    """The union of the registered methods' row columns, in registration order."""
    return tuple(dict.fromkeys(c for s in specs() for c in s.columns))


def component_names() -> tuple[str, ...]:
    """The union of the registered methods' score components."""
    return tuple(dict.fromkeys(c for s in specs() for c in s.components))


# ---------------------------------------------------------------- the built-in methods

VARIANTS = ("base", "entropy", "cam", "full")  # the paper's table 4, completed (cam: its missing cell)
TIAN2020 = register(MethodSpec(
    name="tian2020", variants=VARIANTS, impl="novelty.methods.tian2020:Tian2020",
    reads=(*TRAINING_FIELDS, "stop", "cam_reduction", "w_adv", "w_con", "w_fea", "w_inf",
           "score_lambda", "score_norm"),
    columns=("val_loss_con", "val_loss_fea",
             *(f"val_{c}_{s}" for c in ("con", "fea", "lat") for s in ("mean", "std")),
             "final_loss_d", "final_loss_g", "final_loss_con", "final_loss_fea", "final_loss_inf"),
    components=("con", "fea", "lat", "ink"), paper_label="paper: full (Tian et al.)"))
for _name, _display in (("dae", "DAE"), ("vae", "VAE")):
    register(MethodSpec(name=_name, variants=(_name,), impl=f"novelty.methods.autoencoders:{_display}",
                        reads=TRAINING_FIELDS, columns=("final_loss",),
                        paper_label=f"paper: {_display}", display=f"ours: {_display}"))
register(MethodSpec(name="ocsvm", variants=("ocsvm",), impl="novelty.methods.pixels:OCSVM", reads=(),
                    columns=("ocsvm_nu",), paper_label="paper: OCSVM", display="ours: OCSVM"))
register(MethodSpec(name="kde", variants=("kde",), impl="novelty.methods.pixels:KDE", reads=(),
                    columns=("kde_bandwidth",), paper_label="paper: KDE", display="ours: KDE"))
