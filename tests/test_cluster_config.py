"""The Ray cluster-launcher YAMLs are valid for the Ray that is installed.

`ray up` runs prepare_config (merge the provider's defaults, node types) and then
validate_config (Ray's JSON schema); both must accept the files as written.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytest.importorskip("jsonschema")
from ray.autoscaler._private.util import prepare_config, validate_config  # noqa: E402

CLUSTER = Path(__file__).resolve().parent.parent / "cluster"


def _prepared(name: str) -> dict:
    with open(CLUSTER / name) as fh:
        config = yaml.safe_load(fh)
    prepared = prepare_config(config)
    validate_config(prepared)
    return prepared


def _setup_text(config: dict) -> str:
    # prepare_config prepends setup_commands to head_ and worker_setup_commands
    return "\n".join(config["setup_commands"])


@pytest.mark.parametrize("name", ["gpu.yaml", "local.yaml"])
def test_config_is_valid_and_installs_the_package(name):
    config = _prepared(name)
    # `ray submit` copies only the sweep file (to ~/): the package comes from these. The
    # source must not sit at ~/novelty, beside the sweep file, or it shadows the package.
    assert config["file_mounts"]["~/novelty-src"] == "."
    assert "~/novelty" not in config["file_mounts"]
    assert "pip install -q ~/novelty-src" in _setup_text(config)
    # Results: one shared place, set once.
    assert _setup_text(config).count("NOVELTY_RESULTS=") == 1
    # The dashboard listens on the head's localhost only (reach it with `ray dashboard`).
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    # Token auth on every node: the same token file, and the mode in the environment.
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert "RAY_AUTH_MODE=token" in _setup_text(config)


def test_gpu_config_autoscales_four_gpu_workers():
    config = _prepared("gpu.yaml")
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert any(t["resources"].get("GPU", 0) >= 4 and t["max_workers"] > t["min_workers"] for t in workers)


def test_local_config_lists_its_machines():
    config = _prepared("local.yaml")
    assert config["provider"]["type"] == "local"
    assert config["provider"]["head_ip"] and isinstance(config["provider"]["worker_ips"], list)


def test_results_default_comes_from_novelty_results(monkeypatch):
    """The YAMLs' setup_commands export NOVELTY_RESULTS: the one place results go."""
    from novelty.grid import Sweep, SweepOptions

    sweep = Sweep(name="x")
    monkeypatch.delenv("NOVELTY_RESULTS", raising=False)
    assert SweepOptions().results_uri(sweep) == "runs/x"  # git-ignored: never a committed set
    monkeypatch.setenv("NOVELTY_RESULTS", "s3://bucket/novelty")
    assert SweepOptions().results_uri(sweep) == "s3://bucket/novelty"
    assert SweepOptions(results="/nfs/r").results_uri(sweep) == "/nfs/r"  # --results wins
