"""A multi-node GPU cluster simulated with Ray's own machinery (`ray.cluster_utils.Cluster`), its
node types read from cluster/gpu.yaml, results on S3 (moto's S3 server, the real pyarrow
S3FileSystem, Ray Tune): trials pack on (fake) GPUs, run on the workers and never on the head,
a DDP trial gets two GPUs of one node, a lost worker's trials resume elsewhere from the
checkpoints they handed to Tune, a failed trial is retried from its checkpoint, and the documented
cloud command's trials read the data in their own node's home.

Ray's GPUs here are logical: torch sees no CUDA, so each trial trains on the CPU, keeps Ray's
assignment and says so in its row. (`AutoscalingCluster`, the fake autoscaler, is not used: its
start runs `ray stop --force`, which ends every Ray on the machine.)"""
import os
import pickle
import shlex
import shutil
import tempfile
import threading
import time
from pathlib import Path

import boto3
import moto.server as moto_server
import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pytest
import ray
import yaml
from ray.cluster_utils import Cluster

from novelty.config import RunOptions
from novelty.data.load import load_imageset
from novelty.sweep.grid import Sweep, SweepOptions, load_sweep
from novelty.sweep.launch import sweep_parser
from novelty.report.write import write_report
from novelty.store.results import open_store, read_rows, read_scores
from novelty.sweep.driver import run_sweep
from novelty.trial.run import run_trial

from conftest import REPO, restore_env, digits_fingerprint

BUCKET = "novelty-test"
FLAKY = Sweep(name="flaky-s3", grid={"normal_class": [1], "variant": ["flaky"]},  # tests/conftest.py
              fixed={"dataset": "digits", "epochs": 2}, max_failures=1)


def node_types(path: Path = REPO / "cluster" / "gpu.yaml") -> tuple[dict, dict]:
    """(head, GPU worker) node types of a cluster launcher file."""
    spec = yaml.safe_load(path.read_text())
    types = spec["available_node_types"]
    head = types[spec["head_node_type"]]
    worker = next(t for name, t in types.items() if name != spec["head_node_type"] and t["resources"].get("GPU"))
    return head, worker


def write_fake_cifar10(root: Path) -> Path:
    """A tiny CIFAR-10 in torchvision's python layout, as novelty's cifar10 reader takes it:
    root/cifar-10-batches-py/data_batch_1..5 and test_batch, each a pickled dict of uint8 'data'
    (N, 3072) and int 'labels'; 2 random images of each class a train batch (10 a class), 4 in
    the test batch. Seeded: every copy holds the same bytes, so the same fingerprint."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, per_class in [*((f"data_batch_{i}", 2) for i in range(1, 6)), ("test_batch", 4)]:
        labels = [k for k in range(10) for _ in range(per_class)]
        data = rng.integers(0, 256, (len(labels), 3 * 32 * 32), dtype=np.uint8)
        (folder / name).write_bytes(pickle.dumps({"batch_label": name, "labels": labels, "data": data}, protocol=2))
    return root


@pytest.fixture(scope="module")
def node_home(tmp_path_factory) -> Path:
    """HOME of every node of the simulated cluster, with a tiny CIFAR-10 in <HOME>/data."""
    home = tmp_path_factory.mktemp("nodehome")
    write_fake_cifar10(home / "data")
    return home


@pytest.fixture(scope="module")
def sim(node_home):
    """An S3 endpoint on localhost (set in the environment before Ray starts, so every node's
    workers see it), and gpu.yaml's cluster: its head, two of its GPU workers. The nodes start
    with HOME at `node_home` (their workers inherit it); this process, the driver, gets its own
    HOME back once they are up, so the nodes' home is not the driver's."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    temp = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's unix sockets live here
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
           "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": temp, "RAY_ADDRESS": "", "HOME": str(node_home)}
    # (the nodes inherit OMP_WAIT_POLICY=PASSIVE from tests/conftest.py: up to 8 trials of 2 torch
    # threads share this machine's cores, and idle OpenMP threads must not spin on them)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"]).create_bucket(Bucket=BUCKET)
    head, worker = node_types()
    assert head["resources"]["CPU"] == 0 and worker["max_workers"] >= 2
    # Ray's GPUs are the ids in CUDA_VISIBLE_DEVICES; ids no machine has keep torch off any real GPU
    fake = ",".join(str(90 + i) for i in range(int(worker["resources"]["GPU"])))
    saved["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = fake
    small = {"object_store_memory": 80 * 1024**2}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": head["resources"]["CPU"], "num_gpus": 0,
                                                            "include_dashboard": False, **small})
    workers = [cluster.add_node(num_cpus=worker["resources"]["CPU"], num_gpus=worker["resources"]["GPU"], **small)
               for _ in range(2)]
    cluster.wait_for_nodes()
    restore_env({"HOME": saved["HOME"]})  # the nodes keep node_home; the driver, its own
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster, workers
    finally:
        ray.shutdown()
        cluster.shutdown()
        server.stop()
        shutil.rmtree(temp, ignore_errors=True)
        restore_env(saved)


