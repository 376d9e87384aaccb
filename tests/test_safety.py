"""Never destroy, leak or mislead: outputs, secrets, bounded waits, refused wrong answers, concurrent runs.

Every case runs ``gmm`` and checks the exit code, the one ``error:`` line, and
(with tree hashes) that nothing the user had changed.  Mistakes found before
any work run through click's runner in this process; fits, kills, locks and
waits run the installed command in a process of its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from helpers import (
    GMM,
    assert_user_error,
    dask_cluster,
    gmm,
    kill_at_line,
    make_blobs,
    tree_digest,
    write_config,
    write_parquet,
)

from pipeline import BayesianGaussianMixture, GaussianMixture, load_model
from pipeline.errors import ConvergenceWarning


@pytest.fixture
def workdir(tmp_path):
    """A directory with data/ (3 Parquet files) and c.yaml writing to out/."""
    write_parquet(tmp_path / "data", make_blobs(80), 3)
    write_config(
        tmp_path / "c.yaml", data={"path": "data"}, model={"n_components": 3, "max_iter": 5}, output={"path": "out"}
    )
    return tmp_path


def fit(cwd, client, *args, config="c.yaml"):
    return gmm(cwd, "fit", config, "--scheduler", client.scheduler.address, *args)


# --------------------------------------------------------------------------- 1. outputs replace only their own kind
@pytest.mark.parametrize(
    ("output", "pattern"),
    [
        ("data", r"output\.path 'data' is data\.path 'data'"),
        (".", r"output\.path '\.' contains data\.path 'data'"),
        ("data/model", r"output\.path 'data/model' lies inside data\.path 'data'"),
        ("data/part-000.parquet", r"lies inside data\.path"),
    ],
)
def test_an_output_on_or_around_the_data_is_refused_and_the_data_kept(workdir, in_process, output, pattern):
    before = tree_digest(workdir)
    run = in_process(workdir, "fit", "c.yaml", "--set", f"output.path={output}")
    assert_user_error(run, pattern)
    assert tree_digest(workdir) == before


def test_an_existing_folder_or_file_that_is_not_a_model_is_kept(workdir, in_process):
    (workdir / "mine").mkdir()
    (workdir / "mine" / "notes.txt").write_text("the user's notes")
    (workdir / "file.bin").write_bytes(b"the user's file")
    before = tree_digest(workdir)
    for target, found in (
        ("mine", r"a directory that is not a model directory \(no model\.yaml with format_version\)"),
        ("file.bin", "a file"),
    ):
        run = in_process(workdir, "fit", "c.yaml", "--set", f"output.path={target}")
        assert_user_error(run, rf"output\.path '{target}' exists and is {found}; this command replaces only its own")
    assert tree_digest(workdir) == before


def test_a_model_directory_and_an_empty_one_are_replaced(workdir, client):
    (workdir / "out").mkdir()  # empty: nothing to lose
    assert fit(workdir, client).returncode == 0
    first = (workdir / "out" / "model.npz").read_bytes()
    run = fit(workdir, client, "--set", "model.n_components=2")  # another fit replaces its own kind
    assert run.returncode == 0, run.stderr
    assert (workdir / "out" / "model.npz").read_bytes() != first
    assert not (workdir / "out.lock").exists()


def test_an_output_inside_the_model_it_starts_from_is_refused(workdir, client, in_process):
    assert fit(workdir, client).returncode == 0
    before = tree_digest(workdir)
    run = in_process(workdir, "fit", "c.yaml", "--set", "model.init_params=out", "--set", "output.path=out/again")
    assert_user_error(run, r"output\.path 'out/again' lies inside model\.init_params 'out'")
    run = in_process(workdir, "fit", "c.yaml", "--set", "model.init_params=out")
    assert_user_error(run, r"output\.path 'out' is model\.init_params 'out'")
    assert tree_digest(workdir) == before


@pytest.fixture
def scored(workdir, client):
    assert fit(workdir, client).returncode == 0
    return workdir


@pytest.mark.parametrize(
    ("output", "pattern"),
    [
        ("data", r"--output 'data' is --input 'data'"),
        ("data/scores", r"--output 'data/scores' lies inside --input 'data'"),
        ("out", r"--output 'out' is --model 'out'"),
        ("out/scores", r"--output 'out/scores' lies inside --model 'out'"),
        ("mine", r"--output 'mine' exists and is a directory that is not a score output"),
    ],
)
def test_score_never_writes_over_its_input_its_model_or_a_users_folder(scored, client, output, pattern):
    (scored / "mine").mkdir()
    (scored / "mine" / "keep.txt").write_text("keep")
    before = tree_digest(scored)
    run = gmm(
        scored,
        "score",
        "--model",
        "out",
        "--input",
        "data",
        "--output",
        output,
        "--scheduler",
        client.scheduler.address,
    )
    assert_user_error(run, pattern)
    assert tree_digest(scored) == before


def test_score_replaces_its_own_earlier_output(scored, client):
    for _ in range(2):
        run = gmm(
            scored,
            "score",
            "--model",
            "out",
            "--input",
            "data",
            "--output",
            "scores",
            "--scheduler",
            client.scheduler.address,
        )
        assert run.returncode == 0, run.stderr
    assert (scored / "scores" / "_gmm_score.json").exists() and len(list((scored / "scores").glob("*.parquet"))) == 3


def test_report_writes_only_over_its_own_reports(scored, in_process):
    (scored / "photo.png").write_bytes(b"\x89PNG the user's picture")
    before = tree_digest(scored)
    assert_user_error(
        in_process(scored, "report", "out", "--output", "photo.png"),
        r"--output 'photo\.png' exists and is a file; this command replaces only its own",
    )
    assert_user_error(
        in_process(scored, "report", "out", "--output", "out/r.png"), r"--output 'out/r\.png' lies inside the model"
    )
    assert tree_digest(scored) == before
    for _ in range(2):
        assert gmm(scored, "report", "out", "--output", "r.png").returncode == 0
        assert gmm(scored, "report", "out", "--output", "r.html").returncode == 0


def test_a_swap_that_fails_puts_the_earlier_output_back(tmp_path, monkeypatch):
    from pipeline import storage
    from pipeline.errors import EnvironmentFault

    target = tmp_path / "m"
    storage.write_directory(storage.Place.of(target), {"a": b"earlier"})
    rename = os.rename

    def failing_rename(source, destination):  # the disk refuses the new output's move into place (a fault injected)
        if Path(destination) == target and ".tmp-" in Path(source).name:
            raise OSError(5, "Input/output error")
        rename(source, destination)

    monkeypatch.setattr(storage.os, "rename", failing_rename)
    with pytest.raises(EnvironmentFault, match=r"cannot write '.*m': Input/output error"):
        storage.write_directory(storage.Place.of(target), {"a": b"new"}, replaceable=lambda path: True)
    assert (target / "a").read_bytes() == b"earlier" and [p.name for p in tmp_path.iterdir()] == ["m"]


class _Signal(BaseException):
    """Stands for the CLI's stop exception, raised by a signal handler just after a system call returned."""


