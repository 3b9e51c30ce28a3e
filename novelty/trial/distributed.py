"""Devices and torch.distributed: picking the device, deterministic kernels, joining a
process group (under torchrun / srun via env://, or ranks 1.. started as local processes by
a sweep trial that runs rank 0 itself), and the collective helpers the training loop and
the methods' steps use (each a no-op on one rank)."""
from __future__ import annotations

import os
import socket
from typing import Callable

import torch
import torch.distributed as dist

from ..config import ConfigError
from ..methods.base import world  # the rank and world size (beside the methods, whose steps sum gradients over ranks)


def pick_device(name: str) -> torch.device:
    """The torch device for `--device`; a device this machine lacks is the user's error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"--device {name!r} is not a torch device (use auto, cpu, cuda or cuda:N)") from exc
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index or 0) >= count:
            raise ConfigError(f"--device {name}: this machine has {count} CUDA device(s); use --device cpu or auto")
    elif device.type != "cpu":
        raise ConfigError(f"--device {name}: only cpu and cuda devices are supported")
    return device


def local_rank() -> int:
    """This process's rank on its node (torchrun and our local ranks set LOCAL_RANK): the GPU it uses."""
    return int(os.environ.get("LOCAL_RANK", world()[0]))


def rank_device(device: torch.device) -> torch.device:
    """The device this rank trains on: on CUDA with several ranks, the node-local rank's GPU
    (`cuda:LOCAL_RANK` among the GPUs visible to the process), never the global rank's."""
    if device.type == "cuda" and world()[1] > 1:
        return torch.device("cuda", local_rank())
    return device


def make_deterministic(device: torch.device) -> None:
    """Deterministic kernels: exact on CPU; on CUDA cuDNN/cuBLAS are pinned, TF32 is off (for
    matmuls and cuDNN convolutions alike), but atomics may still differ between runs."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.allow_tf32 = False  # torch's default is True for convolutions
    torch.backends.cuda.matmul.allow_tf32 = False
    # torch.use_deterministic_algorithms(True, ...) would also import torch._inductor (~2 s in
    # every fresh sweep worker) to set torch.compile's flag; nothing here is compiled.
    torch._C._set_deterministic_algorithms(True, warn_only=device.type != "cpu")


def sync_buffers(module: torch.nn.Module) -> None:
    """Average BatchNorm running statistics so every rank scores with the same model."""
    n = world()[1]
    if n == 1:
        return
    for b in module.buffers():
        if b.dtype.is_floating_point:
            dist.all_reduce(b)
            b.div_(n)


def global_mean(values: torch.Tensor, weight: float) -> torch.Tensor:
    """The global-batch mean of per-rank means, each rank weighted by its share."""
    if world()[1] > 1:
        values = values * weight
        dist.all_reduce(values)
    return values


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


def backend_for(device: str) -> str:
    """gloo for CPUs; on GPUs one group that serves both: nccl for the gradients and BatchNorm
    buffers (on the GPU) and gloo for the per-step loss means, which the methods return on the
    CPU (plain "nccl" rejects a CPU tensor at the first step)."""
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return "cpu:gloo,cuda:nccl" if cuda else "gloo"


def bind_gpu(backend: str) -> None:
    """Before joining a group with nccl: make this rank's GPU the current one (cuda:LOCAL_RANK),
    so NCCL never puts two ranks of a node on GPU 0."""
    if "nccl" in backend:
        torch.cuda.set_device(local_rank())


def init_from_env(device: str) -> bool:
    """Join the process group torchrun described in the environment; False if single-process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    backend = backend_for(device)
    bind_gpu(backend)
    dist.init_process_group(backend, init_method="env://")
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(rank: int, world_size: int, port: int, backend: str, fn: Callable, args: tuple) -> None:
    """Entry point of a rank started as a local process: join the group, run fn(*args)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size))
    bind_gpu(backend)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        fn(*args)
    finally:
        dist.destroy_process_group()
