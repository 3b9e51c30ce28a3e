"""The import path sweep files use (`from novelty.launch import main`): `novelty.sweep.launch`,
kept here so sweep files written against it run unchanged."""
from .sweep.launch import main  # noqa: F401