@pytest.mark.parametrize("which", ["first", "second"])
def test_a_signal_just_after_either_rename_leaves_one_whole_output(tmp_path, monkeypatch, which):
    from pipeline import storage

    target = tmp_path / "m"
    storage.write_directory(storage.Place.of(target), {"a": b"earlier"})
    rename, calls = os.rename, []

    def rename_then_signal(source, destination):
        rename(source, destination)
        calls.append(destination)
        if len(calls) == {"first": 1, "second": 2}[which]:
            raise _Signal

    monkeypatch.setattr(storage.os, "rename", rename_then_signal)
    with pytest.raises(_Signal):
        storage.write_directory(storage.Place.of(target), {"a": b"new"}, replaceable=lambda path: True)
    expected = {"first": b"earlier", "second": b"new"}[which]  # the second rename had put the new one in place
    assert (target / "a").read_bytes() == expected and [p.name for p in tmp_path.iterdir()] == ["m"]


# --------------------------------------------------------------------------- 2. secrets
SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


def test_storage_options_never_reach_model_checkpoint_logs_or_inspect(workdir, client):
    config = {
        "data": {"path": "data", "storage_options": {"key": "AKIDEXAMPLE42", "secret": SECRET}},
        "model": {"n_components": 3, "max_iter": 60, "tol": 0.0},
        "output": {"path": "out"},
    }
    write_config(workdir / "s.yaml", **config)
    for log_format in ("text", "json"):
        run = fit(workdir, client, "--force", "--log-format", log_format, config="s.yaml")
        assert run.returncode == 0, run.stderr
        assert SECRET not in run.stderr and "AKIDEXAMPLE42" not in run.stderr
    model_yaml = (workdir / "out" / "model.yaml").read_text()
    assert SECRET not in model_yaml and "<redacted>" in model_yaml
    for name in ("inspect", "inspect --json"):
        shown = gmm(workdir, *name.split(), "out")
        assert shown.returncode == 0 and SECRET not in shown.stdout + shown.stderr
    # a checkpoint, as a killed run leaves it
    shutil.rmtree(workdir / "out")
    kill_at_line(workdir, "iteration 2:", "fit", "s.yaml", "--scheduler", client.scheduler.address)
    assert SECRET.encode() not in (workdir / "out.checkpoint.npz").read_bytes()
    # rotating a credential is not another fit
    config["data"]["storage_options"]["secret"] = "another-secret-value"
    write_config(workdir / "s.yaml", **config)
    run = fit(workdir, client, config="s.yaml")
    assert run.returncode == 0 and "resuming from iteration" in run.stderr, run.stderr
    run = fit(workdir, client, config="s.yaml")
    assert run.returncode == 0 and "nothing to do" in run.stderr, run.stderr


