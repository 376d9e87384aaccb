"""The job and the ``gmm`` command, through the real entry point and real Parquet files."""

import json
import os
import socket
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import COVARIANCE_TYPES, gmm, make_blobs, sklearn_start, whitened_errors, write_config, write_parquet
from sklearn.exceptions import ConvergenceWarning as SkConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGMM

from pipeline import job, kernels, load_model
from pipeline.choices import MCLUST_MODELS
from pipeline.config import load_config
from pipeline.errors import InputError
from pipeline.model import describe, save_model

ROOT = Path(__file__).resolve().parents[1]


def fit_parquet_from_sklearns_start(tmp_path, client, X, covariance_type, emit=lambda event: None, **model):
    """Our fit of X (as 5 Parquet files, on the cluster) and sklearn's, from the same start, tol=0, 15 iterations."""
    write_parquet(tmp_path / "data", X, n_files=5)
    w, m, p = sklearn_start(X, 3, covariance_type)
    prec_chol = kernels.precision_cholesky_from_precisions(p, covariance_type)
    cov = kernels.covariances_from_precision_cholesky(prec_chol, covariance_type)
    start = kernels.Params(w, m, cov, prec_chol, covariance_type)
    save_model(tmp_path / "start", start, describe(start, ["x0", "x1", "x2"]))
    config = write_config(
        tmp_path / "c.yaml",
        data={"path": str(tmp_path / "data")},
        model={
            "n_components": 3,
            "covariance_type": covariance_type,
            "init_params": str(tmp_path / "start"),
            "tol": 0.0,
            "max_iter": 15,
            **model,
        },
        output={"path": str(tmp_path / "model")},
    )
    job.fit(load_config(config), scheduler=client.scheduler.address, emit=emit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkConvergenceWarning)
        sk = SkGMM(
            3, covariance_type=covariance_type, weights_init=w, means_init=m, precisions_init=p, tol=0, max_iter=15
        ).fit(X)
    return load_model(tmp_path / "model"), sk, yaml.safe_load((tmp_path / "model" / "model.yaml").read_text())


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_parquet_fit_on_the_cluster_matches_sklearn(tmp_path, client, covariance_type):
    X = make_blobs(30)
    ours, sk, info = fit_parquet_from_sklearns_start(tmp_path, client, X, covariance_type)
    for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_allclose(getattr(ours, attr), getattr(sk, attr), rtol=1e-6, atol=1e-12, err_msg=attr)
    assert ours.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-6)
    assert info["bic"] == pytest.approx(sk.bic(X), rel=1e-9)
    assert info["aic"] == pytest.approx(sk.aic(X), rel=1e-9)


def test_float32_from_the_config_stays_within_its_claim_on_the_cluster(tmp_path, client):
    X = make_blobs(10, n_per=6000)  # 18,000 rows; components within 100 squared units of the centre
    events = []
    ours, sk, info = fit_parquet_from_sklearns_start(tmp_path, client, X, "full", emit=events.append, dtype="float32")
    assert [e["dtype"] for e in events if e["event"] == "iteration"] == ["float32"] * 15
    mean_error, cov_error = whitened_errors(
        ours.means_, ours.covariances_, sk.means_, sk.covariances_, sk.precisions_cholesky_, "full"
    )
    # The claim for one M-step at the float32 route's limit is 1e-5 and 1e-3; this near the centre, a few 1e-5.
    assert mean_error < 1e-5 and cov_error < 1e-4
    assert cov_error > 1e-8  # float32 was used: further from sklearn than float64's round-off


def test_a_model_written_before_a_config_key_existed_is_still_this_fit(tmp_path, client):
    write_parquet(tmp_path / "data", make_blobs(32), n_files=2)
    config = load_config(
        write_config(
            tmp_path / "c.yaml",
            data={"path": str(tmp_path / "data")},
            model={"n_components": 3, "max_iter": 3},
            output={"path": str(tmp_path / "m")},
        )
    )
    assert not job.fit(config, scheduler=client.scheduler.address).skipped
    info_file = tmp_path / "m" / "model.yaml"
    info = yaml.safe_load(info_file.read_text())
    del info["config"]["model"]["dtype"]  # as written before model.dtype was added: it meant float64
    info_file.write_text(yaml.safe_dump(info))
    assert job.fit(config, scheduler=client.scheduler.address).skipped
    float32 = config.model_copy(update={"model": config.model.model_copy(update={"dtype": "float32"})})
    assert not job.fit(float32, scheduler=client.scheduler.address).skipped  # a different fit


