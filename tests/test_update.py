"""Learning from new rows without the old ones: ``GaussianMixture.update`` and ``gmm update``.

The reference is EM with frozen statistics written here from Neal & Hinton (1998): the old rows count through
the raw sums ``S0_k = sum_i s_i r_ik``, ``S1_k = sum_i s_i r_ik x_i``, ``S2_k = sum_i s_i r_ik x_i x_i^T`` of their
responsibilities at the last fit's E-step, times ``decay``; each iteration adds the new rows' sums under the
current parameters and takes ``w = S0 / sum S0``, ``mu = S1 / S0``, ``Sigma = S2 / S0 - mu mu^T`` (+ reg_covar),
reduced to the covariance type.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import COVARIANCE_TYPES, random_params, tree_digest, write_parquet
from test_online import _explicit, _mixture_rows, _reduce, _resp

from pipeline import GaussianMixture, job, kernels, load_model
from pipeline.errors import ConvergenceWarning
from pipeline.inputs import FeatureNamesWarning
from pipeline.stopping import Stopped


def _sums(X, w, params):
    r = _resp(X, params.weights, params.means, kernels.dense_covariances(params)) * w[:, None]
    return np.array(r.sum(0)), r.T @ X, np.einsum("nk,nd,ne->kde", r, X, X)


def _m_step(s, covariance_type, reg_covar):
    s0, s1, s2 = s
    means = s1 / s0[:, None]
    full = s2 / s0[:, None, None] - means[:, :, None] * means[:, None, :]
    cov = _reduce(full, s0, covariance_type)
    cov = cov + reg_covar * (np.eye(s1.shape[1]) if covariance_type in ("full", "tied") else 1.0)
    return kernels.make_params(s0 / s0.sum(), means, cov, covariance_type)


def reference_update(old, w_old, start, new, w_new, covariance_type, decay, n_iter, reg_covar):
    """One EM iteration on ``old`` from ``start`` (the fit), then ``n_iter`` of EM on ``new`` with the old sums
    frozen at that fit's E-step and scaled by ``decay``."""
    frozen = _sums(old, w_old, start)
    params = _m_step(frozen, covariance_type, reg_covar)
    for _ in range(n_iter):
        new_sums = _sums(new, w_new, params)
        params = _m_step(tuple(decay * a + b for a, b in zip(frozen, new_sums)), covariance_type, reg_covar)
    return params


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize(("weighted", "decay"), [(False, 1.0), (True, 0.6)], ids=["unweighted-keep", "weighted-decay"])
def test_update_is_em_with_the_old_rows_statistics_frozen(covariance_type, weighted, decay):
    rng = np.random.default_rng(21)
    old, new = _mixture_rows(rng, 900), _mixture_rows(rng, 400) + 0.5
    w_old = rng.uniform(0.5, 2.0, size=len(old)) if weighted else np.ones(len(old))
    w_new = rng.uniform(0.5, 2.0, size=len(new)) if weighted else np.ones(len(new))
    start = random_params(covariance_type, k=3, d=3, seed=22)
    model = GaussianMixture(3, covariance_type=covariance_type, reg_covar=1e-4, max_iter=1, **_explicit(start))
    with pytest.warns(ConvergenceWarning):
        model.fit(old, sample_weight=w_old if weighted else None)
    model.set_params(max_iter=7, tol=0.0)
    with pytest.warns(ConvergenceWarning, match="The update did not converge"):
        model.update(new, sample_weight=w_new if weighted else None, decay=decay)
    want = reference_update(old, w_old, start, new, w_new, covariance_type, decay, 7, 1e-4)
    np.testing.assert_allclose(model.weights_, want.weights, rtol=1e-10)
    np.testing.assert_allclose(model.means_, want.means, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(model.covariances_, want.covariances, rtol=1e-9, atol=1e-10)
    assert model.n_iter_ == 7 and len(model.lower_bounds_) == 7
    assert model.n_samples_ == 1_300
    assert model.weight_sum_ == pytest.approx(decay * w_old.sum() + w_new.sum(), rel=1e-12)


def test_fit_then_update_reaches_the_refit_of_all_rows():
    rng = np.random.default_rng(23)
    old, new, held_out = _mixture_rows(rng, 20_000), _mixture_rows(rng, 20_000), _mixture_rows(rng, 5_000)
    updated = GaussianMixture(3, random_state=0, tol=1e-8).fit(old).update(new)
    refit = GaussianMixture(3, random_state=0, tol=1e-8).fit(np.vstack([old, new]))
    assert updated.converged_
    # measured: 6e-7 nats per row apart
    assert abs(updated.score(held_out) - refit.score(held_out)) < 1e-4
    assert updated.n_samples_ == 40_000


def _centres_error(model, centres):
    """Largest distance from each true centre to its nearest fitted mean."""
    distances = np.linalg.norm(model.means_[None, :, :] - centres[:, None, :], axis=2)
    return distances.min(axis=1).max()


def test_with_decay_below_one_an_update_tracks_drifting_means_and_with_one_it_does_not():
    rng = np.random.default_rng(24)
    centres = np.array([[-4.0, 0.0, 1.0], [0.0, 3.0, -2.0], [5.0, -1.0, 0.0]])
    old = _mixture_rows(rng, 20_000)
    keeping = GaussianMixture(3, random_state=0).fit(old)
    forgetting = GaussianMixture(3, random_state=0).fit(old)
    drift = np.array([0.0, 0.0, 0.0])
    for _ in range(4):  # the means move by 0.5 in x0 at every batch
        drift = drift + [0.5, 0.0, 0.0]
        batch = _mixture_rows(rng, 5_000) + drift
        keeping.update(batch, decay=1.0)
        forgetting.update(batch, decay=0.2)
    assert _centres_error(forgetting, centres + drift) < 0.3
    assert _centres_error(keeping, centres + drift) > 1.0  # the old rows hold the means back


def test_an_update_survives_save_and_load_bit_for_bit(tmp_path):
    rng = np.random.default_rng(25)
    old, new = _mixture_rows(rng, 2_000), _mixture_rows(rng, 800)
    in_memory = GaussianMixture(3, covariance_type="diag", prior="default", random_state=0).fit(old)
    in_memory.save(tmp_path / "fitted")
    loaded = load_model(tmp_path / "fitted")
    in_memory.update(new, decay=0.9)
    loaded.update(new, decay=0.9)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(in_memory, name), err_msg=name)
    assert loaded.prior_ == in_memory.prior_  # the prior resolved at the fit is kept
    loaded.save(tmp_path / "updated")
    info = yaml.safe_load((tmp_path / "updated" / "model.yaml").read_text())
    assert info["format_version"] == 3
    assert [(e["kind"], e["n_samples"], e["decay"]) for e in info["lineage"]] == [
        ("fit", 2_000, None),
        ("update", 800, 0.9),
    ]
    assert info["n_samples"] == 2_800