WORKER_LOGS_A_SECRET = f"""
import logging, sys
from pipeline import cluster, jsonlog, secrets
from pipeline.config import ClusterConfig

jsonlog.configure(sys.argv[1])
secrets.register({{"secret": "{SECRET}"}})

def leak():
    logging.getLogger("distributed.worker").warning("reading with secret={SECRET} from ftp://u:pw1234@host/x")
    try:
        raise OSError("denied for {SECRET}")
    except OSError:
        logging.getLogger("distributed.worker").exception("failed")
    logging.getLogger("asyncio").error("in a worker", exc_info=RuntimeError("{SECRET}"))  # a logger Dask left alone

with cluster.connect(None, ClusterConfig(n_workers=1, dashboard=False)) as client:
    client.run(leak)
try:
    raise ValueError("in the client for {SECRET}")
except ValueError:
    logging.getLogger("distributed.client").exception("also failed")
logging.getLogger("asyncio").error("Task exception was never retrieved", exc_info=RuntimeError("{SECRET}"))
"""


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_worker_process_logs_secrets_scrubbed_one_line_a_record(tmp_path, log_format):
    """A LocalCluster's workers write to gmm's stderr: their lines are scrubbed as gmm's own, and a record's
    exception is summarised on its line, in the workers and in gmm's process, never a traceback."""
    run = subprocess.run(
        [sys.executable, "-c", WORKER_LOGS_A_SECRET, log_format], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert "reading with secret=*** from ftp://u:***@host/x" in run.stderr, run.stderr
    assert "failed (OSError: denied for ***)" in run.stderr, run.stderr
    assert "also failed (ValueError: in the client for ***)" in run.stderr, run.stderr
    assert "Task exception was never retrieved (RuntimeError: ***)" in run.stderr, run.stderr  # any library's
    assert "in a worker (RuntimeError: ***)" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and "raise " not in run.stderr, run.stderr
    assert SECRET not in run.stderr and "pw1234" not in run.stderr
    if log_format == "json":  # every line, the workers' and those of Dask's loggers with handlers of their own
        assert all(json.loads(line)["event"] == "log" for line in run.stderr.splitlines()), run.stderr


def test_a_urls_password_is_neither_recorded_nor_part_of_the_fits_identity():
    from pipeline.config import fit_identity, recorded, validate

    def config(password):
        return validate(
            {"data": {"path": f"s3://AKID:{password}@bucket/data"}, "output": {"path": f"s3://u:{password}@b/m"}}, "c"
        )

    assert SECRET not in str(recorded(config(SECRET))) and "s3://AKID:***@bucket/data" in str(recorded(config(SECRET)))
    assert SECRET not in str(fit_identity(config(SECRET), "f"))
    assert fit_identity(config(SECRET), "f") == fit_identity(config("rotated-password"), "f")


def test_a_secret_in_a_bad_value_or_a_url_is_not_echoed(workdir, in_process):
    write_config(workdir / "s.yaml", data={"path": "data", "storage_options": SECRET}, output={"path": "out"})
    run = in_process(workdir, "fit", "s.yaml")
    assert_user_error(run, r"data\.storage_options", workdir)
    assert SECRET not in run.stderr, run.stderr
    # nothing listens at the URL's port: a fault of the surroundings (exit 1), the password never shown
    run = in_process(workdir, "fit", "c.yaml", "--set", f"data.path=ftp://user:{SECRET}@127.0.0.1:1/data")
    assert_user_error(
        run,
        r"^error: data\.path 'ftp://user:\*\*\*@127\.0\.0\.1:1/data': cannot connect: Connection refused$",
        workdir,
        code=1,
    )
    assert SECRET not in run.stderr, run.stderr


# --------------------------------------------------------------------------- 3. bounded waits
def test_a_scheduler_that_never_answers_times_out(workdir):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        accepted = []
        threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
        address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
        started = time.monotonic()
        run = gmm(workdir, "fit", "c.yaml", "--scheduler", address, "--set", "cluster.connect_timeout=2")
        assert time.monotonic() - started < 30
    assert_user_error(
        run, rf"the Dask scheduler at '{address}' did not answer within 2 s \(cluster\.connect_timeout\)", code=1
    )
    assert not (workdir / "out").exists()


def test_a_scheduler_without_workers_times_out(workdir):
    with dask_cluster(workdir, 0) as (address, _):
        run = gmm(workdir, "fit", "c.yaml", "--scheduler", address, "--set", "cluster.worker_timeout=2")
    assert_user_error(run, r"has no workers after 2 s \(cluster\.worker_timeout\)", code=1)


# --------------------------------------------------------------------------- 4. no silently wrong answers
@pytest.mark.parametrize("scale", [1e-15, 1e-200])
def test_uniformly_scaled_weights_give_the_unweighted_fit(tmp_path, client, scale):
    X = make_blobs(81)
    write_parquet(tmp_path / "plain", X, 2)
    write_parquet(tmp_path / "weighted", X, 2, extra={"w": np.full(X.shape[0], scale)})
    model = {"n_components": 3, "tol": 0.0, "max_iter": 30}
    for name, data in (("plain", {"path": "plain"}), ("weighted", {"path": "weighted", "weight_column": "w"})):
        write_config(tmp_path / f"{name}.yaml", data=data, model=model, output={"path": f"m-{name}"})
        run = fit(tmp_path, client, config=f"{name}.yaml")
        assert run.returncode == 0, run.stderr
    plain, weighted = load_model(tmp_path / "m-plain"), load_model(tmp_path / "m-weighted")
    for attr in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(weighted, attr), getattr(plain, attr), rtol=1e-8, err_msg=attr)
    assert weighted.lower_bound_ == pytest.approx(plain.lower_bound_, rel=1e-10)
    # the same through the Python API
    a = GaussianMixture(3, random_state=0, tol=0.0, max_iter=30)
    b = GaussianMixture(3, random_state=0, tol=0.0, max_iter=30)
    with pytest.warns(ConvergenceWarning):
        a.fit(X)
    with pytest.warns(ConvergenceWarning):
        b.fit(X, sample_weight=np.full(X.shape[0], scale))
    np.testing.assert_allclose(b.covariances_, a.covariances_, rtol=1e-8)


