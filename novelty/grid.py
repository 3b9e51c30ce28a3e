"""The import path sweep files use (`from novelty.grid import Sweep`): `novelty.sweep.grid`,
kept here so sweep files written against it run unchanged."""
from .sweep.grid import *  # noqa: F401,F403