def test_a_dask_update_gives_the_same_bits_on_a_cluster_and_in_this_process(client):
    import dask
    import dask.array as da

    rng = np.random.default_rng(44)
    old, new = (da.from_array(_mixture_rows(rng, 3_000), chunks=700) for _ in range(2))

    def fit_then_update():
        return (
            GaussianMixture(3, covariance_type="tied", prior="default", random_state=1).fit(old).update(new, decay=0.5)
        )

    with client.as_current():
        on_cluster = fit_then_update()
    with dask.config.set(scheduler="synchronous"):
        here = fit_then_update()
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(on_cluster, name), getattr(here, name), err_msg=name)
    assert on_cluster.lower_bounds_ == here.lower_bounds_ and on_cluster.n_iter_ > 1


def test_a_stream_can_be_updated():
    rng = np.random.default_rng(26)
    model = GaussianMixture(3, random_state=0)
    for _ in range(3):
        model.partial_fit(_mixture_rows(rng, 500))
    model.update(_mixture_rows(rng, 500))
    assert model.n_samples_ == 2_000 and model.converged_
    assert [entry.kind for entry in model._kept.lineage] == ["partial_fit", "update"]


@pytest.mark.parametrize("decay", [0.0, -0.5, 1.5, float("nan"), True, "1"])
def test_a_decay_outside_zero_to_one_is_refused(decay):
    model = GaussianMixture(3, random_state=0).fit(_mixture_rows(np.random.default_rng(27), 300))
    before = model.means_.copy()
    with pytest.raises(ValueError, match=r"The 'decay' parameter of update must be a float in the range \(0, 1\]"):
        model.update(_mixture_rows(np.random.default_rng(28), 100), decay=decay)
    np.testing.assert_array_equal(model.means_, before)


