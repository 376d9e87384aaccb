"""``gmm export`` and ``to_onnx``: the ONNX graph, run by onnxruntime, scores held-out rows as the estimator does
(float64 to 1e-9, float32 to a measured tolerance), for every covariance type and the cases a fit can differ by;
the command's refusals; the guide's recipe, with onnxruntime and pyarrow alone.

Fits are small (300 rows) and made once per case for the module.  The data lie about 1000 from the origin in
their own units: a graph that expanded ``|x - mu|^2`` (as skl2onnx's diag and spherical graphs do) misses 1e-9
there.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
import warnings

import numpy as np
import onnx
import onnxruntime
import pandas as pd
import pytest
from helpers import ROOT, assert_user_error, make_blobs, tree_digest

from pipeline import BayesianGaussianMixture, GaussianMixture, load_model
from pipeline.choices import COVARIANCE_TYPES
from pipeline.export import OUTPUTS

NAMES = ["z", "a", "m"]  # not sorted: the graph's columns are the fit's, in the fit's order
CENTRES = ((-2, 0, 1), (0, 1.5, -1), (2, -0.5, 0))  # overlapping: probabilities away from 0 and 1
OFFSET = 1000.0
# Measured float32 errors (2026-12, onnxruntime 1.32, the cases below): log-likelihood within 1e-6 of its size,
# probabilities within 1e-5 of ours on the same (float32) rows; the tolerances allow 10x that.
FLOAT32_LOG_LIKELIHOOD, FLOAT32_PROBABILITIES = 1e-5, 1e-4

CASES = {
    **{covariance_type: {"covariance_type": covariance_type} for covariance_type in COVARIANCE_TYPES},
    "K=1": {"n_components": 1},
    "one feature": {"n_features": 1},
    "sample weights": {"sample_weight": True},
    "prior": {"prior": "default"},
    "nan_policy drop": {"nan_policy": "drop"},
    "variational": {"variational": True},
    "variational diag": {"variational": True, "covariance_type": "diag"},
}


def _rows(seed: int, n_per: int, n_features: int = 3) -> pd.DataFrame:
    X = make_blobs(seed, n_per, CENTRES)[:, :n_features] + OFFSET
    return pd.DataFrame(X, columns=NAMES[:n_features])


@functools.cache
def fitted(case: str):
    """The estimator of a case, fitted once for the module."""
    options = dict(CASES[case])
    n_features = options.pop("n_features", 3)
    X = _rows(0, 100, n_features)
    weights = np.random.default_rng(1).integers(0, 4, len(X)).astype(float) if options.pop("sample_weight", 0) else None
    if options.pop("variational", False):
        model = BayesianGaussianMixture(n_components=4, max_iter=500, random_state=0, **options)
    else:
        model = GaussianMixture(options.pop("n_components", 3), random_state=0, **options)
    if model.nan_policy == "drop":
        X.iloc[::7, 0] = np.nan
    return model.fit(X, sample_weight=weights)


def run(graph: onnx.ModelProto | str, X) -> dict[str, np.ndarray]:
    """The graph's outputs for rows ``X``, by name, from onnxruntime."""
    source = graph if isinstance(graph, str) else graph.SerializeToString()
    session = onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, {"X": np.ascontiguousarray(X)})))


@pytest.mark.parametrize("case", CASES)
def test_float64_graph_scores_as_the_estimator(case):
    model = fitted(case)
    held_out = _rows(2, 60, model.n_features_in_)
    got = run(model.to_onnx(), held_out.to_numpy())
    assert list(got) == list(OUTPUTS)
    assert got["label"].dtype == np.int64 and np.array_equal(got["label"], model.predict(held_out))
    np.testing.assert_allclose(got["probabilities"], model.predict_proba(held_out), rtol=0, atol=1e-9)
    np.testing.assert_allclose(got["log_likelihood"], model.score_samples(held_out), rtol=0, atol=1e-9)


