"""The Ray cluster-launcher YAMLs are valid for the Ray that is installed.

`ray up` runs prepare_config (merge the provider's defaults, node types) and then
validate_config (Ray's JSON schema); both must accept the files as written. The
documented `ray submit` commands parse, the AWS head may start the workers once the
documented IAM grant is made, and the GPU workers get the pinned torch.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

import jsonschema  # noqa: F401 (Ray's validate_config needs it: a dependency of ray, so never skipped)
from ray.autoscaler._private.util import prepare_config, validate_config

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
    # the committed result sets (~340 MB) and local runs are not copied to every node
    assert {"results", "runs", ".venv"} <= set(yaml.safe_load((CLUSTER / name).read_text())["rsync_exclude"])
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
    from novelty.sweep.grid import Sweep, SweepOptions

    sweep = Sweep(name="x")
    monkeypatch.delenv("NOVELTY_RESULTS", raising=False)
    assert SweepOptions().results_uri(sweep) == "runs/x"  # git-ignored: never a committed set
    monkeypatch.setenv("NOVELTY_RESULTS", "s3://bucket/novelty")
    assert SweepOptions().results_uri(sweep) == "s3://bucket/novelty"
    assert SweepOptions(results="/nfs/r").results_uri(sweep) == "/nfs/r"  # --results wins


# ------------------------------------------------------------------ the documented cloud command


def _submit_lines() -> list[tuple[str, str]]:
    """Every documented `ray submit` command: (file, line), from cluster/README.md, the YAML headers
    and the sweep files' docstrings."""
    found = []
    for path in (CLUSTER / "README.md", CLUSTER / "gpu.yaml", CLUSTER / "local.yaml",
                 *sorted((CLUSTER.parent / "sweeps").glob("*.py"))):
        for line in path.read_text().splitlines():
            line = line.lstrip("#").strip()
            if line.startswith("ray submit "):
                found.append((path.name, line.split("  #")[0].strip()))
    return found


def test_documented_submit_commands_parse(monkeypatch, tmp_path):
    """Each `ray submit` line, split as a shell would and parsed by Ray's own `ray submit` and then
    by the sweep file's own parser: the options exist, and a `~` is quoted (the local shell would
    expand it to a home folder the cluster's nodes do not have); one that reaches the sweep goes to
    the trials unexpanded, for each node to expand to its own home (tests/test_cluster_sim.py)."""
    from ray.scripts.scripts import submit

    from novelty.sweep.grid import SweepOptions, load_sweep
    from novelty.sweep.launch import sweep_parser

    lines = _submit_lines()
    assert ("ablation.py", "ray submit cluster/gpu.yaml sweeps/ablation.py -- --data-root '~/data' --download") in lines
    assert ("gpu.yaml", "ray submit cluster/gpu.yaml sweeps/cifar10.py -- --data-root '~/data' --download") in lines
    monkeypatch.setenv("HOME", str(tmp_path))
    for where, line in lines:
        words = shlex.split(line)
        for word in words:
            assert not word.startswith("~") or f"'{word}'" in line or f'"{word}"' in line, (where, line)
        params = submit.make_context("ray submit", words[2:]).params
        sweep = load_sweep(str(CLUSTER.parent / params["script"]))
        ns = sweep_parser(sweep).parse_args(list(params["script_args"]))
        opts = SweepOptions(**vars(ns))
        run = opts.run_options(sweep)
        if opts.data_root.startswith("~"):
            assert run.data_root == opts.data_root  # not the driver's home: each node's
            assert os.path.expanduser(run.data_root) == str(tmp_path / opts.data_root[2:])
        if "--download" in line:
            assert opts.download and run.download


# ------------------------------------------------------------------ IAM: the head passes a role to the workers


def _allows(statements: list[dict], action: str, resource: str) -> bool:
    """Whether an unconditional Allow statement covers `action` on `resource` (IAM's wildcards)."""
    from fnmatch import fnmatch, fnmatchcase

    as_list = lambda v: v if isinstance(v, list) else [v]  # noqa: E731
    return any(s["Effect"] == "Allow" and "Condition" not in s
               and any(fnmatch(action.lower(), a.lower()) for a in as_list(s["Action"]))
               and any(fnmatchcase(resource, r) for r in as_list(s["Resource"])) for s in statements)