def test_a_model_that_kept_nothing_cannot_be_updated(tmp_path):
    rng = np.random.default_rng(29)
    start = random_params("full", k=3, d=3, seed=30)
    given = GaussianMixture(3, max_iter=0, **_explicit(start)).fit(_mixture_rows(rng, 300)).set_params(max_iter=10)
    with pytest.raises(ValueError, match="kept no statistics of the rows it learnt from"):
        given.update(_mixture_rows(rng, 100))
    fitted = GaussianMixture(3, random_state=0).fit(_mixture_rows(rng, 300))
    fitted.save(tmp_path / "m")
    info = yaml.safe_load((tmp_path / "m" / "model.yaml").read_text())
    del info["lineage"]  # as a model written before models kept their statistics
    info["format_version"] = 2
    (tmp_path / "m" / "model.yaml").write_text(yaml.safe_dump(info))
    with pytest.raises(ValueError, match="kept no statistics"):
        load_model(tmp_path / "m").update(_mixture_rows(rng, 100))


def test_new_rows_must_have_the_models_columns():
    rng = np.random.default_rng(31)
    model = GaussianMixture(3, random_state=0).fit(pd.DataFrame(_mixture_rows(rng, 300), columns=["a", "b", "c"]))
    with pytest.warns(FeatureNamesWarning), pytest.raises(ValueError, match="X has 2 features"):
        model.update(_mixture_rows(rng, 100)[:, :2])
    with pytest.raises(ValueError, match="feature names"):
        model.update(pd.DataFrame(_mixture_rows(rng, 100), columns=["a", "b", "z"]))


# --------------------------------------------------------------------------- #
# gmm update
# --------------------------------------------------------------------------- #
def invoke(cwd, monkeypatch, *args) -> subprocess.CompletedProcess:
    """The ``gmm`` click command in this process, run in ``cwd``."""
    from click.testing import CliRunner

    from pipeline.cli import main

    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(main, list(map(str, args)))
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


