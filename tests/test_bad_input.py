"""Every user mistake ends in one ``error:`` line, exit code 2, and nothing written.

Cases run through the real ``gmm`` entry point; those that need the data read
connect to the session's LocalCluster with ``--scheduler``.
"""

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from helpers import GMM, gmm, make_blobs, write_parquet

from pipeline import GaussianMixture
from pipeline.errors import ComponentCollapseError


def invoke(cwd, monkeypatch, *args):
    """The ``gmm`` click command in this process (cheap for mistakes caught before any work)."""
    from click.testing import CliRunner

    from pipeline.cli import main

    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(main, list(args))
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def assert_user_error(run, pattern, cwd, output="out"):
    """Exit 2; one stderr line starting 'error:' (the last) matching ``pattern``; no traceback; nothing written.

    Progress lines (scheduler, data) may come before it when the mistake shows only once data is read.
    """
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2, run.stderr
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert re.search(pattern, errors[0]), errors[0]
    assert not (Path(cwd) / output).exists()


def fit(tmp_path, client, data=None, model=None, extra_args=()):
    config = {
        "data": data or {"path": "data"},
        "model": {"n_components": 3, **(model or {})},
        "output": {"path": "out"},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    return gmm(tmp_path, "fit", "c.yaml", "--scheduler", client.scheduler.address, *extra_args)


# --------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (
            "data: {path: data}\nmodel: {covariance: full}\n",
            r"c\.yaml: unknown key 'model\.covariance'; did you mean 'model\.covariance_type'\?",
        ),
        ("data: {path: data}\nmodle: {}\n", r"unknown key 'modle'; did you mean 'model'\?"),
        ("data: {path: data}\nmodel: {n_components: three}\n", r"model\.n_components: Input should be a valid integer"),
        ("data: {path: data}\nmodel: {tol: -1.0}\n", r"model\.tol: Input should be greater than or equal to 0"),
        (
            "data: {path: data}\nmodel: {reg_covar: -1.0e-6}\n",
            r"model\.reg_covar: Input should be greater than or equal to 0",
        ),
        ("data: {path: data}\nmodel: {max_iter: 0}\n", r"model\.max_iter: Input should be greater than or equal to 1"),
        ("data: {path: data}\nmodel: {n_init: 0}\n", r"model\.n_init: Input should be greater than or equal to 1"),
        (
            "data: {path: data}\nmodel: {covariance_type: round}\n",
            r"model\.covariance_type: Input should be 'full', 'tied', 'diag', 'spherical', 'EII', .* or 'VVV'",
        ),
        ("data: {path: data}\nmodel: {dtype: float16}\n", r"model\.dtype: Input should be 'float64' or 'float32'"),
        ("data: {path: data}\nmodel:\n  n_components: 3\n   tol: 1\n", r"c\.yaml:4:\d+: invalid YAML"),
        ("- just\n- a list\n", r"c\.yaml: expected a mapping of sections"),
        ("model: {n_components: 2}\n", r"missing required key 'data'"),
    ],
)
def test_config_mistakes(tmp_path, monkeypatch, text, pattern):
    (tmp_path / "c.yaml").write_text(text)
    assert_user_error(invoke(tmp_path, monkeypatch, "fit", "c.yaml"), pattern, tmp_path)


@pytest.mark.parametrize(
    ("assignment", "pattern"),
    [
        ("model.n_componentz=4", r"unknown key 'model\.n_componentz'; did you mean 'model\.n_components'\?"),
        ("model.n_components=four", r"model\.n_components: Input should be a valid integer"),
        ("model.n_components.x=4", r"--set model\.n_components\.x: 'n_components' is not a section"),
        ("novalue", r"--set 'novalue': expected KEY=VALUE"),
    ],
)
def test_bad_set_overrides(tmp_path, monkeypatch, assignment, pattern):
    (tmp_path / "c.yaml").write_text("data: {path: data}\n")
    assert_user_error(invoke(tmp_path, monkeypatch, "fit", "c.yaml", "--set", assignment), pattern, tmp_path)


