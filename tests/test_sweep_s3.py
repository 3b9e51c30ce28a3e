"""The sweep with results on S3 (moto's S3 server, real pyarrow S3FileSystem and Ray Tune):
rows, scores and Tune's own state go to the bucket, and a failed trial is retried from the
checkpoint it handed to Tune (a remote results folder keeps no checkpoint of its own)."""
import os

import boto3
import moto.server as moto_server
import pyarrow.fs as pafs
import pytest
import ray

from novelty.config import RunOptions
from novelty.grid import Sweep, SweepOptions
from novelty.report import write_report
from novelty.results import open_store, read_rows, read_scores
from novelty.sweep import run_sweep
from novelty.trial import run_trial

from conftest import digits_fingerprint

BUCKET = "novelty-test"
FLAKY = Sweep(name="flaky-s3", grid={"normal_class": [1], "variant": ["full"]},
              fixed={"dataset": "digits", "epochs": 2}, max_failures=1)


@pytest.fixture(scope="module", autouse=True)
def s3_and_ray():
    """An S3 endpoint on localhost, set in the environment before Ray starts so its workers see it."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
           "RAY_AUTH_MODE": "disabled"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"]).create_bucket(Bucket=BUCKET)
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024**2,
             log_to_driver=False)
    yield
    ray.shutdown()
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_retry_resumes_from_tune_checkpoint_on_s3(tmp_path):
    uri = f"s3://{BUCKET}/flaky"
    markers = tmp_path / "markers"
    markers.mkdir()
    summary = run_sweep(FLAKY, SweepOptions(results=uri, report=False), fail_once_dir=str(markers))
    cfg = FLAKY.trials()[0]
    assert (markers / cfg.key(digits_fingerprint())).exists()  # it failed once, after epoch 1
    assert summary.ran == 1 and not summary.failed
    row = read_rows(uri).iloc[0]
    assert row["key"] == cfg.key(digits_fingerprint()) and row["epochs_run"] == 2
    assert row["resumed_from_epoch"] == 1  # restored from the checkpoint Tune kept in the bucket
    plain = run_trial(cfg, RunOptions(out=str(tmp_path / "plain"), progress=False))
    assert row["auc"] == plain["auc"]  # resumed, it ends where an uninterrupted trial ends
    assert len(read_scores(uri)) == row["n_test"]
    fs, base = open_store(f"s3://{BUCKET}")
    names = [i.path for i in fs.get_file_info(pafs.FileSelector(base, recursive=True))]
    assert any("/flaky/_ray/" in n for n in names)  # Tune's experiment state is in the bucket too
    again = run_sweep(FLAKY, SweepOptions(results=uri, report=False))
    assert again.ran == 0 and again.skipped == 1  # skip-by-key reads the bucket
    report = write_report(uri, plots=False)
    assert f"{BUCKET}/flaky/tables/digits.csv" in " ".join(report.files)
