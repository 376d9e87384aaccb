"""Using a model: distributed scoring, model selection, sklearn export, reports."""

import csv
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from helpers import assert_user_error, gmm, make_blobs

from pipeline import GaussianMixture, load_model


@pytest.fixture(scope="module")
def scored_setup(tmp_path_factory):
    """A fitted model and a hive-partitioned input whose files order their columns differently."""
    root = tmp_path_factory.mktemp("score")
    X = make_blobs(70)
    gm = GaussianMixture(3, random_state=0).fit(X)
    gm.save(root / "m")
    parts = {
        "region=a/part-0.parquet": slice(0, 400),
        "region=a/part-1.parquet": slice(400, 401),
        "region=b/part-0.parquet": slice(401, 900),
    }
    for name, rows in parts.items():
        path = root / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        ids = np.arange(X.shape[0])[rows]
        table = pa.table(
            {"id": ids, "x2": X[rows, 2], "note": [f"row{i}" for i in ids], "x0": X[rows, 0], "x1": X[rows, 1]}
        )
        pq.write_table(table, path, row_group_size=128)  # several row groups per file
    return root, X, gm, parts


def test_score_writes_one_file_per_input_file_matching_sklearn(scored_setup, client):
    root, X, gm, parts = scored_setup
    run = gmm(
        root,
        "score",
        "--model",
        "m",
        "--input",
        "data",
        "--output",
        "scored",
        "--keep",
        "id,note",
        "--probabilities",
        "--scheduler",
        client.scheduler.address,
    )
    assert run.returncode == 0, run.stderr
    assert sorted(str(p.relative_to(root / "scored")) for p in (root / "scored").rglob("*.parquet")) == sorted(parts)
    sk = gm.to_sklearn()
    for name, rows in parts.items():
        table = pq.read_table(root / "scored" / name)
        assert table.schema.field("label").type == pa.int32()
        assert table.column_names == ["label", "log_likelihood", "prob_0", "prob_1", "prob_2", "id", "note"]
        np.testing.assert_array_equal(table.column("id").to_numpy(), np.arange(X.shape[0])[rows])  # input order
        np.testing.assert_array_equal(table.column("label").to_numpy(), sk.predict(X[rows]))
        np.testing.assert_allclose(table.column("log_likelihood").to_numpy(), sk.score_samples(X[rows]), rtol=1e-10)
        proba = np.column_stack([table.column(f"prob_{k}").to_numpy() for k in range(3)])
        np.testing.assert_allclose(proba, sk.predict_proba(X[rows]), rtol=1e-9, atol=1e-300)
        assert table.column("note").to_pylist()[0] == f"row{rows.start}"


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--keep", "height"], r"column 'height' to keep not found"),
        (["--keep", "label"], r"--keep 'label' would collide with an output column"),
    ],
)
def test_score_mistakes_exit_2_and_write_nothing(scored_setup, args, pattern):
    root = scored_setup[0]
    run = gmm(root, "score", "--model", "m", "--input", "data", "--output", "bad", *args)
    assert_user_error(run, pattern, root, output="bad")


def test_score_needs_the_models_features_by_name(scored_setup, tmp_path):
    root = scored_setup[0]
    pq.write_table(pa.table({"x0": [1.0], "x1": [2.0], "y": [3.0]}), tmp_path / "other.parquet")
    run = gmm(root, "score", "--model", "m", "--input", tmp_path / "other.parquet", "--output", tmp_path / "out")
    assert_user_error(run, r"column 'x2' of the model's features not found; available columns: x0, x1, y", tmp_path)


def test_select_fits_all_candidates_in_shared_passes(tmp_path):
    assert (
        gmm(
            tmp_path,
            "generate",
            "--output",
            "data",
            "--n-samples",
            6000,
            "--n-features",
            3,
            "--n-components",
            3,
            "--partitions",
            3,
            "--seed",
            5,
        ).returncode
        == 0
    )
    (tmp_path / "c.yaml").write_text(
        yaml.safe_dump({"data": {"path": "data"}, "output": {"path": "best"}, "model": {"max_iter": 60}})
    )
    run = gmm(tmp_path, "select", "c.yaml", "--k", "1..5", "--covariance-types", "full,diag", "--log-format", "json")
    assert run.returncode == 0, run.stderr
    assert "best by BIC: K=3 full" in run.stdout
    with open(tmp_path / "best" / "selection.csv") as f:
        table = list(csv.DictReader(f))
    assert [(int(r["n_components"]), r["covariance_type"]) for r in table] == [
        (k, ct) for ct in ("full", "diag") for k in range(1, 6)
    ]
    best = min(table, key=lambda r: float(r["bic"]))
    assert (best["n_components"], best["covariance_type"]) == ("3", "full")
    # One pass per iteration for all ten candidates: as many passes as the longest candidate took; each
    # candidate reports its own progress, one line per iteration while it runs.
    iterations = [json.loads(line) for line in run.stderr.splitlines() if '"iteration"' in line]
    iterations = [r for r in iterations if r["event"] == "iteration"]
    assert len({r["iteration"] for r in iterations}) == max(int(r["n_iter"]) for r in table)
    first = [r for r in iterations if r["iteration"] == 1]
    assert sorted(r["candidate"] for r in first) == sorted(
        f"K={k} {ct}" for ct in ("full", "diag") for k in range(1, 6)
    )
    for row in table:
        label = f"K={row['n_components']} {row['covariance_type']}"
        assert len([r for r in iterations if r["candidate"] == label]) == int(row["n_iter"])
    model = load_model(tmp_path / "best")
    assert model.n_components == 3 and model.covariance_type == "full"
    info = yaml.safe_load((tmp_path / "best" / "model.yaml").read_text())
    assert info["bic"] == pytest.approx(float(best["bic"]), rel=1e-12)


def test_to_sklearn_predicts_like_ours():
    X = make_blobs(71)
    for ct, dtype in (("full", "float32"), ("tied", "float64"), ("diag", "float64"), ("spherical", "float64")):
        gm = GaussianMixture(3, covariance_type=ct, random_state=0, dtype=dtype).fit(X)
        sk = gm.to_sklearn()  # sklearn's estimator has no dtype: it is left out
        np.testing.assert_array_equal(sk.predict(X), gm.predict(X))
        np.testing.assert_allclose(sk.score_samples(X), gm.score_samples(X), rtol=1e-12)


def test_report_needs_a_png_or_html_name(scored_setup):
    root = scored_setup[0]
    bad = gmm(root, "report", "m", "--output", "report.pdf")
    assert_user_error(bad, r"--output 'report\.pdf': expected a \.png or \.html file", root, output="report.pdf")


def test_inspect_shows_history_and_criteria(tmp_path):
    X = make_blobs(72)
    GaussianMixture(3, random_state=0).fit(X).save(tmp_path / "m")
    shown = gmm(tmp_path, "inspect", "m")
    assert shown.returncode == 0 and "converged after" in shown.stdout and "lower bound" in shown.stdout
    assert "history (" in shown.stdout


def test_select_refuses_a_model_directory_as_init(tmp_path):
    (tmp_path / "c.yaml").write_text("data: {path: data}\nmodel: {init_params: some/model}\n")
    run = gmm(tmp_path, "select", "c.yaml", "--k", "2..3")
    assert_user_error(run, r"model\.init_params 'some/model'.*gmm select starts every candidate afresh", tmp_path)