def test_generate_then_fit_recovers_the_truth_through_the_cli(tmp_path):
    run = gmm(
        tmp_path,
        "generate",
        "--output",
        "data",
        "--n-samples",
        20000,
        "--n-features",
        3,
        "--n-components",
        3,
        "--partitions",
        4,
        "--seed",
        3,
    )
    assert run.returncode == 0, run.stderr
    write_config(tmp_path / "c.yaml", data={"path": "data"}, model={"n_components": 3}, output={"path": "out/m"})
    run = gmm(tmp_path, "fit", "c.yaml", "--set", "cluster.n_workers=2", "--set", "model.dtype=float32")
    assert run.returncode == 0, run.stderr
    assert "iteration 1: lower_bound=" in run.stderr and "dashboard: http" in run.stderr
    assert run.stderr.count("dtype=float32") == run.stderr.count("iteration ")
    truth = load_model(tmp_path / "data" / "_truth")
    fitted = load_model(tmp_path / "out" / "m")
    order = [int(np.argmin(np.linalg.norm(fitted.means_ - mu, axis=1))) for mu in truth.means_]
    assert sorted(order) == [0, 1, 2]
    # 20,000 rows: weights to about 0.01, means to about 0.1 (a few standard errors).
    np.testing.assert_allclose(fitted.weights_[order], truth.weights_, atol=0.015)
    np.testing.assert_allclose(fitted.means_[order], truth.means_, atol=0.1)
    np.testing.assert_allclose(fitted.covariances_[order], truth.covariances_, atol=0.15)
    info = yaml.safe_load((tmp_path / "out" / "m" / "model.yaml").read_text())
    expected = {
        "format_version",
        "created",
        "n_components",
        "n_features",
        "feature_names",
        "covariance_type",
        "weights",
        "means",
        "converged",
        "n_iter",
        "lower_bound",
        "history",
        "n_samples",
        "weight_sum",
        "bic",
        "aic",
        "config",
        "data_fingerprint",
        "versions",
        "arrays",
    }
    assert expected <= set(info)
    assert info["n_samples"] == 20000 and info["config"]["cluster"]["n_workers"] == 2

    again = gmm(tmp_path, "fit", "c.yaml", "--set", "cluster.n_workers=2", "--set", "model.dtype=float32")
    assert again.returncode == 0 and "nothing to do" in again.stderr
    shown = gmm(tmp_path, "inspect", "out/m")
    assert shown.returncode == 0 and "3 components x 3 features" in shown.stdout
    as_json = json.loads(gmm(tmp_path, "inspect", "out/m", "--json").stdout)
    assert as_json["n_components"] == 3 and as_json["feature_names"] == ["x0", "x1", "x2"]


def test_inspect_json_is_strict_json_for_a_model_with_no_iteration(tmp_path):
    from helpers import make_blobs

    from pipeline import GaussianMixture

    GaussianMixture(3, max_iter=0, random_state=0).fit(make_blobs(3)).save(tmp_path / "m")
    shown = gmm(tmp_path, "inspect", "m", "--json")
    assert shown.returncode == 0, shown.stderr

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    as_json = json.loads(shown.stdout, parse_constant=refuse)
    assert as_json["lower_bound"] is None


@contextmanager
def hold_port(port: int, timeout: float = 120):
    """Listen on ``port`` (waiting while a parallel test's cluster has it), so nobody else can."""
    deadline = time.time() + timeout
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        while True:
            try:
                sock.bind(("", port))
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        sock.listen()
        yield


