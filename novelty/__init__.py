"""novelty: one-class novelty detection sweeps (Tian et al., MMAsia '20)."""

__version__ = "0.1.0"


def git_commit() -> str:
    """The git commit of this package's source ("" outside a git checkout, or without git)."""
    import subprocess
    from pathlib import Path

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""