def _most_at_once(rows: pd.DataFrame) -> int:
    """The most of these trials that were running at one moment (from their rows' start and end)."""
    events = sorted([(pd.Timestamp(t), 1) for t in rows["started_at"]] +
                    [(pd.Timestamp(t), -1) for t in rows["finished_at"]], key=lambda e: (e[0], e[1]))
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def test_fractional_gpus_pack_on_the_workers_never_the_head(sim, tmp_path):
    from novelty.methods import MethodSpec, register, unregister

    from conftest import toy_class

    begun = tmp_path / "begun"
    begun.mkdir()

    class Together(toy_class()):  # defined here: the sweep ships it to its workers by value
        """The toy pixel method, whose fit waits until all 3 trials of the sweep have begun (a
        marker each): the sweep ends with 3 rows only if the 3 ran at the same time."""
        marker_dir = str(begun)

        def fit(self, train, val):
            Path(self.marker_dir, f"c{self.cfg.normal_class}").touch()
            deadline = time.time() + 120
            while len(list(Path(self.marker_dir).iterdir())) < 3:
                if time.time() > deadline:
                    raise RuntimeError("the 3 trials never ran at the same time")
                time.sleep(0.05)
            super().fit(train, val)

    cluster, workers = sim
    uri = f"s3://{BUCKET}/packed"
    # 3 trials; 24 of a worker's 48 CPUs each, so 2 fit on a node (3 need both workers), and a
    # quarter of a GPU each: the 2 on one node share one GPU, at the same time
    sweep = Sweep(name="packed", grid={"normal_class": range(3)}, fixed={"dataset": "digits", "variant": "together"},
                  cpus_per_trial=24, gpus_per_trial=0.25, max_failures=0)
    register(MethodSpec(name="together", variants=("together",), reads=(), impl=Together))
    try:
        summary = run_sweep(sweep, SweepOptions(results=uri, report=False))
    finally:
        unregister("together")
    assert summary.ran == 3 and not summary.failed
    rows = read_rows(uri)  # every node wrote to the one bucket
    assert len(rows) == 3 and rows["key"].is_unique
    worker_ids = {w.node_id for w in workers}
    assert set(rows["ray_node_id"]) == worker_ids  # both workers, and nothing on the head
    assert cluster.head_node.node_id not in set(rows["ray_node_id"])
    assert rows["gpu_ids"].str.fullmatch(r"9\d").all()  # one GPU id each
    assert (rows["device"] == "cpu").all() and rows["device_note"].str.contains("torch sees no CUDA").all()
    # two trials on one GPU id of one node, running at the same moment (their rows' start and end)
    per_gpu = {k: _most_at_once(g) for k, g in rows.groupby(["ray_node_id", "gpu_ids"])}
    assert sorted(per_gpu.values()) == [1, 2], per_gpu


def test_a_ddp_trial_gets_two_gpus_of_one_node(sim):
    _, workers = sim
    uri = f"s3://{BUCKET}/ddp"
    sweep = Sweep(name="ddp-gpus", fixed={"dataset": "digits", "normal_class": 0, "epochs": 1, "stop": "last"},
                  cpus_per_trial=2, gpus_per_trial=0.25, ranks_per_trial=2, max_failures=0)
    summary = run_sweep(sweep, SweepOptions(results=uri, report=False))
    assert summary.ran == 1 and not summary.failed
    row = read_rows(uri).iloc[0]
    ids = row["gpu_ids"].split(",")
    assert len(ids) == 2 and len(set(ids)) == 2 and row["world_size"] == 2
    assert row["ray_node_id"] in {w.node_id for w in workers}