@pytest.mark.parametrize(
    ("weights", "pattern", "in_python"),
    [
        (
            {5: 1e308},
            r"column 'x\d' spans .* overflow float64: rescale it or the weight column 'w'",
            r"column \d spans .* overflow float64",
        ),
        (
            {5: 1e308, 6: 1e308},
            r"weight column 'w' sums to more than float64 holds \(largest weight 1e\+308\)",
            r"sums to more than float64 holds",
        ),
    ],
)
def test_weights_float64_cannot_carry_are_refused(tmp_path, client, weights, pattern, in_python):
    X = make_blobs(82)
    w = np.ones(X.shape[0])
    for i, v in weights.items():
        w[i] = v
    write_parquet(tmp_path / "data", X, 2, extra={"w": w})
    write_config(tmp_path / "c.yaml", data={"path": "data", "weight_column": "w"}, output={"path": "out"})
    assert_user_error(fit(tmp_path, client), pattern, tmp_path)
    with pytest.raises(ValueError, match=in_python):
        GaussianMixture(3).fit(X, sample_weight=w)


def test_values_whose_squares_overflow_are_refused(tmp_path, client):
    X = make_blobs(83)
    X[:, 1] *= 1e160
    write_parquet(tmp_path / "data", X, 2)
    write_config(tmp_path / "c.yaml", data={"path": "data"}, output={"path": "out"})
    assert_user_error(fit(tmp_path, client), r"column 'x1' spans .*e\+160.* overflow float64: rescale it", tmp_path)
    with pytest.raises(ValueError, match=r"column 1 spans .* overflow float64"):
        GaussianMixture(3).fit(X)


