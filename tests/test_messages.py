"""Messages that name what the user wrote: the estimators' parameters, as they spell them, and the JSON log lines.

The ``gmm`` faces of the same checks are in test_bad_input.py.
"""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import sys
import warnings

import numpy as np
import pytest
from helpers import make_blobs

from pipeline import BayesianGaussianMixture, GaussianMixture, cluster, jsonlog
from pipeline.config import ClusterConfig
from pipeline.errors import ConvergenceWarning
from pipeline.kernels.prior import MAX_PRIOR_COUNT, NoSpreadError

X = make_blobs(70, n_per=60)


# --------------------------------------------------------------------------- priors
@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
def test_the_default_prior_on_rows_without_spread_says_so(covariance_type):
    same = np.tile([1.0, 2.0, 3.0], (30, 1))
    gm = GaussianMixture(1, covariance_type=covariance_type, prior="default")
    with pytest.raises(NoSpreadError, match=r"no spread \(every column is constant: 0, 1, 2\)") as caught:
        gm.fit(same)
    assert caught.value.columns == [0, 1, 2]
    one = GaussianMixture(1, covariance_type=covariance_type, prior="default")
    with pytest.raises(NoSpreadError, match=r"no spread \(column 0 is constant\)"):
        one.fit(same[:, :1])
    given = GaussianMixture(1, covariance_type=covariance_type, prior={"scale": 1.0}).fit(same)  # what it advises
    assert np.allclose(given.means_, [[1.0, 2.0, 3.0]])


@pytest.mark.parametrize(
    ("params", "pattern"),
    [
        (
            {"covariance_prior": np.eye(2)},
            r"^covariance_prior must be a 3 x 3 matrix for covariance_type 'full', got shape \(2, 2\)$",
        ),
        (
            {"covariance_type": "tied", "covariance_prior": np.diag([1.0, 0.0, 1.0])},
            r"^covariance_prior must be positive definite for covariance_type 'tied', got a matrix with smallest "
            r"eigenvalue 0$",
        ),
        (
            {"covariance_prior": [[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]},
            r"^covariance_prior must be symmetric for covariance_type 'full'$",
        ),
        (
            {"covariance_type": "diag", "covariance_prior": [1.0, -1.0, 1.0]},
            r"^covariance_prior must be > 0 for covariance_type 'diag', got \[ 1\. -1\.  1\.\]$",
        ),
        (
            {"covariance_type": "spherical", "covariance_prior": [1.0, 1.0, 1.0]},
            r"^covariance_prior must be one number for covariance_type 'spherical', got shape \(3,\)$",
        ),
        ({"mean_prior": [0.0, 0.0]}, r"^mean_prior must be 3 numbers \(one per feature\), got shape \(2,\)$"),
        ({"mean_prior": [0.0, np.nan, 0.0]}, r"^mean_prior must be finite, got \[ 0\. nan  0\.\]$"),
        ({"degrees_of_freedom_prior": 1.5}, r"^degrees_of_freedom_prior must be > 2 \(n_features - 1\), got 1\.5$"),
        (  # checked by the declaration both faces share (pipeline.spec.HYPERPARAMETERS), before the data
            {"mean_precision_prior": -1.0},
            r"^The 'mean_precision_prior' parameter of BayesianGaussianMixture must be None or a float in the range "
            r"\(0\.0, inf\)\. Got -1\.0 instead\.$",
        ),
    ],
)
def test_variational_priors_are_named_as_the_parameters(params, pattern):
    with pytest.raises(ValueError, match=pattern):
        BayesianGaussianMixture(n_components=2, **params).fit(X)


@pytest.mark.parametrize(
    ("estimator", "name"),
    [
        (lambda v: BayesianGaussianMixture(n_components=2, degrees_of_freedom_prior=v), "degrees_of_freedom_prior"),
        (lambda v: BayesianGaussianMixture(n_components=2, mean_precision_prior=v), "mean_precision_prior"),
        (
            lambda v: BayesianGaussianMixture(
                n_components=2, weight_concentration_prior_type="dirichlet_distribution", weight_concentration_prior=v
            ),
            "weight_concentration_prior",
        ),
        (lambda v: GaussianMixture(2, prior={"dof": v}), "prior dof"),
        (lambda v: GaussianMixture(2, covariance_type="diag", prior={"shrinkage": v}), "prior shrinkage"),
    ],
)
@pytest.mark.filterwarnings("ignore::pipeline.errors.ConvergenceWarning")  # three iterations are enough here
@pytest.mark.filterwarnings("ignore::pipeline.errors.CollapsedComponentsWarning")  # what so strong a prior does
def test_a_prior_count_that_overflows_is_refused_and_a_large_one_fits(estimator, name):
    with pytest.raises(ValueError, match=rf"^{name} must be at most 1e\+100, got 1e\+308: .* overflows"):
        estimator(1e308).fit(X)
    with np.errstate(all="raise"):  # neither a large nor the largest accepted count overflows anywhere
        for value in (1e12, MAX_PRIOR_COUNT):
            fitted = estimator(value).set_params(max_iter=3).fit(X)
            assert np.isfinite(fitted.means_).all() and np.isfinite(fitted.lower_bound_)


# --------------------------------------------------------------------------- warnings in the log
@pytest.fixture
def json_logging(monkeypatch):
    """Logging set up as ``gmm --log-format json`` sets it up, this process's stderr a StringIO (yielded); logging
    and warnings as they were after.

    Warnings are shown (not recorded by pytest, not filtered as already seen) while the test runs.
    """
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.setenv("DASK_LOGGING", "")  # what configure sets for workers: restored after
    with warnings.catch_warnings():
        warnings.simplefilter("always", RuntimeWarning)
        logging.captureWarnings(False)  # an earlier set-up in this process would make configure's a no-op
        jsonlog.configure("json")
        yield stderr
        logging.captureWarnings(False)
    root.handlers[:] = handlers
    root.setLevel(level)


def _json_lines(text: str) -> list[dict]:
    """Every line of ``text`` as a JSON object (AssertionError naming the first line that is not one)."""
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}\n{text}") from None
    return records