NAMES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, client):
    """A model fitted by ``gmm fit`` on old data (3 files, a weight column, a MAP prior), and new data beside it."""
    root = tmp_path_factory.mktemp("update")
    rng = np.random.default_rng(40)
    old, new = _mixture_rows(rng, 3_000), _mixture_rows(rng, 1_500) + [0.5, 0.0, 0.0]
    weights = rng.uniform(0.5, 2.0, size=len(new))
    write_parquet(root / "old", old, n_files=3, names=NAMES, extra={"w": np.ones(len(old))})
    write_parquet(root / "new", new, n_files=2, names=NAMES, extra={"w": weights})
    (root / "c.yaml").write_text(
        yaml.safe_dump(
            {
                "data": {"path": str(root / "old"), "weight_column": "w"},
                "model": {"n_components": 3, "covariance_type": "diag", "prior": "default", "tol": 1e-8},
                "cluster": {"address": client.scheduler.address},
                "output": {"path": "m"},
            }
        )
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        run = invoke(root, monkeypatch, "fit", "c.yaml")
    assert run.returncode == 0, run.stderr
    shutil.rmtree(root / "old")  # gone: every update here runs without the data the model was fitted on
    return root, new, weights


def _update(cwd, monkeypatch, client, *args):
    return invoke(cwd, monkeypatch, "update", "--scheduler", client.scheduler.address, *args)


def test_gmm_update_never_reads_the_old_data_and_equals_the_estimators_update(fitted, tmp_path, monkeypatch, client):
    root, new, weights = fitted
    shutil.copytree(root / "m", tmp_path / "m")
    shutil.copytree(root / "new", tmp_path / "new")  # the old data are not copied: they are gone
    run = _update(tmp_path, monkeypatch, client, "--model", "m", "--input", "new", "--output", "u", "--decay", "0.8")
    assert run.returncode == 0, run.stderr
    updated = load_model(tmp_path / "u")
    want = load_model(tmp_path / "m").update(pd.DataFrame(new, columns=NAMES), sample_weight=weights, decay=0.8)
    for name in ("weights_", "means_", "covariances_"):  # the same arithmetic, summed over other blocks
        np.testing.assert_allclose(getattr(updated, name), getattr(want, name), rtol=1e-9, atol=1e-12, err_msg=name)
    assert updated.prior_ == load_model(tmp_path / "m").prior_
    info = yaml.safe_load((tmp_path / "u" / "model.yaml").read_text())
    fit, update = info["lineage"]
    assert (fit["kind"], fit["n_samples"], fit["data"]) == ("fit", 3_000, str(root / "old"))
    assert (update["kind"], update["n_samples"], update["decay"], update["data"]) == ("update", 1_500, 0.8, "new")
    assert update["weight_sum"] == pytest.approx(weights.sum(), rel=1e-12)
    assert info["n_samples"] == 4_500 and info["config"]["data"]["path"] == "new"

    # the same update again: nothing to do; another decay, or --force: done again
    before = tree_digest(tmp_path / "u")
    again = _update(tmp_path, monkeypatch, client, "--model", "m", "--input", "new", "--output", "u", "--decay", "0.8")
    assert again.returncode == 0 and "nothing to do" in again.stderr, again.stderr
    assert tree_digest(tmp_path / "u") == before
    other = _update(tmp_path, monkeypatch, client, "--model", "m", "--input", "new", "--output", "u")
    assert other.returncode == 0 and "iteration 1:" in other.stderr, other.stderr
    # updates chain
    chained = _update(tmp_path, monkeypatch, client, "--model", "u", "--input", "new", "--output", "u2")
    assert chained.returncode == 0, chained.stderr
    assert [e["kind"] for e in yaml.safe_load((tmp_path / "u2" / "model.yaml").read_text())["lineage"]] == [
        "fit",
        "update",
        "update",
    ]


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (("--decay", "0"), r"--decay.*0<x<=1"),
        (("--decay", "1.5"), r"--decay.*0<x<=1"),
        (("--output", "m"), r"--output 'm'"),
        (("--output", "new/inside"), r"--output 'new/inside'.*inside --input"),
        (("--model", "new"), r"new: not a model directory"),
    ],
    ids=["decay-0", "decay-above-1", "over-the-model", "inside-the-input", "not-a-model"],
)
def test_gmm_update_mistakes_are_one_error_line_and_nothing_written(
    fitted, tmp_path, monkeypatch, client, args, pattern
):
    root, _, _ = fitted
    shutil.copytree(root / "m", tmp_path / "m")
    shutil.copytree(root / "new", tmp_path / "new")
    given = dict(zip(args[::2], args[1::2]))
    options = {"--model": "m", "--input": "new", "--output": "out", **given}
    before = tree_digest(tmp_path)
    run = _update(tmp_path, monkeypatch, client, *[part for item in options.items() for part in item])
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert lines[-1].startswith("error:") and re.search(pattern, lines[-1]), run.stderr
    assert "Traceback" not in run.stderr
    assert tree_digest(tmp_path) == before


def test_gmm_update_names_a_missing_column_and_refuses_a_model_that_kept_nothing(fitted, tmp_path, monkeypatch, client):
    root, new, _ = fitted
    shutil.copytree(root / "m", tmp_path / "m")
    write_parquet(tmp_path / "renamed", new, n_files=1, names=["a", "b", "z"], extra={"w": np.ones(len(new))})
    run = _update(tmp_path, monkeypatch, client, "--model", "m", "--input", "renamed", "--output", "out")
    last = run.stderr.strip().splitlines()[-1]
    assert run.returncode == 2 and "column 'c' of the model's features not found" in last, run.stderr
    info = yaml.safe_load((tmp_path / "m" / "model.yaml").read_text())
    del info["lineage"]  # as a model written before models kept their statistics
    info["format_version"] = 2
    (tmp_path / "m" / "model.yaml").write_text(yaml.safe_dump(info))
    shutil.copytree(root / "new", tmp_path / "new")
    run = _update(tmp_path, monkeypatch, client, "--model", "m", "--input", "new", "--output", "out")
    assert run.returncode == 2, run.stderr
    assert "m/model.yaml: the model kept no statistics of the data it learnt from" in run.stderr
    assert not (tmp_path / "out").exists()


