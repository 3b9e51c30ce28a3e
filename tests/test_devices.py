"""Devices and process groups as a GPU run needs them, checked where a CPU can see them."""
import os

import torch

from novelty.checkpoints import load_checkpoint, save_checkpoint
from novelty.distributed import backend_for, make_deterministic, rank_device


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
    monkeypatch.setattr("novelty.distributed.world", lambda: (5, 8))
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert rank_device(torch.device("cuda")) == torch.device("cuda", 1)
    assert rank_device(torch.device("cpu")) == torch.device("cpu")


def test_checkpoint_is_read_onto_the_cpu(tmp_path):
    """Adam's step counters must stay on the CPU after a resume (on the GPU: a host sync per
    parameter per step); the checkpoint is read onto the CPU whatever device trains."""
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    path = tmp_path / "c.pt"
    save_checkpoint({"key": "k", "opt": opt.state_dict()}, path)
    seen = {}
    assert load_checkpoint(path, "k", lambda sd: seen.update(sd))
    steps = [s["step"] for s in seen["opt"]["state"].values()]
    assert steps and all(t.device.type == "cpu" for t in steps)
    fresh = torch.optim.Adam(net.parameters())
    fresh.load_state_dict(seen["opt"])
    assert all(s["step"].device.type == "cpu" for s in fresh.state.values())


def test_the_suite_trains_on_the_cpu_even_where_a_gpu_is():
    """conftest hides GPUs, so trials at --device auto and the sweep tests (CPU) compare alike;
    GPUs are checked by bench/gpu_check.py."""
    from novelty.distributed import pick_device

    assert os.environ.get("CUDA_VISIBLE_DEVICES") == "" and not torch.cuda.is_available()
    assert pick_device("auto") == torch.device("cpu")