def _role_statements(iam, role: str) -> list[dict]:
    out = []
    for attached in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
        version = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]["DefaultVersionId"]
        doc = iam.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=version)["PolicyVersion"]["Document"]
        out += doc["Statement"]
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        out += iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]["Statement"]
    return out


def test_default_head_role_cannot_pass_the_worker_role_until_granted(monkeypatch):
    """Ray's own AWS provider code makes the head's default role (against moto's copy of AWS's
    managed policies): EC2 and S3 full access, no iam:PassRole, which the head needs to start the
    workers of gpu.yaml with their instance profile. The grant cluster/README.md gives adds it."""
    import boto3
    import ray.autoscaler._private.aws.config as aws_config
    from moto import mock_aws

    for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-west-2", "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setattr(aws_config, "time", types.SimpleNamespace(sleep=lambda s: None))  # IAM propagation waits
    config = _prepared("gpu.yaml")
    nodes, head = config["available_node_types"], config["head_node_type"]
    assert "IamInstanceProfile" not in nodes[head]["node_config"]  # so Ray gives the head its default profile
    workers = {t["node_config"]["IamInstanceProfile"]["Name"] for name, t in nodes.items() if name != head}
    assert workers == {aws_config.DEFAULT_RAY_INSTANCE_PROFILE}

    with mock_aws():
        config["head_node"] = {}  # as bootstrap_aws does before _configure_iam_role
        aws_config._configure_iam_role(config)
        iam = boto3.client("iam", region_name="us-west-2")
        profile = iam.get_instance_profile(InstanceProfileName=aws_config.DEFAULT_RAY_INSTANCE_PROFILE)
        assert config["head_node"]["IamInstanceProfile"]["Arn"] == profile["InstanceProfile"]["Arn"]
        role = profile["InstanceProfile"]["Roles"][0]
        listed = iam.list_attached_role_policies(RoleName=role["RoleName"])["AttachedPolicies"]
        attached = {p["PolicyName"] for p in listed}
        assert attached == {"AmazonEC2FullAccess", "AmazonS3FullAccess"}
        assert _allows(_role_statements(iam, role["RoleName"]), "ec2:RunInstances", "*")
        assert not _allows(_role_statements(iam, role["RoleName"]), "iam:PassRole", role["Arn"])

        readme = (CLUSTER / "README.md").read_text()
        account = role["Arn"].split(":")[4]
        command = readme.split("aws iam put-role-policy", 1)[1].split("```", 1)[0].replace("\\\n", " ")
        words = shlex.split(command.replace("$ACCOUNT", account))
        given = dict(zip(words[::2], words[1::2]))
        iam.put_role_policy(RoleName=given["--role-name"], PolicyName=given["--policy-name"],
                            PolicyDocument=given["--policy-document"])
        statements = _role_statements(iam, role["RoleName"])
        assert _allows(statements, "iam:PassRole", role["Arn"])
        assert not _allows(statements, "iam:PassRole", role["Arn"].replace("ray-autoscaler-v1", "admin"))


# ------------------------------------------------------------------ torch on the GPU workers


def test_gpu_workers_install_the_pinned_torch_and_refuse_to_run_without_a_gpu():
    """The YAML installs the torch and torchvision the project pins (pyproject's upper bounds,
    the Makefile's builds), and a worker whose torch sees no GPU fails its setup in one line."""
    config = _prepared("gpu.yaml")
    setup = _setup_text(config)
    pyproject = (CLUSTER.parent / "pyproject.toml").read_text()
    makefile = (CLUSTER.parent / "Makefile").read_text()
    for pkg in ("torch", "torchvision"):
        pinned = re.search(rf'"{pkg}>=[^,]+,<=([0-9.]+)"', pyproject).group(1)
        assert f'"{pkg}=={pinned}"' in setup and f"{pkg}=={pinned}" in makefile, pkg
    checks = [c for c in config["worker_setup_commands"] if "cuda.is_available" in c]
    assert len(checks) == 1
    command = checks[0].replace("~/venv/bin/python", sys.executable)
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 1 and "sees no GPU on this worker" in done.stderr