def test_a_stopped_update_resumes_from_its_checkpoint_to_the_same_bytes(fitted, tmp_path, client):
    root, _, _ = fitted
    shutil.copytree(root / "m", tmp_path / "m")
    shutil.copytree(root / "new", tmp_path / "new")
    scheduler = client.scheduler.address
    whole = job.update(str(tmp_path / "m"), str(tmp_path / "new"), str(tmp_path / "whole"), 0.7, scheduler=scheduler)
    assert whole.n_iter > 3, "too few iterations to stop in the middle"

    def stop_at_iteration_2(event):  # as a SIGTERM stops it: the checkpoint of iteration 2 stays
        if event["event"] == "iteration" and event["iteration"] == 2:
            raise Stopped("SIGTERM")

    resumed = str(tmp_path / "resumed")
    with pytest.raises(Stopped):
        job.update(
            str(tmp_path / "m"), str(tmp_path / "new"), resumed, 0.7, scheduler=scheduler, emit=stop_at_iteration_2
        )
    assert (tmp_path / "resumed.checkpoint.npz").exists() and not (tmp_path / "resumed").exists()
    events: list[dict] = []
    job.update(str(tmp_path / "m"), str(tmp_path / "new"), resumed, 0.7, scheduler=scheduler, emit=events.append)
    assert [(e["event"], e.get("iteration")) for e in events if e["event"] in ("resume", "restart")] == [("resume", 2)]
    assert (tmp_path / "resumed" / "model.npz").read_bytes() == (tmp_path / "whole" / "model.npz").read_bytes()
    # a checkpoint of another decay is not this update's
    with pytest.raises(Stopped):
        job.update(
            str(tmp_path / "m"),
            str(tmp_path / "new"),
            str(tmp_path / "other"),
            0.7,
            scheduler=scheduler,
            emit=stop_at_iteration_2,
        )
    events.clear()
    job.update(
        str(tmp_path / "m"),
        str(tmp_path / "new"),
        str(tmp_path / "other"),
        0.5,
        scheduler=scheduler,
        emit=events.append,
    )
    assert [e["event"] for e in events if e["event"] in ("resume", "restart")] == ["restart"]


def test_a_gmm_fit_of_an_updated_models_config_is_not_taken_for_done(fitted, tmp_path, monkeypatch, client):
    root, _, _ = fitted
    shutil.copytree(root / "m", tmp_path / "m")
    shutil.copytree(root / "new", tmp_path / "new")
    assert _update(tmp_path, monkeypatch, client, "--model", "m", "--input", "new", "--output", "u").returncode == 0
    config = yaml.safe_load((tmp_path / "u" / "model.yaml").read_text())["config"]  # data.path: new, output: u
    (tmp_path / "again.yaml").write_text(yaml.safe_dump({**config, "cluster": {"address": client.scheduler.address}}))
    run = invoke(tmp_path, monkeypatch, "fit", "again.yaml")
    assert run.returncode == 0 and "iteration 1:" in run.stderr and "nothing to do" not in run.stderr, run.stderr
    assert [e["kind"] for e in yaml.safe_load((tmp_path / "u" / "model.yaml").read_text())["lineage"]] == ["fit"]


