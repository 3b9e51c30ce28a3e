"""The method registry: what each method is called, which knobs it reads, which row
columns it writes, and where its implementation lives. Torch-free, so configuration,
sweeps and the report consult it without importing a network.

A method is one module holding one `Method` subclass (`novelty.methods.base`): it builds
its state from a TrialConfig, takes one optimisation step (or one fit, for a pixel method),
returns per-image score components and gives its state dict; the one training loop
(`novelty.trial.loop`) does the rest. Adding a method is that module plus one `register(...)`:
here for the built-in ones, or anywhere (a test file, a user's package) for others:

    @dataclass(frozen=True)
    class MineParams:          # (a docstring under each field: its --help text)
        mine_alpha: float = 0.5

    register(MethodSpec(name="mine", variants=("mine",), reads=("epochs", "lr"),
                        impl="mypackage.mine:MyMethod", params=MineParams))

A method's own hyper-parameters (`params`) are options of `novelty train`, fields a sweep's
grid and fixed may set, columns of its rows and parts of its trials' keys, by their own names
(`cfg.params.mine_alpha` in the method). An installed package adds methods without any
import by the user through the entry-point group `novelty.methods`, each entry naming a
MethodSpec (keep that module torch-free: `impl` as a "module:Class" string):

    [project.entry-points."novelty.methods"]
    mine = "mypackage.spec:MINE"
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import sys
from dataclasses import dataclass
from typing import Any

from .params import DeepSVDDParams, TransformsParams

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
    """The label of its per-class row in paper_tables.csv, if it has one: the paper's tables 1-3 ("paper: ..."), or
    another paper's numbers on the same protocol (table 0, "published: ...")."""
    display: str = ""
    """How the report names it ("ours: DAE"); the variant's own name when empty."""
    score_param: str = ""
    """Its own hyper-parameter whose value names the score component (transforms' tf_score), if
    any: `novelty report --score-rules` re-scores its trials by each component, from the stored ones."""
    params: Any = None
    """A frozen dataclass of its own hyper-parameters (a docstring under each field), or None:
    the trial's `cfg.params` is one of them; its fields are options, grid fields, row columns
    and key parts by their own names, so no two methods may declare one name."""

    def param_names(self) -> tuple[str, ...]:
        """The names of its own hyper-parameters (its `params` dataclass's fields)."""
        return tuple(f.name for f in dataclasses.fields(self.params)) if self.params is not None else ()

    def knobs(self) -> set[str]:
        """Every field its trials' results depend on: the common ones, `reads` and its own."""
        return {*COMMON_FIELDS, *self.reads, *self.param_names()}

    def load(self) -> type:
        if isinstance(self.impl, str):
            module, cls = self.impl.split(":")
            return getattr(importlib.import_module(module), cls)
        return self.impl


_REGISTRY: dict[str, MethodSpec] = {}
_FROM_ENTRY_POINTS: set[str] = set()  # variants an installed package's entry point registered
# The TrialConfig fields, and the row's other columns a method's own hyper-parameter must not
# shadow; set by novelty.config once TrialConfig exists (it imports this module).
_TAKEN: dict[str, frozenset[str]] = {}


def _check(spec: MethodSpec) -> None:
    """Refuse a spec whose `reads` names no TrialConfig field, or whose `params` is not a frozen
    dataclass or declares a name TrialConfig, the row or another method already has."""
    if spec.params is not None and not (dataclasses.is_dataclass(spec.params) and isinstance(spec.params, type)
                                        and spec.params.__dataclass_params__.frozen):  # type: ignore[attr-defined]
        raise ValueError(f"method {spec.name!r}: params must be a frozen dataclass (got {spec.params!r})")
    if not _TAKEN:
        return  # a built-in registered while novelty.config loads: it checks them all when it is done
    unknown = set(spec.reads) - _TAKEN["trial"]
    if unknown:
        raise ValueError(f"method {spec.name!r} reads {', '.join(sorted(unknown))}: not TrialConfig field(s); "
                         f"its own hyper-parameters belong in its params dataclass")
    others = {n: s.name for s in specs() if s.name != spec.name for n in s.param_names()}
    for name in spec.param_names():
        if name in _TAKEN["trial"] or name in _TAKEN["row"]:
            raise ValueError(f"method {spec.name!r}: hyper-parameter {name!r} is already a TrialConfig field or a "
                             f"row column; give it a name of its own (e.g. {spec.name}_{name})")
        if name in others:
            raise ValueError(f"method {spec.name!r}: hyper-parameter {name!r} is already method {others[name]!r}'s; "
                             f"give it a name of its own (e.g. {spec.name}_{name})")