def _overflow() -> float:
    with np.errstate(all="warn"):
        return float(np.add.reduce(np.array([1e308, 1e308])))


def test_warnings_in_this_process_are_json_lines(json_logging):
    warnings.warn("a warning of the job's", RuntimeWarning, stacklevel=1)
    assert _overflow() == np.inf
    records = _json_lines(json_logging.getvalue())
    assert [r["logger"] for r in records] == ["py.warnings", "py.warnings"]
    assert "RuntimeWarning: a warning of the job's" in records[0]["message"]
    assert "RuntimeWarning: overflow encountered in reduce" in records[1]["message"]


def test_pipeline_warnings_stay_errors_under_the_suites_filter(json_logging):
    # pyproject's "error::pipeline.errors.PipelineWarning": routing warnings to the log must not swallow it
    with pytest.raises(ConvergenceWarning, match="not converged"):
        warnings.warn("not converged", ConvergenceWarning, stacklevel=1)
    assert json_logging.getvalue() == ""


def test_warnings_in_local_workers_are_json_lines(json_logging, capfd):
    settings = ClusterConfig(n_workers=1, threads_per_worker=1, dashboard=False)
    with cluster.session(settings, None, lambda event: None) as client:
        assert client.submit(_overflow, pure=False).result() == np.inf
        client.run(warnings.warn, "a warning in a worker", RuntimeWarning)
    _json_lines(json_logging.getvalue())
    messages = [r["message"] for r in _json_lines(capfd.readouterr().err) if r["logger"] == "py.warnings"]
    assert any("RuntimeWarning: overflow encountered in reduce" in m for m in messages), messages
    assert any("RuntimeWarning: a warning in a worker" in m for m in messages), messages


# --------------------------------------------------------------------------- the LocalCluster's dashboard
def test_the_default_dashboard_moves_off_a_port_taken_since_the_check_without_a_warning(monkeypatch, capfd):
    with socket.socket() as held:  # the default port, taken by another fit between the check and the bind
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        monkeypatch.setattr(cluster, "DASHBOARD_HOST", "127.0.0.1")
        monkeypatch.setattr(cluster, "DASHBOARD_PORT", port)
        monkeypatch.setattr(cluster, "_bind_error", lambda host, port: None)  # what the check saw: free
        events = []
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with cluster.session(ClusterConfig(n_workers=1), None, events.append):
                pass
    assert not [w for w in seen if "already in use" in str(w.message)]
    assert "already in use" not in capfd.readouterr().err
    assert events[0]["dashboard"].startswith("http://127.0.0.1:") and f":{port}/" not in events[0]["dashboard"]


def test_float32_columns_whose_squares_pass_float32_are_named_with_the_dtype(tmp_path, monkeypatch):
    from click.testing import CliRunner
    from helpers import write_config, write_parquet

    from pipeline.cli import main

    X = np.random.default_rng(0).normal(size=(200, 2)) * [1.0, 1e19]  # squares ~1e39: past float32's 3.4e38
    with pytest.raises(ValueError, match=r"column 1 spans .*float32 arithmetic holds \(dtype='float32'\): use float64"):
        GaussianMixture(2, dtype="float32", random_state=0).fit(X)
    GaussianMixture(2, random_state=0).fit(X)  # float64 carries them
    write_parquet(tmp_path / "data", X, n_files=1, names=["small", "huge"])
    write_config(tmp_path / "c.yaml", data={"path": "data"}, model={"n_components": 2, "dtype": "float32"})
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["fit", "c.yaml", "--set", "cluster.n_workers=1"])
    assert result.exit_code == 2, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert re.search(r"^error: .*column 'huge' spans .*\(model\.dtype: float32\): use float64", line), line