def test_an_update_of_another_model_with_the_same_lineage_is_not_skipped(tmp_path, monkeypatch, client):
    rng = np.random.default_rng(41)
    first, second, new = _mixture_rows(rng, 900), _mixture_rows(rng, 900) * 2.0, _mixture_rows(rng, 300)
    write_parquet(tmp_path / "new", new, n_files=1, names=NAMES)
    # the same settings, other rows: other models; given one lineage, as if fitted in the same second on the same
    # number of rows (an estimator's lineage has no fingerprint of an array)
    GaussianMixture(3, random_state=0).fit(pd.DataFrame(first, columns=NAMES)).save(tmp_path / "one")
    GaussianMixture(3, random_state=0).fit(pd.DataFrame(second, columns=NAMES)).save(tmp_path / "other")
    one, other = (yaml.safe_load((tmp_path / name / "model.yaml").read_text()) for name in ("one", "other"))
    other["lineage"] = one["lineage"]
    (tmp_path / "other" / "model.yaml").write_text(yaml.safe_dump(other))
    assert _update(tmp_path, monkeypatch, client, "--model", "one", "--input", "new", "--output", "u").returncode == 0
    run = _update(tmp_path, monkeypatch, client, "--model", "other", "--input", "new", "--output", "u")
    assert run.returncode == 0 and "nothing to do" not in run.stderr, run.stderr
    want = load_model(tmp_path / "other").update(pd.DataFrame(new, columns=NAMES))
    np.testing.assert_allclose(load_model(tmp_path / "u").means_, want.means_, rtol=1e-9)


def test_a_marginalizing_models_update_adds_what_nan_policy_did(tmp_path, monkeypatch, client):
    rng = np.random.default_rng(42)
    old, new = _mixture_rows(rng, 900), _mixture_rows(rng, 300)
    old[::9, 1], new[::10, 2] = np.nan, np.nan
    write_parquet(tmp_path / "old", old, n_files=2, names=NAMES)
    write_parquet(tmp_path / "new", new, n_files=1, names=NAMES)
    (tmp_path / "c.yaml").write_text(
        yaml.safe_dump(
            {
                "data": {"path": "old", "nan_policy": "marginalize"},
                "model": {"n_components": 3},
                "cluster": {"address": client.scheduler.address},
                "output": {"path": "m"},
            }
        )
    )
    assert invoke(tmp_path, monkeypatch, "fit", "c.yaml").returncode == 0
    run = _update(tmp_path, monkeypatch, client, "--model", "m", "--input", "new", "--output", "u")
    assert run.returncode == 0, run.stderr
    missing = yaml.safe_load((tmp_path / "u" / "model.yaml").read_text())["missing"]
    assert missing == {
        "nan_policy": "marginalize",
        "n_missing_values": 100 + 30,
        "n_incomplete_rows": 130,
        "n_dropped_rows": 0,
    }


@pytest.mark.parametrize(
    ("damage", "pattern"),
    [
        ({"config": {"model": "x"}}, r"m/model\.yaml: config\.model is not a mapping"),
        ({"config": {"data": [1, 2]}}, r"m/model\.yaml: config\.data is not a mapping"),
    ],
    ids=["model-not-a-mapping", "data-not-a-mapping"],
)
def test_a_hostile_model_yaml_is_one_error_line(fitted, tmp_path, monkeypatch, client, damage, pattern):
    root, _, _ = fitted
    shutil.copytree(root / "m", tmp_path / "m")
    shutil.copytree(root / "new", tmp_path / "new")
    info = yaml.safe_load((tmp_path / "m" / "model.yaml").read_text())
    (tmp_path / "m" / "model.yaml").write_text(yaml.safe_dump({**info, **damage}))
    run = _update(tmp_path, monkeypatch, client, "--model", "m", "--input", "new", "--output", "out")
    assert run.returncode == 2 and re.search(pattern, run.stderr.strip().splitlines()[-1]), run.stderr
    assert not (tmp_path / "out").exists()


def test_a_model_url_no_file_system_takes_is_one_error_line(tmp_path, monkeypatch, client):
    run = _update(tmp_path, monkeypatch, client, "--model", "nosuchprotocol://x/m", "--input", "new", "--output", "o")
    assert run.returncode == 2 and run.stderr.strip().splitlines()[-1].startswith(
        "error: --model 'nosuchprotocol://x/m': cannot open it"
    ), run.stderr


def test_an_update_takes_at_least_one_iteration():
    rng = np.random.default_rng(43)
    model = GaussianMixture(3, random_state=0).fit(_mixture_rows(rng, 300)).set_params(max_iter=0)
    with pytest.raises(ValueError, match="update takes at least one iteration: max_iter is 0"):
        model.update(_mixture_rows(rng, 100))
