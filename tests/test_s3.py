"""Object storage: data and model on an S3-compatible server (moto's, on 127.0.0.1)."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import assert_user_error, gmm, make_blobs, write_parquet

from pipeline import load_model

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
CREDENTIALS = {"key": "testing", "secret": "testing"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server process on a free loopback port; yields storage_options for it."""
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    options = {**CREDENTIALS, "endpoint_url": f"http://127.0.0.1:{port}"}
    try:
        import s3fs

        deadline = time.time() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        s3fs.S3FileSystem(**options).mkdir("bucket")
        yield options
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_fit_reads_and_writes_s3_like_local_files(tmp_path, s3):
    import s3fs

    X = make_blobs(60)
    write_parquet(tmp_path / "data", X, 3)
    fs = s3fs.S3FileSystem(**s3)
    fs.put(str(tmp_path / "data") + "/", "bucket/data/", recursive=True)
    model = {"n_components": 3, "max_iter": 20}
    remote = {
        "data": {"path": "s3://bucket/data", "storage_options": s3},
        "model": model,
        "output": {"path": "s3://bucket/models/m"},
    }
    local = {"data": {"path": str(tmp_path / "data")}, "model": model, "output": {"path": str(tmp_path / "m")}}
    for name, config in (("remote", remote), ("local", local)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(config))
        run = gmm(tmp_path, "fit", f"{name}.yaml")
        assert run.returncode == 0, run.stderr
    assert fs.cat_file("bucket/models/m/model.npz") == (tmp_path / "m" / "model.npz").read_bytes()
    assert not fs.exists("bucket/models/m.checkpoint.npz")
    gm = load_model("s3://bucket/models/m", storage_options=s3)
    assert gm.n_components == 3 and gm.converged_
    again = gmm(tmp_path, "fit", "remote.yaml")
    assert again.returncode == 0 and "nothing to do" in again.stderr


def test_a_url_output_that_is_not_a_model_is_kept_and_secrets_stay_out_of_errors(tmp_path, s3):
    import s3fs

    fs = s3fs.S3FileSystem(**s3)
    fs.pipe_file("bucket/users/notes.txt", b"the user's notes")
    X = make_blobs(61)
    write_parquet(tmp_path / "data", X, 2)
    secret = "a-long-secret-that-must-not-leak-42"
    options = {**s3, "secret": secret}
    config = {
        "data": {"path": str(tmp_path / "data")},
        "model": {"n_components": 3, "max_iter": 5},
        "output": {"path": "s3://bucket/users", "storage_options": options},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    run = gmm(tmp_path, "fit", "c.yaml")
    assert_user_error(run, r"output\.path 's3://bucket/users' exists and is a directory that is not a model directory")
    assert fs.cat_file("bucket/users/notes.txt") == b"the user's notes"
    assert secret not in run.stderr
    # a bucket that does not exist: the error names the path, never the credentials
    config["data"] = {"path": "s3://no-such-bucket/data", "storage_options": options}
    config["output"]["path"] = "s3://bucket/models/x"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    run = gmm(tmp_path, "fit", "c.yaml")
    assert_user_error(run, r"^error: data\.path 's3://no-such-bucket/data' does not exist$")
    assert secret not in run.stderr