def test_a_config_mistake_through_the_installed_command(tmp_path):
    (tmp_path / "c.yaml").write_text("data: {path: data}\nmodel: {n_components: 0}\n")
    assert_user_error(gmm(tmp_path, "fit", "c.yaml"), r"model\.n_components: Input should be greater", tmp_path)


def test_unknown_init_names_the_key(tmp_path, client):
    write_parquet(tmp_path / "data", make_blobs(40), 2)
    assert_user_error(
        fit(tmp_path, client, model={"init_params": "kmean"}),
        r"model\.init_params 'kmean' is neither one of kmeans, k-means\+\+, random, random_from_data nor a model "
        "directory",
        tmp_path,
    )


# --------------------------------------------------------------------------- data path
def test_missing_data_path(tmp_path, client):
    assert_user_error(fit(tmp_path, client), r"data\.path 'data' does not exist", tmp_path)


def test_directory_without_parquet(tmp_path, client):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "rows.csv").write_text("a,b\n1,2\n")
    assert_user_error(fit(tmp_path, client), r"data\.path 'data' holds no Parquet files", tmp_path)


def test_file_that_is_not_parquet_is_named(tmp_path, client):
    write_parquet(tmp_path / "data", make_blobs(41), 2)
    (tmp_path / "data" / "part-002.parquet").write_text("not parquet at all")
    assert_user_error(fit(tmp_path, client), r"part-002\.parquet: not a readable Parquet file", tmp_path)