def test_a_ddp_trial_wider_than_a_node_is_refused_before_tune_schedules_it(sim):
    """8 ranks on gpu.yaml's 4-GPU workers: refused in one line before Tune asks for the bundle."""
    from novelty.errors import ConfigError

    sweep = Sweep(name="too-wide", fixed={"dataset": "digits", "epochs": 1}, cpus_per_trial=8,
                  gpus_per_trial=0.25, ranks_per_trial=8, max_failures=0)
    gpus = node_types()[1]["resources"]["GPU"]
    with pytest.raises(ConfigError, match=rf"needs 8 CPU\(s\) and 8 GPU\(s\) on one node .* {gpus} GPU\(s\)"):
        run_sweep(sweep, SweepOptions(results=f"s3://{BUCKET}/too-wide", report=False))


def test_retry_resumes_from_tune_checkpoint_on_s3(sim, tmp_path, flaky_method):
    uri = f"s3://{BUCKET}/flaky"
    summary = run_sweep(FLAKY, SweepOptions(results=uri, report=False))
    cfg = FLAKY.trials()[0]
    assert (flaky_method / "c1-s0").exists()  # it failed once, as epoch 2 began
    assert summary.ran == 1 and not summary.failed
    row = read_rows(uri).iloc[0]
    assert row["key"] == cfg.key(digits_fingerprint()) and row["epochs_run"] == 2
    assert row["resumed_from_epoch"] == 1  # restored from the checkpoint Tune kept in the bucket
    plain = run_trial(cfg, RunOptions(results=str(tmp_path / "plain"), progress=False, device="cpu",
                                      threads=int(row["threads"])))
    assert row["auc"] == plain["auc"]  # resumed, it ends where an uninterrupted trial ends
    assert len(read_scores(uri)) == row["n_test"]
    fs, base = open_store(f"s3://{BUCKET}")
    names = [i.path for i in fs.get_file_info(pafs.FileSelector(base, recursive=True))]
    # Tune's state was in the bucket (the retry read its checkpoint from there: resumed_from_epoch 1);
    # the sweep ended with every row, so its folder is gone, checkpoints and all
    assert not any("/flaky/_ray/" in n for n in names) and any("/flaky/rows/" in n for n in names)
    again = run_sweep(FLAKY, SweepOptions(results=uri, report=False))
    assert again.ran == 0 and again.skipped == 1  # skip-by-key reads the bucket
    report = write_report(uri, plots=False)
    assert f"{BUCKET}/flaky/tables/digits.csv" in " ".join(report.files)


def _busy_worker(workers) -> "ray._private.node.Node | None":
    """A worker node on which a trial holds a GPU now."""
    from ray._private.state import available_resources_per_node

    gpus = node_types()[1]["resources"]["GPU"]  # a GPU worker's, as cluster/gpu.yaml declares it
    free = available_resources_per_node()
    for w in workers:
        if w.node_id in free and free[w.node_id].get("GPU", 0) < gpus:
            return w
    return None