def test_json_log_format_and_require_convergence(tmp_path):
    write_parquet(tmp_path / "data", make_blobs(31), n_files=3)
    write_config(
        tmp_path / "c.yaml",
        data={"path": "data"},
        model={"n_components": 3, "max_iter": 1, "tol": 0.0},
        output={"path": "m"},
    )
    # Dask warns about every graph above this size: its warnings (and log records) must be JSON too
    env = {**os.environ, "DASK_DISTRIBUTED__ADMIN__LARGE_GRAPH_WARNING_THRESHOLD": "1"}
    with hold_port(8787):  # the dashboard's port is taken: another one is used, without Dask's warning block
        run = gmm(tmp_path, "fit", "c.yaml", "--log-format", "json", "--require-convergence", env=env)
    assert run.returncode == 3, run.stderr
    records = [json.loads(line) for line in run.stderr.splitlines()]  # every line is one JSON object
    assert any(r["event"] == "log" and "Sending large graph" in r["message"] for r in records), records
    assert not any("8787" in str(r.get("message")) for r in records), records
    start = next(r for r in records if r["event"] == "start")
    assert start["dashboard"].startswith("http") and ":8787/" not in start["dashboard"]
    iteration = next(r for r in records if r["event"] == "iteration")
    assert set(iteration) >= {"event", "iteration", "lower_bound", "change", "seconds"}
    assert records[-1]["event"] == "error" and "did not converge" in records[-1]["message"]
    assert yaml.safe_load((tmp_path / "m" / "model.yaml").read_text())["converged"] is False


@pytest.mark.parametrize(
    "args, message",
    [
        (("fit", "c.yaml", "--log-format", "json", "--frobnicate"), "No such option '--frobnicate'"),
        (("fit", "--log-format=json"), "gmm fit: Missing argument 'CONFIG'"),
        (("score", "--log-format", "json", "--model"), "Option '--model' requires an argument"),
    ],
)
def test_a_usage_mistake_asked_for_in_json_is_one_json_error_record(tmp_path, args, message):
    run = gmm(tmp_path, *args)
    assert run.returncode == 2 and len(run.stderr.splitlines()) == 1, run.stderr
    record = json.loads(run.stderr)
    assert record["event"] == "error" and message in record["message"], record
    assert list(tmp_path.iterdir()) == []


def test_a_stop_signal_swallowed_where_it_was_raised_still_stops_the_command_at_its_next_event(monkeypatch):
    import signal
    import sys

    from pipeline.stopping import Stopped, StoppingConsole, stopped_by_signals

    class SignalledInItsDestructor:
        def __del__(self):  # Python drops an exception raised here and hands it to sys.unraisablehook
            os.kill(os.getpid(), signal.SIGTERM)
            sum(range(1000))  # the handler runs here, in the main thread, between bytecodes

    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with pytest.raises(Stopped, match="SIGTERM"):
        with stopped_by_signals():
            SignalledInItsDestructor()  # dropped at once: its Stopped is raised in __del__ and swallowed
            StoppingConsole("json")({"event": "iteration", "iteration": 5})
    assert unraisable == []  # the swallowed Stopped is not reported as an error (a traceback, outside pytest)


def test_dashboard_off_and_on_a_chosen_port(tmp_path):
    write_parquet(tmp_path / "data", make_blobs(33), n_files=2)
    write_config(
        tmp_path / "c.yaml", data={"path": "data"}, model={"n_components": 3, "max_iter": 2}, output={"path": "m"}
    )
    off = gmm(tmp_path, "fit", "c.yaml", "--set", "cluster.dashboard=false")
    assert off.returncode == 0 and "dashboard: off" in off.stderr, off.stderr
    with socket.socket() as sock:
        sock.bind(("", 0))
        port = sock.getsockname()[1]
    chosen = gmm(tmp_path, "fit", "c.yaml", "--force", "--set", f"cluster.dashboard=':{port}'")
    assert chosen.returncode == 0 and f":{port}/status" in chosen.stderr, chosen.stderr
    assert chosen.stderr.count("dashboard") == 1  # the address is printed once


def test_missing_config_file_exits_2(tmp_path):
    run = gmm(tmp_path, "fit", "absent.yaml")
    assert run.returncode == 2 and run.stderr.strip() == "error: config file 'absent.yaml' not found"


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    load_config(path)  # raises InputError on any mistake
    with pytest.raises(InputError, match=r"model\.frobnicate"):  # the control: the same load refuses a bad key
        load_config(path, ("model.frobnicate=1",))


