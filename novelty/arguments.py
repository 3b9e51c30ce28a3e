"""The command line built from the configuration's dataclasses: one `--field-name` option per
field, its `--help` the docstring under the field (`field_docs`), each registered method's own
knobs as an option group, and the small argparse pieces the commands share (deprecated
spellings, options a command refuses, the results folder). Used by `novelty.cli` and the sweep
files' command line (`novelty.sweep.launch`)."""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import sys
import textwrap
from typing import Any, get_type_hints

from . import methods
from .config import DATASETS, PREPROCESS, SCORE_NORMS, STOP_RULES, ConfigError


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for prev, node in zip(body, body[1:]):
        if (isinstance(prev, ast.AnnAssign) and isinstance(prev.target, ast.Name)
                and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            docs[prev.target.id] = str(node.value.value)
    return docs


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (),
                       title: str = "") -> None:
    """Add one `--field-name` option per field of `cls`, documented by its docstring."""
    docs, hints = field_docs(cls), get_type_hints(cls)
    group = parser.add_argument_group(title or cls.__name__, (cls.__doc__ or "").strip())
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        kind = hints[f.name]
        help_ = f"{docs.get(f.name, '')} (default: {default})"
        if kind is bool:
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=help_)
        else:
            choices = {"dataset": DATASETS, "variant": methods.variant_names(), "score_norm": SCORE_NORMS, "stop": STOP_RULES,
                       "preprocess": PREPROCESS}.get(f.name)
            kind = str if f.name == "normal_class" else kind  # a number, or a class folder's name
            group.add_argument(flag, dest=f.name, type=kind, choices=choices,
                               default=argparse.SUPPRESS, help=help_)


def add_method_args(parser: argparse.ArgumentParser) -> None:
    """One option group per registered method with hyper-parameters of its own."""
    for spec in methods.specs():
        if spec.params is not None:
            add_dataclass_args(parser, spec.params, title=f"{spec.name} ({', '.join(spec.variants)}): {spec.params.__name__}")


class DeprecatedAlias(argparse.Action):
    """An old spelling of an option, hidden from --help: it sets the new option's value and prints
    a one-line note naming the new spelling (`novelty train --out X` -> --results X)."""

    def __init__(self, option_strings, dest, new: str, **kw):
        self.new = new
        kw.setdefault("default", argparse.SUPPRESS)
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"novelty: note: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


class Refused(argparse.Action):
    """An option that exists elsewhere but that this command would ignore: refused, in one line
    that names it and says why (`novelty array-task --ray-address`)."""

    def __init__(self, option_strings, dest, why: str, **kw):
        self.why = why
        super().__init__(option_strings, dest, nargs="?", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} does not apply here: {self.why}")


def refuse_dataclass_args(parser: argparse.ArgumentParser, cls: type, names: tuple[str, ...], why: str) -> None:
    """Refuse the `--field-name` options of `cls`'s fields `names` (and --no-field-name of a bool)."""
    hints = get_type_hints(cls)
    for name in names:
        flag = "--" + name.replace("_", "-")
        flags = [flag, "--no-" + flag[2:]] if hints[name] is bool else [flag]
        parser.add_argument(*flags, dest=f"_refused_{name}", action=Refused, why=why)


def add_results_arg(parser: argparse.ArgumentParser, what: str) -> None:
    """--results of a command that reads a results folder (report, compact); the positional
    RESULTS_DIR of old is still taken, hidden, with a note (see `results_folder`)."""
    parser.add_argument("--results", default="",
                        help=f"results folder or URI {what} (the --results of train and sweep)")
    parser.add_argument("results_dir", nargs="?", default="", help=argparse.SUPPRESS)  # deprecated: --results


def results_folder(ns: argparse.Namespace, command: str) -> str:
    """The folder `add_results_arg` read: --results, or a positional one with a one-line note."""
    old, new = getattr(ns, "results_dir", ""), getattr(ns, "results", "")
    if old:
        print("novelty: note: a positional RESULTS_DIR is deprecated; use --results RESULTS_DIR", file=sys.stderr)
        if new and new != old:
            raise ConfigError(f"two results folders given ({old} and --results {new}); give --results only")
    if not (new or old):
        raise ConfigError(f"novelty {command} needs the results folder: --results DIR (e.g. --results runs/digits)")
    return new or old


def from_namespace(cls: type, ns: argparse.Namespace | dict[str, Any], **overrides: Any):
    """Build `cls` from the options given on the command line (others keep defaults)."""
    values = vars(ns) if isinstance(ns, argparse.Namespace) else dict(ns)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in values.items() if k in names}
    kwargs.update(overrides)
    return cls(**kwargs)