def set_taken(trial_fields: set[str], row_columns: set[str]) -> None:
    """Called by novelty.config: the names a method's own hyper-parameter may not take. Checks
    the methods registered before it was known."""
    _TAKEN.update(trial=frozenset(trial_fields), row=frozenset(row_columns))
    for spec in specs():
        _check(spec)


def register(spec: MethodSpec) -> MethodSpec:
    """Make `spec`'s variants valid everywhere (config, CLI, sweeps, report)."""
    for variant in spec.variants:
        if variant in _REGISTRY and _REGISTRY[variant] != spec:
            raise ValueError(f"variant {variant!r} is already registered by method {_REGISTRY[variant].name!r}")
    _check(spec)
    for variant in spec.variants:
        _REGISTRY[variant] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a method's variants from the registry (tests that register one clean up with it)."""
    for variant in [v for v, s in _REGISTRY.items() if s.name == name]:
        del _REGISTRY[variant]
        _FROM_ENTRY_POINTS.discard(variant)


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
    """The methods registered from outside this package by code (a test file, a script), which
    a sweep ships to its workers. Those of an installed package's entry point are not among them:
    each worker's own `import novelty.methods` registers them."""
    return tuple(s for s in specs() if not (isinstance(s.impl, str) and s.impl.startswith("novelty.methods."))
                 and not set(s.variants) & _FROM_ENTRY_POINTS)


def param_columns() -> tuple[str, ...]:
    """Every registered method's own hyper-parameters (row columns; NaN in other methods' rows)."""
    return tuple(n for s in specs() for n in s.param_names())


def param_types() -> dict[str, type]:
    """Every registered method's own hyper-parameters and their declared types (int, float, str,
    bool): the row's column types, whichever method wrote the row (null in other methods' rows)."""
    from typing import get_type_hints
    return {n: t for s in specs() if s.params is not None for n, t in get_type_hints(s.params).items()}


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
# Beyond the paper's tables: methods that work on natural images (novelty/methods/transforms.py,
# deepsvdd.py); their own knobs in novelty/methods/params.py (torch-free).
register(MethodSpec(name="transforms", variants=("transforms",), impl="novelty.methods.transforms:Transforms",
                    reads=("epochs", "batch_size"), params=TransformsParams, score_param="tf_score",
                    columns=("val_tf_loss", "val_tf_acc", "final_loss_tf"),
                    components=("nll", "dirichlet", "pmean", "wrong"), display="ours: transforms",
                    paper_label="published: GEOM (Golan & El-Yaniv 2018)"))
register(MethodSpec(name="deepsvdd", variants=("deepsvdd",), impl="novelty.methods.deepsvdd:DeepSVDD",
                    reads=("epochs", "batch_size"), params=DeepSVDDParams,
                    columns=("val_svdd_dist", "svdd_radius", "final_loss_svdd"), display="ours: Deep SVDD",
                    paper_label="published: Deep SVDD (Ruff et al. 2018)"))


# ---------------------------------------------------------------- methods of installed packages

ENTRY_POINT_GROUP = "novelty.methods"


def load_entry_points() -> None:
    """Register the MethodSpec (or tuple of them) each `novelty.methods` entry point names. A
    broken entry point costs its own methods only: one line on stderr names it and why."""
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            found = ep.load()
            for spec in found if isinstance(found, (tuple, list)) else (found,):
                if not isinstance(spec, MethodSpec):
                    raise TypeError(f"it names a {type(spec).__name__}, not a novelty.methods.MethodSpec")
                register(spec)
                _FROM_ENTRY_POINTS.update(spec.variants)
        except Exception as exc:  # noqa: BLE001 (any error of someone else's package; named, then skipped)
            print(f"novelty: warning: the method entry point {ep.name} = {ep.value} "
                  f"({ep.dist.name if ep.dist else '?'}) was not loaded: {type(exc).__name__}: {exc}", file=sys.stderr)