def test_scheduler_address_precedence(monkeypatch):
    from pipeline.cluster import resolve_address

    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://env:8786")
    assert resolve_address("tcp://cli:8786", "tcp://config:8786") == "tcp://cli:8786"
    assert resolve_address(None, "tcp://config:8786") == "tcp://env:8786"
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS")
    assert resolve_address(None, "tcp://config:8786") == "tcp://config:8786"
    assert resolve_address(None, None) is None


def test_weight_column_counts_like_repeated_rows(tmp_path, client):
    X = make_blobs(32)
    w = (np.arange(X.shape[0]) % 3).astype(float)  # 0, 1 or 2 copies of each row
    write_parquet(tmp_path / "weighted", X, 3, extra={"w": w})
    write_parquet(tmp_path / "repeated", np.repeat(X, w.astype(int), axis=0), 2)
    start = {"n_components": 3, "init_params": "random_from_data", "random_state": 4, "tol": 0.0, "max_iter": 6}
    for name, data in (
        ("a", {"path": str(tmp_path / "weighted"), "weight_column": "w"}),
        ("b", {"path": str(tmp_path / "repeated")}),
    ):
        config = write_config(
            tmp_path / f"{name}.yaml",
            data=data,
            model={**start, "max_iter": 1},
            output={"path": str(tmp_path / f"{name}0")},
        )
        job.fit(load_config(config), scheduler=client.scheduler.address)
    # Same start for both (from the weighted fit's first M-step), then EM on each.
    for name, data in (
        ("a", {"path": str(tmp_path / "weighted"), "weight_column": "w"}),
        ("b", {"path": str(tmp_path / "repeated")}),
    ):
        config = write_config(
            tmp_path / f"{name}.yaml",
            data=data,
            model={**start, "init_params": str(tmp_path / "a0")},
            output={"path": str(tmp_path / name)},
        )
        job.fit(load_config(config), scheduler=client.scheduler.address)
    a, b = load_model(tmp_path / "a"), load_model(tmp_path / "b")
    for attr in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(a, attr), getattr(b, attr), rtol=1e-9, err_msg=attr)
    info_a = yaml.safe_load((tmp_path / "a" / "model.yaml").read_text())
    info_b = yaml.safe_load((tmp_path / "b" / "model.yaml").read_text())
    assert info_a["lower_bound"] == pytest.approx(info_b["lower_bound"], rel=1e-12)
    assert info_a["weight_sum"] == info_b["weight_sum"] == w.sum()
    assert info_a["bic"] == pytest.approx(info_b["bic"], rel=1e-12)  # n of BIC is the weight sum
    assert info_a["n_samples"] == X.shape[0] and info_b["n_samples"] == w.sum()


def test_a_large_file_is_split_by_row_groups_and_fits_the_same(tmp_path, client, monkeypatch):
    from pipeline import data

    X = make_blobs(34)
    write_parquet(tmp_path / "data", X, n_files=1, row_group_size=100)  # 9 row groups of 100 rows
    start = {"n_components": 3, "tol": 0.0, "max_iter": 8, "random_state": 2}
    fits = {}
    for name, limit in (("whole", data.PARTITION_BYTES), ("split", 300 * 3 * 8)):  # 300 rows of 3 features
        monkeypatch.setattr(data, "PARTITION_BYTES", limit)
        events = []
        config = write_config(
            tmp_path / f"{name}.yaml",
            data={"path": str(tmp_path / "data")},
            model=start,
            output={"path": str(tmp_path / name)},
        )
        job.fit(load_config(config), scheduler=client.scheduler.address, emit=events.append)
        fits[name] = (load_model(tmp_path / name), next(e for e in events if e["event"] == "data"))
    assert fits["whole"][1]["n_partitions"] == 1 and fits["split"][1]["n_partitions"] == 3
    assert fits["split"][1]["n_rows"] == X.shape[0]
    for attr in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(fits["split"][0], attr), getattr(fits["whole"][0], attr), rtol=1e-9)


def invoke(cwd, monkeypatch, *args):
    """The ``gmm`` click command in this process, run in ``cwd``."""
    import subprocess

    from click.testing import CliRunner

    from pipeline.cli import main

    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(main, list(map(str, args)))
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


