"""torch.distributed set-up for multi-rank trials: under torchrun / srun (env://), or
ranks 1.. started as local processes by a sweep trial that runs rank 0 itself."""
from __future__ import annotations

import os
import socket
from typing import Callable

import torch
import torch.distributed as dist


def backend_for(device: str) -> str:
    """nccl for GPUs, gloo for CPUs."""
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return "nccl" if cuda else "gloo"


def init_from_env(device: str) -> bool:
    """Join the process group torchrun described in the environment; False if single-process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    dist.init_process_group(backend_for(device), init_method="env://")
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(rank: int, world: int, port: int, backend: str, fn: Callable, args: tuple) -> None:
    """Entry point of a rank started as a local process: join the group, run fn(*args)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        fn(*args)
    finally:
        dist.destroy_process_group()
