"""novelty: one-class novelty detection sweeps (Tian et al., MMAsia '20)."""

__version__ = "0.1.0"
