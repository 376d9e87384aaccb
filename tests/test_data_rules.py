"""What is data and what is recorded: hidden files, files changed mid-fit, automatic columns, URLs with passwords,
``--set`` through a null, the memory limit's minimum."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from helpers import make_blobs, write_parquet

from pipeline import data, passes
from pipeline.config import MIN_MEMORY_LIMIT, fit_identity, load_config, recorded
from pipeline.errors import InputError


def invoke(cwd, monkeypatch, *args) -> subprocess.CompletedProcess:
    """The ``gmm`` click command in this process."""
    from click.testing import CliRunner

    from pipeline.cli import main

    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(main, [str(a) for a in args])
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


# --------------------------------------------------------------------------- hidden files
def _hive_dataset(root: Path) -> int:
    """A hive-partitioned dataset written by pyarrow, plus what writers leave beside it; returns its row count."""
    X = make_blobs(70)
    table = pa.table({"x0": X[:, 0], "x1": X[:, 1], "x2": X[:, 2], "g": np.arange(len(X)) % 3})
    pq.write_to_dataset(table, root, partition_cols=["g"])
    some_file = next(root.glob("g=0/*.parquet"))
    (root / "_temporary" / "0").mkdir(parents=True)
    shutil.copy(some_file, root / "_temporary" / "0" / "part.parquet")
    (root / ".staging").mkdir()
    shutil.copy(some_file, root / ".staging" / "x.parquet")
    shutil.copy(some_file, root / "g=1" / "_part-copy.parquet")
    shutil.copy(some_file, root / "g=1" / ".part-copy.parquet")
    (root / "_SUCCESS").write_bytes(b"")
    (root / "g=0" / ".part.parquet.crc").write_bytes(b"crc")
    return len(X)


def test_files_under_hidden_names_are_not_data_but_hive_partitions_are(tmp_path):
    n_rows = _hive_dataset(tmp_path / "d")
    dataset = data.open_dataset(str(tmp_path / "d"))
    assert dataset.n_rows == n_rows
    assert {Path(f).parent.name for f in dataset.files} == {"g=0", "g=1", "g=2"}
    # a glob's wildcards do not reach hidden names either
    assert data.open_dataset(str(tmp_path / "d" / "*")).n_rows == n_rows
    assert data.open_dataset(str(tmp_path / "d" / "*" / "*.parquet")).n_rows == n_rows


def test_a_hidden_file_named_by_the_path_or_the_glob_is_data(tmp_path):
    _hive_dataset(tmp_path / "d")
    one = pq.ParquetFile(tmp_path / "d" / "_temporary" / "0" / "part.parquet").metadata.num_rows
    assert data.open_dataset(str(tmp_path / "d" / "_temporary" / "0" / "part.parquet")).n_rows == one
    assert data.open_dataset(str(tmp_path / "d" / "_temporary" / "*" / "*.parquet")).n_rows == one
    assert data.open_dataset(str(tmp_path / "d" / ".staging" / "*.parquet")).n_rows == one
    assert data.open_dataset(str(tmp_path / "d" / "g=1" / "_*.parquet")).n_rows == one
    # a directory that is itself hidden, named as the path: what is below it is data
    assert data.open_dataset(str(tmp_path / "d" / "_temporary")).n_rows == one


# --------------------------------------------------------------------------- a file changed during a fit
def _rows(source):
    _, summary = passes.scan(source)
    return int(sum(summary.n_rows))


def test_a_file_rewritten_between_passes_is_an_error_naming_it(tmp_path):
    X = make_blobs(71)
    paths = write_parquet(tmp_path / "d", X, 2)
    source = data.block_source(data.open_dataset(str(tmp_path / "d")))
    assert _rows(source) == _rows(source) == len(X)  # unchanged files read again and again
    before = pq.read_table(paths[1])
    pq.write_table(pa.table({name: before[name].to_numpy() * 2.0 for name in before.column_names}), paths[1])
    assert pq.ParquetFile(paths[1]).metadata.num_rows == before.num_rows  # the same rows, other values
    with pytest.raises(InputError, match=r"part-001\.parquet: the file changed during the fit .*rerun"):
        _rows(source)


def test_a_file_changed_in_place_with_the_same_footer_is_an_error(tmp_path):
    """Same bytes in the footer and the same size; only the modification time tells (a rewrite with equal values)."""
    X = make_blobs(72)
    (path,) = write_parquet(tmp_path / "d", X, 1)
    source = data.block_source(data.open_dataset(str(tmp_path / "d")))
    _rows(source)
    path.write_bytes(path.read_bytes())
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    with pytest.raises(InputError, match=r"part-000\.parquet: the file changed during the fit"):
        _rows(source)


# --------------------------------------------------------------------------- automatic columns
def _customers(directory: Path, n: int = 400) -> None:
    rng = np.random.default_rng(73)
    X = make_blobs(73, n_per=n // 3 + 1)[:n]
    extra = {
        "customer_id": np.arange(1000, 1000 + n, dtype=np.int64),
        "segment": rng.integers(0, 4, n).astype(np.int32),
        "visits": rng.integers(0, 200, n),  # an integer feature: many values, some repeated
    }
    write_parquet(directory, X, 2, extra=extra)


def test_chosen_columns_are_named_and_id_or_label_columns_warned_about(tmp_path):
    _customers(tmp_path / "d")
    dataset = data.open_dataset(str(tmp_path / "d"))
    assert dataset.feature_names == ["x0", "x1", "x2", "customer_id", "segment", "visits"]
    identifier, label = dataset.column_warnings
    assert identifier.startswith("column 'customer_id' (int64) looks like an identifier: all 200 values")
    assert label.startswith("column 'segment' (int32) looks like a label or a code: 4 distinct values")
    assert all(
        w.endswith("because data.columns is null: list the features in data.columns") for w in (identifier, label)
    )


def test_no_column_warnings_when_the_columns_are_listed_or_the_sample_is_too_small(tmp_path):
    _customers(tmp_path / "d")
    assert data.open_dataset(str(tmp_path / "d"), columns=["x0", "customer_id"]).column_warnings == ()
    _customers(tmp_path / "small", n=2 * (data.MIN_SAMPLE_ROWS - 1))
    assert data.open_dataset(str(tmp_path / "small")).column_warnings == ()


def test_the_sample_is_the_first_rows_only(tmp_path):
    n = data.SAMPLE_ROWS + 500
    ids = np.arange(n)
    ids[-1] = 0  # a repeat beyond the sample does not change the verdict: the sample is bounded
    pq.write_table(pa.table({"x": np.linspace(0, 1, n), "id": ids}), tmp_path / "one.parquet", row_group_size=n)
    (warning,) = data.open_dataset(str(tmp_path / "one.parquet")).column_warnings
    assert f"all {data.SAMPLE_ROWS} values" in warning


# --------------------------------------------------------------------------- NaN advice
def test_the_nan_error_offers_drop_and_marginalize(tmp_path):
    X = make_blobs(74)
    X[4, 1] = np.nan
    write_parquet(tmp_path / "d", X, 1)
    source = data.block_source(data.open_dataset(str(tmp_path / "d")))
    with pytest.raises(
        InputError,
        match=r"part-000\.parquet: 1 rows have NaN .*set data\.nan_policy: drop \(those rows are left out\) or "
        r"marginalize \(NaN is a missing value",
    ):
        _rows(source)


# --------------------------------------------------------------------------- URLs with passwords
def _config(tmp_path, name="c.yaml", **sections) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(sections))
    return path


def test_recorded_config_and_identity_hold_no_url_password(tmp_path):
    def load(password):
        return load_config(
            _config(
                tmp_path,
                data={"path": f"s3://user:{password}@bucket/x"},
                model={"init_params": f"https://user:{password}@host/model"},
                output={"path": f"ftp://me:{password}@host/out"},
            )
        )

    config = load("hunter2-s3cret")
    text = yaml.safe_dump(recorded(config))
    assert "hunter2" not in text
    assert recorded(config)["model"]["init_params"] == "https://user:***@host/model"
    assert recorded(config)["data"]["path"] == "s3://user:***@bucket/x"
    assert recorded(config)["output"]["path"] == "ftp://me:***@host/out"
    assert fit_identity(config, "f") == fit_identity(load("another-password"), "f")
    assert "hunter2" not in repr(fit_identity(config, "f"))


class _ModelServer(BaseHTTPRequestHandler):
    """Files under ``root`` over HTTP with Basic authentication (and byte ranges, as fsspec asks)."""

    root: Path
    authorization: str

    def log_message(self, *args):
        pass

    def _send(self, body: bool) -> None:
        if self.headers.get("Authorization") != self.authorization:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="models"')
            self.end_headers()
            return
        path = self.root / self.path.strip("/")
        content = path.read_bytes() if path.is_file() else b""
        if not path.exists():
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if body:
            self.wfile.write(content)

    def do_GET(self):  # noqa: N802 (http.server's name)
        self._send(body=True)

    def do_HEAD(self):  # noqa: N802
        self._send(body=False)


@pytest.fixture
def model_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving ``tmp_path / 'served'`` to user 'user' with password 'pa55-w0rd-xyz'."""
    handler = type(
        "Handler",
        (_ModelServer,),
        {"root": tmp_path / "served", "authorization": "Basic " + base64.b64encode(b"user:pa55-w0rd-xyz").decode()},
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_model_read_from_a_url_with_a_password_is_recorded_without_it(tmp_path, monkeypatch, client, model_server):
    write_parquet(tmp_path / "d", make_blobs(75), 2)
    scheduler = ("--scheduler", client.scheduler.address)
    model = {"n_components": 3, "max_iter": 5}
    _config(tmp_path, "first.yaml", data={"path": "d"}, model=model, output={"path": "served/m"})
    assert invoke(tmp_path, monkeypatch, "fit", "first.yaml", *scheduler).returncode == 0

    def warm(password):
        url = f"http://user:{password}@{model_server}/m"
        return _config(tmp_path, data={"path": "d"}, model={**model, "init_params": url}, output={"path": "out"})

    run = invoke(tmp_path, monkeypatch, "fit", warm("pa55-w0rd-xyz"), *scheduler)
    assert run.returncode == 0, run.stderr
    written = (tmp_path / "out" / "model.yaml").read_text()
    assert yaml.safe_load(written)["config"]["model"]["init_params"] == f"http://user:***@{model_server}/m"
    shown = invoke(tmp_path, monkeypatch, "inspect", "out")
    assert shown.returncode == 0, shown.stderr
    for text in (written, run.stderr, shown.stdout, shown.stderr):
        assert "pa55-w0rd-xyz" not in text
    # the fit's identity does not hold the password: the same fit with another password is not refitted
    again = invoke(tmp_path, monkeypatch, "fit", warm("rotated-password"), *scheduler)
    assert again.returncode == 0 and "nothing to do" in again.stderr, again.stderr


# --------------------------------------------------------------------------- --set through a null
def test_set_creates_the_mapping_a_null_stands_for(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {path: d}\nmodel: {prior: null}\noutput: {storage_options: null}\n")
    config = load_config(path, ["model.prior.shrinkage=0.5", "output.storage_options.anon=true"])
    assert config.model.prior.shrinkage == 0.5 and config.model.prior.dof is None
    assert config.output.storage_options == {"anon": True}


@pytest.mark.parametrize(
    ("assignment", "pattern"),
    [
        ("model.prior.shrinkage=0.5", r"--set model\.prior\.shrinkage: 'prior' is not a section \(it is 'default'\)"),
        ("model.prior.shrinkag=0.5", r"unknown key 'model\.prior\.shrinkag'; did you mean 'model\.prior\.shrinkage'"),
        ("model.tol.x=1", r"--set model\.tol\.x: 'tol' is not a section"),
    ],
)
def test_set_still_refuses_a_path_through_a_value_or_an_unknown_key(tmp_path, assignment, pattern):
    path = tmp_path / "c.yaml"
    path.write_text("data: {path: d}\nmodel: {prior: default}\n" if "shrinkage=" in assignment else "data: {path: d}\n")
    with pytest.raises(InputError, match=pattern):
        load_config(path, [assignment])


# --------------------------------------------------------------------------- memory limit
@pytest.mark.parametrize("limit", [1000, "100MB", "0.5"])
def test_a_memory_limit_below_a_worker_is_refused_naming_the_key_and_the_minimum(tmp_path, limit):
    path = _config(tmp_path, data={"path": "d"}, cluster={"memory_limit": limit})
    with pytest.raises(
        InputError,
        match=r"c\.yaml: cluster\.memory_limit: \d+ bytes per worker is below the minimum "
        r"of 512 MiB",
    ):
        load_config(path)


@pytest.mark.parametrize("limit", ["auto", 0, "2GiB", MIN_MEMORY_LIMIT, "4 GB"])
def test_memory_limits_a_worker_can_run_with_are_accepted(tmp_path, limit):
    path = _config(tmp_path, data={"path": "d"}, cluster={"memory_limit": limit})
    assert load_config(path).cluster.memory_limit == limit


def test_the_memory_limit_is_refused_through_the_command(tmp_path, monkeypatch):
    _config(tmp_path, data={"path": "d"}, cluster={"memory_limit": 1000})
    run = invoke(tmp_path, monkeypatch, "fit", "c.yaml")
    assert run.returncode == 2
    assert (
        run.stderr.strip()
        .splitlines()[-1]
        .startswith("error: c.yaml: cluster.memory_limit: 1000 bytes per worker is below the minimum of 512 MiB")
    ), run.stderr