@pytest.mark.parametrize("case", ["full", "tied", "diag", "spherical", "VEV", "K=1", "variational"])
def test_float32_graph_scores_as_the_estimator_within_the_stated_tolerance(case):
    model = fitted(case)
    held_out = _rows(2, 60, model.n_features_in_).to_numpy(np.float32)
    rows = pd.DataFrame(held_out.astype(np.float64), columns=model.feature_names_in_)  # the rows the graph sees
    got = run(model.to_onnx(dtype="float32"), held_out)
    assert got["probabilities"].dtype == got["log_likelihood"].dtype == np.float32
    ours = model.score_samples(rows)
    assert np.all(np.abs(got["log_likelihood"] - ours) <= FLOAT32_LOG_LIKELIHOOD * np.maximum(1.0, np.abs(ours)))
    proba = model.predict_proba(rows)
    np.testing.assert_allclose(got["probabilities"], proba, rtol=0, atol=FLOAT32_PROBABILITIES)
    top2 = np.sort(proba, axis=1)[:, -2:] if proba.shape[1] > 1 else np.hstack([np.zeros_like(proba), proba])
    clear = top2[:, 1] - top2[:, 0] > 2 * FLOAT32_PROBABILITIES  # no near-tie that float32 could turn
    assert clear.sum() > 0.9 * len(rows)
    assert np.array_equal(got["label"][clear], model.predict(rows)[clear])


def test_the_graph_records_its_features_and_asks_for_them_in_order():
    model = fitted("full")
    graph = model.to_onnx(outputs=["log_likelihood", "label"])
    metadata = {prop.key: prop.value for prop in graph.metadata_props}
    assert json.loads(metadata["feature_names"]) == NAMES == list(model.feature_names_in_)
    (x,) = graph.graph.input
    assert x.name == "X" and [d.dim_param or d.dim_value for d in x.type.tensor_type.shape.dim] == ["N", 3]
    assert [output.name for output in graph.graph.output] == ["label", "log_likelihood"]  # the graph's order
    shuffled = _rows(2, 20)[["m", "z", "a"]]
    got = run(graph, shuffled[json.loads(metadata["feature_names"])].to_numpy())
    np.testing.assert_allclose(got["log_likelihood"], model.score_samples(shuffled[NAMES]), rtol=0, atol=1e-9)


def test_rows_with_nan_or_infinity_get_no_label_and_nan_scores():
    model = fitted("diag")
    X = _rows(2, 5).to_numpy(copy=True)
    X[0, 1], X[1, 0] = np.nan, -np.inf
    got = run(model.to_onnx(), X)
    assert list(got["label"][:2]) == [-1, -1] and np.isnan(got["log_likelihood"][:2]).all()
    assert np.isnan(got["probabilities"][:2]).all()
    assert np.array_equal(got["label"][2:], model.predict(pd.DataFrame(X[2:], columns=NAMES)))


def test_the_api_refuses_what_the_graph_cannot_do():
    model = fitted("full")
    with pytest.raises(ValueError, match=r"outputs 'labels': not one of label, probabilities, log_likelihood"):
        model.to_onnx(outputs=["labels"])
    with pytest.raises(ValueError, match=r"dtype 'float16': the graph's arithmetic is one of float64, float32"):
        model.to_onnx(dtype="float16")
    with pytest.raises(ValueError, match="not fitted"):
        GaussianMixture().to_onnx()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        marginal = GaussianMixture(2, nan_policy="marginalize", random_state=0).fit(_rows(0, 30))
    with pytest.raises(
        ValueError, match=r"^This GaussianMixture was fitted with nan_policy marginalize, which an ONNX"
    ):
        marginal.to_onnx()