def test_a_page_failing_its_checksum_is_refused(tmp_path, client):
    paths = write_parquet(tmp_path / "data", make_blobs(84), 2, write_page_checksum=True, compression="none")
    content = bytearray(paths[1].read_bytes())
    content[100] ^= 0x01  # inside the first data page
    paths[1].write_bytes(bytes(content))
    write_config(tmp_path / "c.yaml", data={"path": "data"}, output={"path": "out"})
    assert_user_error(fit(tmp_path, client), r"part-001\.parquet: cannot read Parquet data .*CRC checksum", tmp_path)


def test_two_columns_of_one_name_are_named(tmp_path, in_process):
    (tmp_path / "data").mkdir()
    table = pa.Table.from_arrays(
        [pa.array([1.0, 2.0]), pa.array([3.0, 4.0]), pa.array([5.0, 6.0])], names=["a", "b", "a"]
    )
    pq.write_table(table, tmp_path / "data" / "p.parquet")
    write_config(tmp_path / "c.yaml", data={"path": "data"}, output={"path": "out"})
    assert_user_error(
        in_process(tmp_path, "fit", "c.yaml"), r"p\.parquet: 2 columns are named 'a'; rename them", tmp_path
    )


def _rewrite_model(model_dir: Path, change) -> None:
    """Change a model's arrays or model.yaml the way an attacker would: keeping the sha256 consistent."""
    with np.load(model_dir / "model.npz") as npz:
        arrays = dict(npz)
    info = yaml.safe_load((model_dir / "model.yaml").read_text())
    change(arrays, info)
    from pipeline.model import npz_bytes

    content = npz_bytes(arrays)
    (model_dir / "model.npz").write_bytes(content)
    info["arrays"]["sha256"] = hashlib.sha256(content).hexdigest()
    (model_dir / "model.yaml").write_text(yaml.safe_dump(info))


def _set(**values):
    def change(arrays, info):
        for key, value in values.items():
            (arrays if key in arrays else info)[key] = value(arrays, info) if callable(value) else value

    return change


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (_set(n_components=5), r"model\.yaml: says 5 components x 3 features, but its arrays hold 3 x 3"),
        (_set(n_features=2), r"model\.yaml: says 3 components x 2 features"),
        (_set(feature_names=["x0", "x1"]), r"model\.yaml: lists 2 feature_names for 3 features"),
        (
            _set(weights=lambda a, i: np.array([0.7, 0.7, -0.4])),
            r"not a valid mixture: weights must be >= 0 and sum to 1",
        ),
        (_set(means=lambda a, i: np.full((3, 3), np.nan)), r"not a valid mixture: means holds NaN or infinite values"),
        (
            _set(precisions_cholesky=lambda a, i: -a["precisions_cholesky"]),
            r"not a valid mixture: precisions_cholesky must be upper triangular with a positive diagonal",
        ),
        (
            _set(covariances=lambda a, i: 2 * a["covariances"]),
            r"not a valid mixture: precisions_cholesky does not match",
        ),
        (_set(weights=lambda a, i: np.array([0.2, 0.3, 0.5])), r"its weights or means differ from those in"),
    ],
)
def test_a_model_whose_files_disagree_or_are_no_mixture_is_refused(tmp_path, in_process, change, pattern):
    GaussianMixture(3, random_state=0).fit(make_blobs(85)).save(tmp_path / "m")
    _rewrite_model(tmp_path / "m", change)
    _assert_every_reader_refuses(tmp_path, in_process, make_blobs(85), pattern)


