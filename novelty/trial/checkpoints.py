"""Per-epoch checkpoints of a trial: written atomically, read back with weights_only=True
(a checkpoint holds tensors and plain values only, so a planted pickle cannot run code)."""
from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import torch

from ..config import first_line
from ..errors import CheckpointError


def save_checkpoint(state: dict, path: Path) -> None:
    """Atomic: a trial killed while saving keeps its previous checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # full disk, quota, folder gone: leave no partial file
        tmp.unlink(missing_ok=True)
        why = first_line(exc, 160)
        try:
            free = f"{shutil.disk_usage(path.parent).free / 1e6:.1f} MB free there"
        except OSError:
            free = "the folder is not usable"
        raise CheckpointError(f"cannot write the checkpoint {path} ({free}; {why}): free space there, or pass "
                              f"--checkpoint-dir elsewhere") from exc


def load_checkpoint(path: Path, key: str, apply) -> bool:
    """If `path` holds this trial's state (`key`), pass it to `apply` and return True. It is read
    onto the CPU: `load_state_dict` copies weights to the model's device, and Adam's `step`
    counters stay on the CPU as Adam keeps them (on the GPU they would cost a host sync per
    parameter per step after every resume). An
    unreadable file (truncated, empty, foreign, malicious) is set aside with a warning and
    False is returned: the caller trains from a fresh state."""
    if not path.exists():
        return False
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(sd, dict) or sd.get("key") != key:
            return False
        apply(sd)
    except (OSError, RuntimeError, EOFError, KeyError, ValueError, TypeError, AttributeError,
            pickle.UnpicklingError) as exc:
        bad = path.with_name(path.name + ".unreadable")
        os.replace(path, bad)
        why = first_line(exc, 200)
        print(f"novelty: warning: checkpoint {path} is unreadable ({why}); "
              f"moved it to {bad.name} and training this trial from scratch", flush=True)
        return False
    return True