def test_without_the_extra_the_api_raises_import_error_saying_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # what Python does for a package that is not installed
    with pytest.raises(ImportError, match=re.escape("pip install 'gmm-pipeline[onnx]'")):
        fitted("full").to_onnx()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Model directories of three cases (EM full, variational, mclust's VEV) and of a marginalize fit."""
    root = tmp_path_factory.mktemp("models")
    for case in ("full", "variational", "VEV"):
        fitted(case).save(root / case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        GaussianMixture(2, nan_policy="marginalize", random_state=0).fit(_rows(0, 30)).save(root / "marginal")
    return root


@pytest.mark.parametrize("case", ["full", "variational", "VEV"])
def test_gmm_export_writes_the_graph_of_a_model_directory(saved, in_process, tmp_path, case):
    run_ = in_process(tmp_path, "export", saved / case, "--format", "onnx", "--output", "m.onnx")
    assert run_.returncode == 0, run_.stderr
    assert "exported to m.onnx (onnx, float64; outputs label, probabilities, log_likelihood)" in run_.stdout
    held_out = _rows(2, 60)
    got = run(str(tmp_path / "m.onnx"), held_out.to_numpy())
    model = load_model(saved / case)
    assert np.array_equal(got["label"], model.predict(held_out))
    np.testing.assert_allclose(got["probabilities"], fitted(case).predict_proba(held_out), rtol=0, atol=1e-9)
    np.testing.assert_allclose(got["log_likelihood"], fitted(case).score_samples(held_out), rtol=0, atol=1e-9)
    # an earlier export is replaced; --outputs and --dtype pick the graph
    again = in_process(
        tmp_path, "export", saved / case, "--output", "m.onnx", "--outputs", "label", "--dtype", "float32"
    )
    assert again.returncode == 0, again.stderr
    graph = onnx.load(tmp_path / "m.onnx")
    assert [o.name for o in graph.graph.output] == ["label"] and graph.graph.input[0].type.tensor_type.elem_type == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no lock or staging file left


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--outputs", "label,scores"], r"--outputs 'scores': not one of label, probabilities, log_likelihood"),
        (["--outputs", ","], r"--outputs \(nothing\): not one of"),
        (["--dtype", "float16"], r"Invalid value for '--dtype': 'float16' is not one of 'float64', 'float32'"),
        (["--format", "pmml"], r"Invalid value for '--format': 'pmml' is not 'onnx'"),
    ],
)
def test_gmm_export_refuses_bad_options(saved, in_process, tmp_path, args, pattern):
    assert_user_error(in_process(tmp_path, "export", saved / "full", "--output", "m.onnx", *args), pattern, tmp_path)
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize(
    ("output", "pattern"),
    [
        ("{model}", r"--output '.*full' is the model"),
        ("{model}/graph.onnx", r"--output '.*graph.onnx' lies inside the model"),
        ("notes.txt", r"--output 'notes.txt' exists and is a file; this command replaces only its own earlier output"),
        ("folder", r"--output 'folder' exists and is a directory; this command replaces only its own earlier output"),
    ],
)
def test_gmm_export_writes_over_nothing_but_an_earlier_export(saved, in_process, tmp_path, output, pattern):
    (tmp_path / "notes.txt").write_text("not a graph")
    (tmp_path / "folder").mkdir()
    before = {"here": tree_digest(tmp_path), "model": tree_digest(saved / "full")}
    run_ = in_process(tmp_path, "export", saved / "full", "--output", output.format(model=saved / "full"))
    assert_user_error(run_, pattern)
    assert {"here": tree_digest(tmp_path), "model": tree_digest(saved / "full")} == before


def test_gmm_export_refuses_a_marginalize_model(saved, in_process, tmp_path):
    run_ = in_process(tmp_path, "export", saved / "marginal", "--output", "m.onnx")
    assert_user_error(
        run_,
        r"the model '.*marginal' was fitted with nan_policy marginalize, which an ONNX graph cannot",
        tmp_path,
        "m.onnx",
    )


def test_gmm_export_without_the_extra_says_what_to_install(saved, in_process, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # what Python does for a package that is not installed
    run_ = in_process(tmp_path, "export", saved / "full", "--output", "m.onnx")
    assert_user_error(run_, re.escape("needs the onnx extra, which is not installed: pip install 'gmm-pipeline[onnx]'"))
    assert not (tmp_path / "m.onnx").exists()


def _recipe() -> str:
    """The guide's recipe: the Python block after the ``(onnx-recipe)=`` label."""
    page = (ROOT / "docs" / "guide" / "export.md").read_text()
    return re.search(r"\(onnx-recipe\)=.*?```python\n(.*?)```", page, re.S).group(1)


def test_the_guides_recipe_scores_parquet_with_onnxruntime_and_pyarrow_alone(saved, in_process, tmp_path):
    assert in_process(tmp_path, "export", saved / "full", "--output", "model.onnx").returncode == 0
    rows = _rows(3, 40)
    rows.insert(1, "id", np.arange(len(rows)))  # another column, and the features in another order
    rows[["id", "m", "a", "z"]].to_parquet(tmp_path / "data.parquet", row_group_size=50)
    # a Python in which gmm-pipeline, pandas, scikit-learn and Dask are not installed, as far as imports can tell
    blocked = (
        "import sys\n"
        "class Absent:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] in {'pipeline', 'pandas', 'sklearn', 'dask'}:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Absent())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", blocked + _recipe()], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    import pyarrow.parquet as pq

    scored = pq.read_table(tmp_path / "scored.parquet").to_pandas()
    model = fitted("full")
    assert np.array_equal(scored["label"], model.predict(rows[NAMES]))
    np.testing.assert_allclose(scored["log_likelihood"], model.score_samples(rows[NAMES]), rtol=0, atol=1e-9)