def test_truncated_file_is_named(tmp_path, client):
    paths = write_parquet(tmp_path / "data", make_blobs(42), 2)
    content = paths[1].read_bytes()
    paths[1].write_bytes(content[: len(content) // 2])
    assert_user_error(fit(tmp_path, client), r"part-001\.parquet: not a readable Parquet file", tmp_path)


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv to drop root's file-access override")
def test_permission_denied_is_named(tmp_path):
    paths = write_parquet(tmp_path / "data", make_blobs(43), 2)
    paths[0].chmod(0o000)
    (tmp_path / "c.yaml").write_text("data: {path: data}\noutput: {path: out}\n")
    # Root reads anything; without CAP_DAC_OVERRIDE it meets file permissions like any user.
    run = subprocess.run(
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", GMM, "fit", "c.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_user_error(run, r"part-000\.parquet: permission denied", tmp_path)


# --------------------------------------------------------------------------- schema
def test_missing_column_lists_the_available_ones(tmp_path, client):
    write_parquet(tmp_path / "data", make_blobs(44), 2)
    assert_user_error(
        fit(tmp_path, client, data={"path": "data", "columns": ["x0", "height"]}),
        r"column 'height' of data\.columns not found; available columns: x0, x1, x2",
        tmp_path,
    )


def test_non_numeric_column(tmp_path, client):
    X = make_blobs(45)
    write_parquet(tmp_path / "data", X, 2, extra={"city": np.array(["a", "b"] * (X.shape[0] // 2))})
    assert_user_error(
        fit(tmp_path, client, data={"path": "data", "columns": ["x0", "city"]}),
        r"column 'city' is string, not numeric",
        tmp_path,
    )


def test_no_numeric_columns(tmp_path, client):
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"name": ["a", "b", "c"]}), tmp_path / "data" / "p.parquet")
    assert_user_error(fit(tmp_path, client), r"p\.parquet: no numeric columns; columns are: name", tmp_path)


def test_files_disagreeing_on_columns(tmp_path, client):
    X = make_blobs(46)
    write_parquet(tmp_path / "data", X, 2)
    pq.write_table(pa.table({"x0": X[:5, 0], "x1": X[:5, 1]}), tmp_path / "data" / "part-002.parquet")
    assert_user_error(
        fit(tmp_path, client), r"part-002\.parquet: column 'x2' is missing \(present in .*part-000\.parquet\)", tmp_path
    )


def test_files_disagreeing_on_types(tmp_path, client):
    X = make_blobs(47)
    write_parquet(tmp_path / "data", X, 2)
    pq.write_table(
        pa.table({"x0": X[:5, 0], "x1": X[:5, 1], "x2": np.arange(5)}), tmp_path / "data" / "part-002.parquet"
    )
    assert_user_error(fit(tmp_path, client), r"part-002\.parquet: column 'x2' is int64, but double in", tmp_path)


@pytest.mark.parametrize(
    ("weights", "pattern"),
    [
        (None, r"data\.weight_column 'w' not found; available columns: x0, x1, x2"),
        (-1.0, r"weight column 'w' has \d+ negative, NaN or infinite values"),
        (np.nan, r"weight column 'w' has \d+ negative, NaN or infinite values"),
        (0.0, r"weight column 'w' sums to zero"),
    ],
)
def test_bad_weight_columns(tmp_path, client, weights, pattern):
    X = make_blobs(48)
    extra = None
    if weights is not None:
        w = np.ones(X.shape[0]) if weights != 0.0 else np.zeros(X.shape[0])
        w[5] = weights
        extra = {"w": w}
    write_parquet(tmp_path / "data", X, 2, extra=extra)
    assert_user_error(fit(tmp_path, client, data={"path": "data", "weight_column": "w"}), pattern, tmp_path)


# --------------------------------------------------------------------------- values
def test_nan_rows_are_counted_and_the_file_named(tmp_path, client):
    X = make_blobs(49)
    X[[3, 7], 1] = np.nan
    X[500, 0] = np.inf
    write_parquet(tmp_path / "data", X, 2)
    assert_user_error(
        fit(tmp_path, client),
        r"part-000\.parquet: 2 rows have NaN or infinite values in the selected columns; "
        r"clean the data or set data\.nan_policy: drop",
        tmp_path,
    )


def test_nan_policy_drop_reports_the_count(tmp_path, client):
    X = make_blobs(50)
    X[[3, 7], 1] = np.nan
    X[500, 0] = np.inf
    write_parquet(tmp_path / "data", X, 2)
    run = fit(tmp_path, client, data={"path": "data", "nan_policy": "drop"})
    assert run.returncode == 0, run.stderr
    assert "897 rows x 3 features" in run.stderr and "dropped 3 rows with NaN/inf" in run.stderr
    assert yaml.safe_load((tmp_path / "out" / "model.yaml").read_text())["n_samples"] == 897


def test_empty_dataset(tmp_path, client):
    write_parquet(tmp_path / "data", np.empty((0, 3)), 2)
    assert_user_error(fit(tmp_path, client), r"data: the dataset has no rows", tmp_path)


def test_fewer_rows_than_components(tmp_path, client):
    write_parquet(tmp_path / "data", make_blobs(51)[:2], 1)
    assert_user_error(fit(tmp_path, client), r"2 rows is fewer than model\.n_components=3", tmp_path)


def test_fewer_distinct_rows_than_components(tmp_path, client):
    # As scikit-learn: with reg_covar > 0 the fit goes on, components on single points, and says so once.
    write_parquet(tmp_path / "data", np.repeat([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], 50, axis=0), 2)
    run = fit(tmp_path, client)
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("warning: ") == 1 and "components (K=3 full) collapsed" in run.stderr, run.stderr
    info = yaml.safe_load((tmp_path / "out" / "model.yaml").read_text())
    assert len(info["collapsed_components"]) >= 1
    shutil.rmtree(tmp_path / "out")
    assert_user_error(fit(tmp_path, client, model={"reg_covar": 0.0}), r"is not positive definite", tmp_path)


def test_constant_column_works_with_reg_covar_and_is_named_without(tmp_path, client):
    X = make_blobs(52)
    X[:, 2] = 7.0
    write_parquet(tmp_path / "data", X, 2)
    assert fit(tmp_path, client).returncode == 0
    shutil.rmtree(tmp_path / "out")
    assert_user_error(
        fit(tmp_path, client, model={"reg_covar": 0.0}), r"column 'x2' is constant; set model\.reg_covar > 0", tmp_path
    )


def test_collapsing_component_stops_with_advice(tmp_path, client):
    # Two exact copies of one point form a component of zero variance once it owns them.
    X = np.concatenate([make_blobs(53, n_per=100), [[50.0, 50.0, 50.0]] * 2])
    write_parquet(tmp_path / "data", X, 2)
    run = fit(tmp_path, client, model={"n_components": 4, "reg_covar": 0.0})
    assert_user_error(
        run,
        r"component \d is not positive definite: ill-defined empirical covariance .*increase "
        r"reg_covar .*model\.prior: default.*or reduce n_components",
        tmp_path,
    )


def test_collapse_in_the_python_api_is_a_clear_value_error():
    X = np.concatenate([make_blobs(53, n_per=100), [[50.0, 50.0, 50.0]] * 2])
    with pytest.raises(ComponentCollapseError, match="increase reg_covar"):
        GaussianMixture(4, reg_covar=0.0, random_state=0).fit(X)


# --------------------------------------------------------------------------- model files
@pytest.fixture
def model_dir(tmp_path):
    gm = GaussianMixture(3, random_state=0).fit(make_blobs(54))
    gm.save(tmp_path / "m")
    return tmp_path / "m"


def test_inspect_a_directory_that_is_not_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_user_error(gmm(tmp_path, "inspect", "empty"), r"empty: not a model directory \(no model\.yaml\)", tmp_path)


def test_inspect_a_model_whose_arrays_fail_their_sha256(tmp_path, model_dir):
    npz = model_dir / "model.npz"
    content = bytearray(npz.read_bytes())
    content[-40] ^= 0xFF
    npz.write_bytes(bytes(content))
    assert_user_error(gmm(tmp_path, "inspect", "m"), r"model\.npz: sha256 does not match", tmp_path)


def test_inspect_a_newer_format_version(tmp_path, model_dir):
    info = yaml.safe_load((model_dir / "model.yaml").read_text())
    info["format_version"] = 99
    (model_dir / "model.yaml").write_text(yaml.safe_dump(info))
    assert_user_error(
        gmm(tmp_path, "inspect", "m"), r"format_version 99 is newer than this gmm-pipeline reads", tmp_path
    )


def test_init_from_a_model_with_other_features(tmp_path, client, model_dir):
    X = make_blobs(55)
    write_parquet(tmp_path / "data", X, 2, names=["a", "b", "c"])
    assert_user_error(
        fit(tmp_path, client, model={"init_params": "m"}),
        r"model\.init_params 'm': its features \['x0', 'x1', 'x2'\] do not match the data's \['a', 'b', 'c'\]",
        tmp_path,
    )


def test_init_from_a_directory_that_is_not_a_model(tmp_path, client):
    write_parquet(tmp_path / "data", make_blobs(56), 2)
    (tmp_path / "notmodel").mkdir()
    run = fit(tmp_path, client, model={"init_params": "notmodel"})
    assert_user_error(run, r"notmodel: not a model directory", tmp_path)


# --------------------------------------------------------------------------- priors
def fit_here(tmp_path, monkeypatch, client, model):
    """:func:`fit` through click's runner in this process (connecting to the session's cluster)."""
    (tmp_path / "c.yaml").write_text(
        yaml.safe_dump({"data": {"path": "data"}, "model": {"n_components": 1, **model}, "output": {"path": "out"}})
    )
    return invoke(tmp_path, monkeypatch, "fit", "c.yaml", "--scheduler", client.scheduler.address)


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
def test_the_default_prior_on_data_without_spread_names_the_columns(tmp_path, monkeypatch, client, covariance_type):
    write_parquet(tmp_path / "data", np.tile([1.0, 2.0, 3.0], (40, 1)), 2)
    run = fit_here(tmp_path, monkeypatch, client, {"covariance_type": covariance_type, "prior": "default"})
    assert_user_error(
        run,
        r"^error: model\.prior: the data have no spread \(every column is constant: 'x0', 'x1', 'x2'\), so the "
        r"default prior scale "
        r"\(their variance\) is 0: set the prior's scale \(> 0\), or fit data whose rows differ$",
        tmp_path,
    )


@pytest.mark.parametrize(
    ("model", "pattern"),
    [
        (
            {"covariance_prior": [[1.0, 0.0], [0.0, 1.0]]},
            r"model: covariance_prior must be a 3 x 3 matrix for covariance_type 'full', got shape \(2, 2\)$",
        ),
        (
            {"covariance_type": "diag", "covariance_prior": [1.0, 2.0]},
            r"model: covariance_prior must be 3 numbers \(one per feature\) for covariance_type 'diag', "
            r"got shape \(2,\)$",
        ),
        (
            {"covariance_prior": [[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]]},
            r"model: covariance_prior must be positive definite for covariance_type 'full', "
            r"got a matrix with smallest eigenvalue -1$",
        ),
        ({"mean_prior": [0.0, 1.0]}, r"model: mean_prior must be 3 numbers \(one per feature\), got shape \(2,\)$"),
        (
            {"degrees_of_freedom_prior": 1e308},
            r"model: degrees_of_freedom_prior must be at most 1e\+100, got 1e\+308: a prior that weighs more rows "
            r"than that overflows the fit's float64 arithmetic$",
        ),
        ({"weight_concentration_prior": 1e308}, r"model: weight_concentration_prior must be at most 1e\+100"),
        ({"mean_precision_prior": 1e308}, r"model: mean_precision_prior must be at most 1e\+100"),
    ],
)
def test_variational_priors_are_named_as_the_config_names_them(tmp_path, monkeypatch, client, model, pattern):
    write_parquet(tmp_path / "data", make_blobs(57), 2)
    run = fit_here(tmp_path, monkeypatch, client, {"algorithm": "variational", "n_components": 3, **model})
    assert_user_error(run, r"^error: " + pattern, tmp_path)


@pytest.mark.parametrize("key", ["dof", "shrinkage"])
def test_a_prior_count_that_would_overflow_is_refused_by_name(tmp_path, monkeypatch, client, key):
    write_parquet(tmp_path / "data", make_blobs(58), 2)
    run = fit_here(tmp_path, monkeypatch, client, {"prior": {key: 1e308}})
    assert_user_error(run, rf"^error: model\.prior: prior {key} must be at most 1e\+100, got 1e\+308: ", tmp_path)


# --------------------------------------------------------------------------- cluster
@pytest.mark.parametrize(
    ("dashboard", "reason"),
    [("203.0.113.1:8787", r"OSError: \[Errno 99\] Cannot assign requested address"), ("no-such-host.invalid:0", "")],
)
def test_a_dashboard_host_that_cannot_be_listened_on_is_named(tmp_path, monkeypatch, dashboard, reason):
    # 203.0.113.1 is TEST-NET-3 (RFC 5737): no address of this machine; binding to it fails here, sending nothing
    write_parquet(tmp_path / "data", make_blobs(59), 1)
    (tmp_path / "c.yaml").write_text(
        yaml.safe_dump({"data": {"path": "data"}, "output": {"path": "out"}, "cluster": {"dashboard": dashboard}})
    )
    run = invoke(tmp_path, monkeypatch, "fit", "c.yaml")
    host = re.escape(dashboard.rsplit(":", 1)[0])
    assert_user_error(
        run,
        rf"^error: cluster\.dashboard '{re.escape(dashboard)}': cannot listen on host '{host}' \({reason}.*\); "
        r"give ':PORT' \(every interface\), '127\.0\.0\.1:PORT' \(this machine only\) or an address of this machine$",
        tmp_path,
    )