def _assert_every_reader_refuses(root, in_process, X, pattern):
    """``gmm inspect``, ``gmm score`` (of ``X``) and ``load_model`` refuse the model at ``root / "m"``."""
    write_parquet(root / "data", X, 1)
    assert_user_error(in_process(root, "inspect", "m"), pattern)
    run = in_process(root, "score", "--model", "m", "--input", "data", "--output", "s")
    assert_user_error(run, pattern, root, output="s")
    with pytest.raises(ValueError, match=pattern):
        load_model(root / "m")


def _set_prior(key, value):
    def change(arrays, info):
        (info["prior"] if "prior" in info and info["prior"] else info["variational"])[key] = value

    return change


@pytest.mark.parametrize(
    ("make", "change", "pattern"),
    [
        ("map", _set_prior("dof", -1.0), r"model\.yaml: prior: prior dof must be > 2"),
        ("map", _set_prior("scale", [[1.0, 0.0], [0.0, 1.0]]), r"model\.yaml: prior: prior scale must be a 3 x 3"),
        ("map", _set_prior("mean", [1.0, 2.0]), r"model\.yaml: prior: prior mean must be 3 numbers"),
        ("map", _set_prior("shrinkage", None), r"model\.yaml: prior: .*float\(\) argument must be"),
        ("variational", _set_prior("mean_precision_prior", -2.0), r"variational: mean_precision_prior must be > 0"),
        ("variational", _set_prior("covariance_prior", [1.0]), r"variational: covariance_prior has shape \(1,\)"),
        ("variational", _set_prior("weight_concentration_prior_type", "x"), r"weight_concentration_prior_type 'x'"),
        (
            "variational",
            _set(mean_precision=lambda a, i: np.full(3, np.inf)),
            r"variational: mean_precision holds NaN or inf",
        ),
        (
            "variational",
            _set(degrees_of_freedom=lambda a, i: np.ones(3)),
            r"variational: degrees_of_freedom must be > 2 \(n_features - 1\)",
        ),
        ("variational", lambda a, i: a.pop("weight_concentration"), r"no array 'weight_concentration'"),
    ],
)
def test_a_model_whose_prior_or_posterior_is_unusable_is_refused(tmp_path, in_process, make, change, pattern):
    X = make_blobs(87)
    if make == "map":
        GaussianMixture(3, prior={"shrinkage": 0.1}, random_state=0).fit(X).save(tmp_path / "m")
    else:
        BayesianGaussianMixture(n_components=3, random_state=0).fit(X).save(tmp_path / "m")
    _rewrite_model(tmp_path / "m", change)
    _assert_every_reader_refuses(tmp_path, in_process, X, pattern)


def test_a_candidate_gives_the_same_bits_alone_with_others_and_in_gmm_fit(tmp_path, client):
    write_parquet(tmp_path / "data", make_blobs(86, n_per=400), 4)
    write_config(
        tmp_path / "c.yaml", data={"path": "data"}, model={"n_components": 3, "n_init": 2}, output={"path": "fit3"}
    )
    assert fit(tmp_path, client).returncode == 0
    tables = {}
    for k in ("3", "2..4", "3,5"):
        run = gmm(
            tmp_path,
            "select",
            "c.yaml",
            "--k",
            k,
            "--set",
            f"output.path=sel{k}",
            "--scheduler",
            client.scheduler.address,
        )
        assert run.returncode == 0, run.stderr
        rows = (tmp_path / f"sel{k}" / "selection.csv").read_text().splitlines()
        tables[k] = next(row for row in rows if row.startswith("3,full,"))
    assert tables["3"] == tables["2..4"] == tables["3,5"]
    fit_info = yaml.safe_load((tmp_path / "fit3" / "model.yaml").read_text())
    assert tables["3"].split(",")[3] == repr(fit_info["bic"])
    assert (tmp_path / "sel3" / "model.npz").read_bytes() == (tmp_path / "fit3" / "model.npz").read_bytes()


