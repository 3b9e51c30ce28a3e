"""Autoscaling, simulated with Ray's fake multi-node provider (the machinery behind
`ray.cluster_utils.AutoscalingCluster`): a head with 0 CPUs and gpu.yaml's GPU worker type at
min_workers 0; a sweep's pending GPU trials (NOVELTY_GPU_CLUSTER=1, as gpu.yaml sets it) start
worker nodes from zero, and the trials run there.

Not AutoscalingCluster itself: Ray 2.60's wheel lacks the example.yaml it reads, and its start
and shutdown run `ray stop --force`, which ends every Ray on the machine (a background sweep
too). This starts the same head (`ray start --head --autoscaling-config`, RAY_FAKE_CLUSTER=1) in
a temp dir of its own and ends exactly the processes that carry that temp dir."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import ray
import yaml

from novelty.sweep.grid import Sweep, SweepOptions
from novelty.store.results import read_rows
from novelty.sweep.driver import run_sweep

from conftest import REPO, restore_env


def fake_autoscaling_config(gcs_address: str, path: Path = REPO / "cluster" / "gpu.yaml") -> dict:
    """gpu.yaml's node types (head resources, the GPU workers' resources and worker counts) on
    Ray's fake multi-node provider, which starts a worker node as local Ray processes joining the
    head at `gcs_address`."""
    spec = yaml.safe_load(path.read_text())
    types = spec["available_node_types"]
    head = types[spec["head_node_type"]]
    workers = {name: {"resources": {**t["resources"], "object_store_memory": 80 * 1024**2}, "node_config": {},
                      "min_workers": t.get("min_workers", 0), "max_workers": t["max_workers"]}
               for name, t in types.items() if name != spec["head_node_type"]}
    return {
        "cluster_name": "fake-" + spec["cluster_name"], "max_workers": spec["max_workers"],
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True, "gcs_address": gcs_address},
        "available_node_types": {"ray.head.default": {"resources": head["resources"], "node_config": {},
                                                      "max_workers": 0}, **workers},
        "head_node_type": "ray.head.default", "auth": {}, "upscaling_speed": spec.get("upscaling_speed", 1.0),
        "idle_timeout_minutes": spec.get("idle_timeout_minutes", 5), "docker": {},
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
        "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "rsync_exclude": [], "rsync_filter": [],
    }


def _end_processes_of(temp: str) -> None:
    """Kill every process started with RAY_TMPDIR=temp (this head, its monitor, the fake workers)."""
    for p in psutil.process_iter():
        try:
            if p.pid != os.getpid() and p.environ().get("RAY_TMPDIR") == temp:
                p.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass


@pytest.fixture
def autoscaling_head(tmp_path):
    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    address = f"{ray.util.get_node_ip_address()}:{port}"  # where the head's GCS will listen
    config = fake_autoscaling_config(address)
    gpu_type = next(t for t in config["available_node_types"].values() if t["resources"].get("GPU"))
    assert gpu_type["min_workers"] == 0  # the cluster starts with no GPU node
    cfg_file = tmp_path / "autoscaling.json"
    cfg_file.write_text(json.dumps(config))
    temp = tempfile.mkdtemp(prefix="ra", dir="/tmp")  # short: Ray's unix sockets live here
    fake_gpus = ",".join(str(90 + i) for i in range(int(gpu_type["resources"]["GPU"])))  # ids no machine has
    env = {"RAY_TMPDIR": temp, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
           "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": "", "CUDA_VISIBLE_DEVICES": fake_gpus,
           "NOVELTY_GPU_CLUSTER": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    head = config["available_node_types"]["ray.head.default"]["resources"]
    ray_cli = str(Path(sys.executable).parent / "ray")
    try:
        subprocess.run([ray_cli, "start", "--head", f"--autoscaling-config={cfg_file}", f"--port={port}",
                        f"--num-cpus={head.get('CPU', 0)}", f"--num-gpus={head.get('GPU', 0)}",
                        f"--object-store-memory={80 * 1024**2}", "--include-dashboard=false",
                        "--disable-usage-stats"], check=True, capture_output=True, text=True, timeout=120)
        ray.init(address=address, log_to_driver=False)
        yield
    finally:
        ray.shutdown()
        _end_processes_of(temp)
        shutil.rmtree(temp, ignore_errors=True)
        restore_env(saved)


def test_pending_gpu_trials_start_worker_nodes_from_zero(autoscaling_head, tmp_path):
    assert ray.cluster_resources().get("GPU", 0) == 0 and len(ray.nodes()) == 1  # the head alone
    head_id = ray.nodes()[0]["NodeID"]
    results = tmp_path / "res"
    sweep = Sweep(name="autoscaled", grid={"normal_class": range(2)}, fixed={"dataset": "digits", "epochs": 1},
                  cpus_per_trial=1, gpus_per_trial=0.25, max_failures=0)
    started = time.monotonic()
    summary = run_sweep(sweep, SweepOptions(results=str(results), report=False))
    assert summary.ran == 2 and not summary.failed
    alive = [n for n in ray.nodes() if n["Alive"]]
    assert len(alive) >= 2 and ray.cluster_resources().get("GPU", 0) >= 4  # a GPU worker came up
    rows = read_rows(str(results))
    assert len(rows) == 2 and head_id not in set(rows["ray_node_id"])
    assert rows["gpu_ids"].str.fullmatch(r"9\d").all()
    print(f"autoscaled: 2 trials on {rows['ray_node_id'].nunique()} new node(s) in {time.monotonic() - started:.0f}s")
