"""Devices and process groups as a GPU run needs them, checked where a CPU can see them."""
import os

import pytest
import torch

from novelty.trial.checkpoints import load_checkpoint, save_checkpoint
from novelty.trial.distributed import backend_for, make_deterministic, rank_device


def test_deterministic_turns_tf32_off():
    torch.backends.cudnn.allow_tf32 = True  # torch's default for convolutions
    torch.backends.cuda.matmul.allow_tf32 = True
    make_deterministic(torch.device("cpu"))
    assert torch.backends.cudnn.allow_tf32 is False and torch.backends.cuda.matmul.allow_tf32 is False
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark


def test_gpu_backend_also_serves_cpu_tensors():
    """The methods' per-step losses are CPU tensors: plain nccl would reject them at step 1."""
    per_device = dict(part.split(":") for part in backend_for("cuda").split(","))
    assert per_device == {"cpu": "gloo", "cuda": "nccl"}
    assert backend_for("cpu") == "gloo"


def test_each_rank_uses_its_node_local_gpu(monkeypatch):
    """Global rank 5 of 8 on its node's second GPU: cuda:LOCAL_RANK, not cuda:5 % n."""
    monkeypatch.setattr("novelty.trial.distributed.world", lambda: (5, 8))
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert rank_device(torch.device("cuda")) == torch.device("cuda", 1)
    assert rank_device(torch.device("cpu")) == torch.device("cpu")


def test_checkpoint_is_read_onto_the_cpu(tmp_path, monkeypatch):
    """A checkpoint written on a GPU (its tensors tagged cuda:0) is read onto the CPU, whatever device
    trains (Adam's step counters must stay there: on the GPU, a host sync per parameter per step).
    Here the file claims cuda:0 (torch's location tag, set while saving), which a CUDA-less machine
    can only read with map_location="cpu": without it, the resume would be lost."""
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    path = tmp_path / "c.pt"
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        save_checkpoint({"key": "k", "opt": opt.state_dict(), "net": net.state_dict()}, path)
    with pytest.raises(RuntimeError, match="CUDA"):  # the file really is a GPU checkpoint
        torch.load(path, weights_only=True)
    seen = {}
    assert load_checkpoint(path, "k", lambda sd: seen.update(sd)) and path.exists()  # not set aside
    steps = [s["step"] for s in seen["opt"]["state"].values()]
    assert steps and all(t.device.type == "cpu" for t in steps)
    assert torch.equal(seen["net"]["weight"], net.weight.detach())


def _record_cuda_binding(monkeypatch) -> list:
    """torch.cuda.set_device and the process group's start recorded in order (no GPU, no group)."""
    calls: list = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", d)))
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda backend, **kw: calls.append(("init", backend)))
    monkeypatch.setattr(torch.distributed, "destroy_process_group", lambda: calls.append(("destroy",)))
    return calls


def test_a_torchrun_rank_binds_its_node_local_gpu_before_joining(monkeypatch):
    """Rank 5 of 8, second GPU of its node: cuda:1 is made current before NCCL starts (else NCCL
    puts every rank of the node on GPU 0); a CPU group binds nothing."""
    from novelty.trial.distributed import init_from_env

    calls = _record_cuda_binding(monkeypatch)
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert init_from_env("cuda")
    assert calls == [("set_device", 1), ("init", "cpu:gloo,cuda:nccl")]
    calls.clear()
    assert init_from_env("cpu") and calls == [("init", "gloo")]


def test_a_rank_the_sweep_starts_binds_its_gpu_before_joining(monkeypatch):
    from novelty.trial.distributed import rank_main

    calls = _record_cuda_binding(monkeypatch)
    for var in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.setenv(var, "")  # rank_main sets them: restored after the test
    rank_main(1, 2, 12345, "cpu:gloo,cuda:nccl", lambda: calls.append(("trial",)), ())
    assert calls == [("set_device", 1), ("init", "cpu:gloo,cuda:nccl"), ("trial",), ("destroy",)]


def test_the_suite_trains_on_the_cpu_even_where_a_gpu_is():
    """conftest hides GPUs, so trials at --device auto and the sweep tests (CPU) compare alike;
    GPUs are checked by bench/gpu_check.py."""
    from novelty.trial.distributed import pick_device

    assert os.environ.get("CUDA_VISIBLE_DEVICES") == "" and not torch.cuda.is_available()
    assert pick_device("auto") == torch.device("cpu")