# --------------------------------------------------------------------------- 5. damaged checkpoints
@pytest.mark.parametrize("damage", ["empty", "wrong shapes", "directory", "someone else's file"])
def test_a_damaged_checkpoint_never_blocks_a_fit(workdir, client, damage):
    checkpoint = workdir / "out.checkpoint.npz"
    if damage == "empty":
        checkpoint.write_bytes(b"")
        expected = "checkpoint not used: it is damaged"
    elif damage == "wrong shapes":
        config = yaml.safe_load((workdir / "c.yaml").read_text())
        config["model"]["max_iter"] = 500
        write_config(workdir / "c.yaml", **config)
        kill_at_line(workdir, "iteration 2:", "fit", "c.yaml", "--scheduler", client.scheduler.address)
        with np.load(checkpoint) as npz:
            arrays = dict(npz)
        arrays["run0_means"] = arrays["run0_means"][:2]
        from pipeline.model import npz_bytes

        checkpoint.write_bytes(npz_bytes(arrays))
        expected = "checkpoint not used: it is damaged"
    elif damage == "directory":
        checkpoint.mkdir()
        (checkpoint / "x").write_text("x")
        expected = "is not a checkpoint is at its path; this run writes no checkpoints"
    else:
        checkpoint.write_bytes(b"PK\x03\x04 not ours")
        expected = "is not a checkpoint is at its path; this run writes no checkpoints"
    kept = tree_digest(checkpoint) if checkpoint.is_dir() else checkpoint.read_bytes()
    run = fit(workdir, client)
    assert run.returncode == 0, run.stderr
    assert expected in run.stderr and "iteration 1:" in run.stderr
    if damage in ("directory", "someone else's file"):  # not ours: left as it was
        assert (tree_digest(checkpoint) if checkpoint.is_dir() else checkpoint.read_bytes()) == kept
    else:
        assert not checkpoint.exists()


# --------------------------------------------------------------------------- 6. concurrent runs
def test_a_second_run_of_the_same_fit_is_refused_while_the_first_holds_the_lock(workdir, client):
    config = yaml.safe_load((workdir / "c.yaml").read_text())
    config["model"].update(max_iter=100_000, tol=0.0)
    write_config(workdir / "c.yaml", **config)
    first = subprocess.Popen(
        [GMM, "fit", "c.yaml", "--scheduler", client.scheduler.address],
        cwd=workdir,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        for line in first.stderr:
            if line.startswith("iteration 3:"):
                break
        second = fit(workdir, client)
        assert_user_error(
            second,
            rf"output\.path 'out' is being written by another run \(pid {first.pid} on "
            rf"{socket.gethostname()} since .*\); wait for it, or if it is gone, remove",
        )
        os.killpg(first.pid, signal.SIGKILL)  # dies holding the lock: the next run takes it over
    finally:
        first.wait()
        first.stderr.close()
    assert (workdir / "out.lock").exists()
    config["model"]["max_iter"] = 6
    write_config(workdir / "c.yaml", **config)
    third = fit(workdir, client)
    assert third.returncode == 0, third.stderr
    assert not (workdir / "out.lock").exists()


# --------------------------------------------------------------------------- 5. user mistakes: one line, exit 2
def test_an_unwritable_output_is_found_before_the_fit(workdir, in_process):
    (workdir / "blocker").write_text("a file where a directory is needed")
    before = tree_digest(workdir)
    run = in_process(workdir, "fit", "c.yaml", "--set", "output.path=blocker/model")
    assert_user_error(run, r"output\.path 'blocker/model': cannot write in .*blocker", code=1)
    assert "iteration" not in run.stderr and "scheduler" not in run.stderr
    assert tree_digest(workdir) == before