def test_a_lost_worker_s_trials_resume_elsewhere_to_the_same_table(sim, tmp_path):
    """A spot worker goes mid-sweep: its trials are retried on the other worker from the checkpoints
    they handed to Tune; every trial ends with a row, and each resumed trial's AUC is an
    uninterrupted run's."""
    cluster, workers = sim
    uri = f"s3://{BUCKET}/spot"
    # 2 trials, one a worker (a worker's 48 CPUs each): the lost one's trial goes on on the other;
    # 4 epochs: 3 after the checkpoint the killer waits for, time enough to find a trial running
    sweep = Sweep(name="spot", grid={"normal_class": range(2)},
                  fixed={"dataset": "digits", "epochs": 4, "stop": "last"},
                  cpus_per_trial=48, gpus_per_trial=0.25, max_failures=2)
    fs, base = open_store(uri)
    lost = {}

    def lose_a_worker():
        deadline = time.time() + 300
        while time.time() < deadline and not lost:
            found = {Path(i.path).parent.parent for i in fs.get_file_info(
                pafs.FileSelector(f"{base}/_ray", recursive=True, allow_not_found=True)) if i.base_name == "checkpoint.pt"}
            busy = _busy_worker(workers)
            if len(found) == 2 and busy is not None:  # both handed Tune an epoch's checkpoint
                lost["node"] = busy.node_id
                cluster.remove_node(busy, allow_graceful=False)
                return
            time.sleep(0.2)

    killer = threading.Thread(target=lose_a_worker, daemon=True)
    killer.start()
    summary = run_sweep(sweep, SweepOptions(results=uri, report=False))
    killer.join(timeout=10)
    assert lost, "no worker was lost: the sweep ended before a checkpoint"
    assert summary.ran == 2 and not summary.failed
    rows = read_rows(uri)
    assert len(rows) == 2 and rows["key"].is_unique
    # every row was written after the loss, on the worker that stayed: none names the lost node
    assert lost["node"] not in set(rows["ray_node_id"]) and set(rows["ray_node_id"]) <= {w.node_id for w in workers}
    assert rows["resumed_from_epoch"].max() >= 1  # at least one trial went on from a checkpoint
    # each trial that went on from a checkpoint ends where an uninterrupted run ends (the others ran
    # from their start, on a node that stayed, or again from scratch: no checkpoint in their path)
    by_class = rows.set_index("normal_class")
    trials = [(cfg, by_class.loc[cfg.normal_class]) for cfg in sweep.trials()
              if by_class.loc[cfg.normal_class, "resumed_from_epoch"] >= 1]
    stored = read_scores(uri)
    for cfg, row in trials:  # here, as test_retry_resumes_from_tune_checkpoint_on_s3 does
        plain = run_trial(cfg, RunOptions(results=str(tmp_path / "plain"), progress=False, device="cpu",
                                          threads=int(row["threads"])))
        assert row["auc"] == plain["auc"], (cfg.normal_class, row["resumed_from_epoch"])
        mine = stored[stored["key"] == row["key"]].reset_index(drop=True)
        theirs = read_scores(str(tmp_path / "plain"), {row["key"]}).reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, theirs, check_exact=True)  # every image's score, bit for bit


SUBMIT = "ray submit cluster/gpu.yaml sweeps/cifar10.py -- --data-root '~/data' --download"


def test_the_documented_cloud_command_s_trials_read_their_own_node_s_home(sim, node_home, tmp_path, monkeypatch):
    """cluster/gpu.yaml's command, its script arguments parsed by Ray's `ray submit` and then by
    sweeps/cifar10.py's own parser (as test_cluster_config.test_documented_submit_commands_parse
    does): a '~/data' that reaches the sweep unexpanded goes to the trials as it is, and each
    worker reads <its HOME>/data. The driver's HOME here is another folder, holding its own copy
    of the same data (plan() decodes it there to fingerprint it): had the driver expanded '~' to
    its home and handed the trials that path (the code before this test), the trials would have
    read the driver's copy (one machine: it is there too) and the row's data_root would be
    <driver HOME>/data, not <node HOME>/data: this test fails. (On AWS the `ray submit` line goes
    through the head's shell, which expands '~' itself, to /home/ubuntu: every node's home.)"""
    from ray.scripts.scripts import submit

    _, workers = sim
    assert SUBMIT in (REPO / "cluster" / "gpu.yaml").read_text()
    driver_home = tmp_path / "driver-home"
    write_fake_cifar10(driver_home / "data")
    monkeypatch.setenv("HOME", str(driver_home))
    params = submit.make_context("ray submit", shlex.split(SUBMIT)[2:]).params
    # no --download: no network here, and the data is already in every home
    args = [a for a in params["script_args"] if a != "--download"]
    assert args == ["--data-root", "~/data"]
    sweep = load_sweep(str(REPO / params["script"]))
    uri = f"s3://{BUCKET}/home"
    ns = sweep_parser(sweep).parse_args([*args, "--classes", "0", "--seeds", "0", "--variants", "full",
                                         "--epochs", "1", "--results", uri])
    opts = SweepOptions(**vars(ns))
    assert opts.run_options(sweep).data_root == "~/data"
    summary = run_sweep(opts.resources(sweep), opts)
    assert summary.ran == 1 and not summary.failed
    rows = read_rows(uri)
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["ray_node_id"] in {w.node_id for w in workers}  # a worker, not the head
    fake = load_imageset("cifar10", str(node_home / "data"), cache_dir="")
    assert fake.n_classes == 10 and len(fake.train_y) == 100
    assert row["dataset"] == "cifar10" and row["data_fingerprint"] == fake.fingerprint
    assert row["n_train"] + row["n_val"] == 10 and row["n_test"] == 40  # class 0's 10 images; the 40 test images
    assert row["data_root"] == str(node_home / "data")
