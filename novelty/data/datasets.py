"""The dataset registry: what each dataset is called, how it is read, which protocol splits it,
and whether it needs a data root. Torch-free, so configuration and the CLI consult it without
importing a reader. `novelty.config.DATASETS` is derived from it.

Adding a dataset is a reader (`novelty.data.readers`: its files, and a decoder to uint8 tensors)
and one `register_dataset(DatasetSpec(...))`, here for the built-in ones.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

PROTOCOLS = ("test_split", "holdout")


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset as the registry knows it."""

    name: str
    """Its --dataset name (the rows' `dataset` column)."""
    reader: str
    """"module:function" of its reader: (data root, download) -> (sources, decode)."""
    protocol: str = "test_split"
    """How a trial splits it (docs/design.md §2): test_split, the dataset's own test split with
    every other class as outliers (the paper's MNIST and CIFAR-10); holdout, 80/20 of the normal
    class's images with as many images of other classes drawn as outliers, and a class of -1
    drawn from the seed (the paper's COIL-100)."""
    needs_root: bool = True
    """Whether it is read from --data-root (False: embedded in an installed package)."""

    def load_reader(self):
        module, function = self.reader.split(":")
        return getattr(importlib.import_module(module), function)


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    if spec.protocol not in PROTOCOLS:
        raise ValueError(f"dataset {spec.name!r}: protocol must be one of {', '.join(PROTOCOLS)}")
    if spec.name in _REGISTRY and _REGISTRY[spec.name] != spec:
        raise ValueError(f"dataset {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def dataset_spec(name: str) -> DatasetSpec:
    """The registered dataset `name` (KeyError when none: config and data validate first)."""
    return _REGISTRY[name]


def dataset_names() -> tuple[str, ...]:
    """Every registered dataset, in registration order."""
    return tuple(_REGISTRY)


for _spec in (
    DatasetSpec("digits", "novelty.data.readers:read_digits", needs_root=False),  # scikit-learn's bundled 8x8 digits
    DatasetSpec("mnist", "novelty.data.readers:read_mnist"),  # torchvision's raw layout
    DatasetSpec("fashion_mnist", "novelty.data.readers:read_fashion_mnist"),
    DatasetSpec("cifar10", "novelty.data.readers:read_cifar10"),  # cifar-10-batches-py, or an ImageFolder tree
    DatasetSpec("imagefolder", "novelty.data.readers:read_imagefolder"),  # <root>/{train,test}/<class>/*
    DatasetSpec("coil100", "novelty.data.readers:read_coil100", protocol="holdout"),
):
    register_dataset(_spec)