@pytest.mark.parametrize(("text", "ks"), [("2..4", [2, 3, 4]), ("5", [5]), ("8,2,4,2", [2, 4, 8])])
def test_k_is_a_range_a_list_or_one_number(text, ks):
    from pipeline.cli import KsParamType

    assert KsParamType().convert(text, None, None) == ks


def test_covariance_types_keep_their_order_once_each_and_an_empty_value_is_the_configs():
    from pipeline.cli import CovarianceTypesParamType

    assert CovarianceTypesParamType().convert("diag, full,diag", None, None) == ["diag", "full"]
    assert CovarianceTypesParamType().convert("", None, None) == []
    assert CovarianceTypesParamType().convert("full,all,VVV", None, None) == ["full", *MCLUST_MODELS]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("--k", "2..x"), "error: --k '2..x': expected a range like 2..12 or a list like 2,4,8"),
        (("--k", "0,2"), "error: --k '0,2': needs at least one K, each >= 1"),
        (
            ("--k", "2", "--covariance-types", "full,fulll"),
            "error: --covariance-types: 'fulll' is not one of full, tied, diag, spherical, EII, VII, EEI, VEI, EVI, "
            "VVI, EEE, VEE, EVE, VVE, EEV, VEV, EVV, VVV (or all: mclust's models)",
        ),
    ],
)
def test_a_bad_k_or_covariance_type_is_one_error_line_naming_the_option(tmp_path, monkeypatch, args, line):
    run = invoke(tmp_path, monkeypatch, "select", "absent.yaml", *args)  # found before the config is read
    assert run.returncode == 2 and run.stderr.splitlines() == [line], run.stderr


@pytest.fixture
def to_score(tmp_path):
    """A model, data to score with it, and a fit config whose cluster section has 3 workers and no dashboard."""
    from pipeline import GaussianMixture

    X = make_blobs(35, n_per=50)
    GaussianMixture(3, random_state=0).fit(X).save(tmp_path / "m")
    write_parquet(tmp_path / "data", X, n_files=2)
    write_config(
        tmp_path / "c.yaml", data={"path": "data"}, cluster={"n_workers": 3, "dashboard": False}, output={"path": "m"}
    )
    return tmp_path


def test_score_takes_the_cluster_settings_of_a_config_and_set(to_score, monkeypatch):
    common = ("score", "--model", "m", "--input", "data", "--output", "s", "--config", "c.yaml")
    run = invoke(to_score, monkeypatch, *common, "--set", "cluster.n_workers=1")
    assert run.returncode == 0, run.stderr
    assert "with 1 workers; dashboard: off" in run.stderr  # n_workers from --set, the dashboard from the config
    assert len(list((to_score / "s").glob("*.parquet"))) == 2


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (("--set", "model.n_components=2"), r"^error: --set model\.n_components: gmm score takes only cluster\.\*"),
        (("--set", "cluster.n_workers=0"), r"^error: --set: cluster\.n_workers: .*greater than or equal to 1"),
        (("--set", "cluster.dashbord=false"), r"^error: --set: unknown key 'cluster\.dashbord'; did you mean"),
        (("--config", "absent.yaml"), r"^error: config file 'absent\.yaml' not found$"),
        (("--config", "c.yaml", "--set", "cluster.n_workers=x"), r"^error: c\.yaml: cluster\.n_workers: "),
    ],
    ids=["not cluster", "out of range", "unknown key", "no config", "bad value over a config"],
)
def test_score_refuses_bad_cluster_settings_before_any_work(to_score, monkeypatch, args, pattern):
    import re

    run = invoke(to_score, monkeypatch, "score", "--model", "m", "--input", "data", "--output", "s", *args)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(pattern, lines[0]), run.stderr
    assert not (to_score / "s").exists()


def test_the_demo_installs_the_extras_readmes_next_steps_need():
    import re
    import tomllib

    extras = re.search(r'^ensure_venv "\[(.*)\]"$', (ROOT / "scripts" / "demo").read_text(), re.MULTILINE)
    assert extras, "scripts/demo installs no extras"
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    installed = [dependency for extra in extras.group(1).split(",") for dependency in optional[extra.strip()]]
    assert any(dependency.startswith("matplotlib") for dependency in installed)  # gmm report
