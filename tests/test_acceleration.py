"""SQUAREM (``acceleration: squarem``): its point is the paper's, its safeguard holds, and it reaches plain EM's
optimum in fewer passes, bit-identically on any cluster and after a kill.

The point is checked against the formula of Varadhan & Roland (2008), scheme 3, written here over the vector of
weights, means and covariances; the optimum against plain EM run to a tighter tolerance.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import yaml
from helpers import COVARIANCE_TYPES, gmm, kill_at_line, random_params, write_config, write_parquet

from pipeline import GaussianMixture, kernels
from pipeline.kernels.acceleration import Cycle, Squarem, extrapolate
from pipeline.kernels.algorithms import EMStep
from pipeline.kernels.online import IncrementalStep, Learned
from pipeline.kernels.steps import Scores


def overlapping(seed=0, n=6000, d=4, k=4):
    """Components whose means lie about one standard deviation apart: plain EM converges slowly."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=1.2, size=(k, d))
    parts = [rng.normal(size=(n // k, d)) @ (np.eye(d) + 0.3 * rng.normal(size=(d, d))) + m for m in means]
    return np.concatenate(parts)


def vector(p):
    return np.concatenate([p.weights.ravel(), p.means.ravel(), p.covariances.ravel()])


def mix(p, towards):
    """``p`` moved to ``(1 - sum t) p + sum t q`` for ``(q, t)`` in ``towards``: a mixture too."""
    parts = {name: (1 - sum(t for _, t in towards)) * getattr(p, name) for name in ("weights", "means", "covariances")}
    for q, t in towards:
        parts = {name: value + t * getattr(q, name) for name, value in parts.items()}
    return kernels.make_params(parts["weights"], parts["means"], parts["covariances"], p.covariance_type)


def nearby(p, scale, seed):
    """``p`` moved a little (still a mixture)."""
    rng = np.random.default_rng(seed)
    weights = p.weights * np.exp(scale * rng.normal(size=p.weights.shape))
    dense = kernels.is_dense(p.covariance_type)
    covariances = p.covariances + scale * np.eye(p.n_features) if dense else p.covariances * (1 + scale)
    means = p.means + scale * rng.normal(size=p.means.shape)
    return kernels.make_params(weights / weights.sum(), means, covariances, p.covariance_type)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_the_point_is_the_papers_scheme_3(covariance_type):
    # EM's steps shrinking by 0.6 each (a linear rate), in a direction that turns a little
    p0, q1, q2 = (random_params(covariance_type, seed=s) for s in (1, 2, 3))
    p1, p2 = mix(p0, [(q1, 0.05)]), mix(p0, [(q1, 0.08), (q2, 0.004)])
    r = vector(p1) - vector(p0)
    v = vector(p2) - 2 * vector(p1) + vector(p0)
    alpha = np.linalg.norm(r) / np.linalg.norm(v)
    assert 2 < alpha < 3
    point, got_alpha = extrapolate(p0, p1, p2, 1e-6, step_max=np.inf)
    want = vector(p0) + 2 * alpha * r + alpha**2 * v
    want[: p0.n_components] /= want[: p0.n_components].sum()
    assert got_alpha == pytest.approx(alpha, rel=1e-12)
    np.testing.assert_allclose(vector(point), want, rtol=1e-12, atol=1e-12)
    capped, capped_alpha = extrapolate(p0, p1, p2, 1e-6, step_max=1.25)  # the cap holds
    assert capped_alpha == 1.25
    np.testing.assert_allclose(vector(capped)[3:], (vector(p0) + 2.5 * r + 1.25**2 * v)[3:], rtol=1e-12)


def test_no_point_where_the_step_would_be_p2_or_no_mixture():
    p0 = random_params("diag", seed=4)
    p1 = nearby(p0, 0.02, 5)
    assert extrapolate(p0, p1, p1, 1e-6, np.inf) is None  # |r| = |v|: a = 1, the point would be p2 itself
    assert extrapolate(p0, p1, nearby(p1, 0.5, 6), 1e-6, np.inf) is None  # |r| < |v|
    # variances c, 0.6 c, 0.3 c: r = -0.4 c, v = 0.1 c, a = 4 gives -0.6 c; halved towards 1, a = 1.375 gives 0.089 c
    shrinking = [kernels.make_params(p0.weights, p0.means, p0.covariances * f, "diag") for f in (1.0, 0.6, 0.3)]
    point, alpha = extrapolate(*shrinking, reg_covar=1e-6, step_max=np.inf)
    assert alpha == 1.375
    np.testing.assert_allclose(point.covariances, 0.0890625 * p0.covariances, rtol=1e-9)
    # below reg_covar = half the least variance at every a tried (1 - 0.8 a + 0.1 a^2 < 0.5 for 1 < a < 7.3)
    assert extrapolate(*shrinking, reg_covar=0.5 * p0.covariances.min(), step_max=np.inf) is None


def test_a_point_that_is_not_a_mixture_is_moved_towards_p2():
    p0 = random_params("spherical", seed=7)
    w = np.array([0.5, 0.3, 0.2])
    steps = [kernels.make_params(w + dw, p0.means, p0.covariances, "spherical") for dw in (0, [-0.1, 0.05, 0.05])]
    p2 = kernels.make_params(w + [-0.19, 0.095, 0.095], p0.means, p0.covariances, "spherical")
    point, alpha = extrapolate(steps[0], steps[1], p2, 1e-6, step_max=np.inf)
    # |r| / |v| = 10 gives the first weight -0.5; a = 5.5 and 3.25 give it below 0 too, a = 2.125 does not
    assert alpha == pytest.approx(2.125, rel=1e-12)
    assert (point.weights > 0).all() and point.weights.sum() == pytest.approx(1.0)


def _step(covariance_type="full", prior=None):
    return Squarem(IncrementalStep(EMStep(covariance_type, 1e-6, prior), None))


def _stats_at(X, params):
    prep = kernels.prepare(params)
    return kernels.block_statistics(X, None, prep), prep.shift


def test_a_rejected_point_goes_on_from_p2_with_the_scores_of_p1():
    X = overlapping(1, n=800, d=2, k=3)
    step = _step()
    p2 = Learned(random_params("full", k=3, d=2, seed=8), None)
    bad = random_params("full", k=3, d=2, seed=9)  # far from the data: a low likelihood
    fallback = Scores(-2.5, -2.5)
    cycle = Cycle(p2, 2, point=bad, fallback=fallback, alpha=16.0, step_max=16.0)
    stats, shift = _stats_at(X, bad)
    assert stats.log_likelihood / stats.weight_sum < fallback.objective
    new, scores = step.advance(stats, shift, cycle)
    assert scores == Scores(-2.5, -2.5, "rejected")
    assert new.state is p2 and new.phase == 0 and new.step_max == 4.0  # the cap falls with a rejection at the cap
    # the same point, kept when it is better than p1
    new, scores = step.advance(stats, shift, Cycle(p2, 2, point=bad, fallback=Scores(-1e9, -1e9), alpha=2.0))
    assert scores.kind == "extrapolated" and new.phase == 0 and new.state is not p2
    assert scores.lower_bound == pytest.approx(stats.log_likelihood / stats.weight_sum, rel=1e-15)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_a_cycle_survives_its_arrays(covariance_type):
    step = _step(covariance_type)
    p = [random_params(covariance_type, seed=s) for s in range(3)]
    cycles = [
        Cycle(Learned(p[0], None)),
        Cycle(Learned(p[1], None), 1, previous=p[0], step_max=16.0),
        Cycle(Learned(p[2], None), 2, point=p[1], fallback=Scores(-1.5, -1.25), alpha=3.5),
    ]
    for cycle in cycles:
        back = step.from_arrays(step.arrays(cycle))
        assert (back.phase, back.alpha, back.step_max, back.fallback) == (
            cycle.phase,
            cycle.alpha,
            cycle.step_max,
            cycle.fallback,
        )
        for got, want in ((back.state.params, cycle.state.params), (back.previous, cycle.previous)):
            if want is not None:
                np.testing.assert_array_equal(vector(got), vector(want))
    arrays = step.arrays(cycles[1])
    del arrays["squarem_previous_means"], arrays["squarem_previous_weights"]
    with pytest.raises(ValueError, match="SQUAREM cycle is inconsistent"):
        step.from_arrays(arrays)


CASES = {
    **{ct: {"covariance_type": ct} for ct in COVARIANCE_TYPES},
    "full, prior": {"covariance_type": "full", "prior": "default"},
    "diag, weights": {"covariance_type": "diag", "weights": True},
    "tied, missing values": {"covariance_type": "tied", "nan_policy": "marginalize", "missing": True},
}


@pytest.mark.parametrize("case", CASES)
def test_squarem_reaches_plain_ems_optimum_in_fewer_passes(case):
    params = dict(CASES[case])
    weights = params.pop("weights", False)
    missing = params.pop("missing", False)
    X = overlapping(2)
    if missing:
        X[np.random.default_rng(3).uniform(size=X.shape) < 0.05] = np.nan
    w = np.random.default_rng(4).uniform(0.5, 2.0, len(X)) if weights else None
    common = dict(n_components=4, random_state=0, max_iter=3000, **params)
    fits = {
        (acceleration, tol): GaussianMixture(tol=tol, acceleration=acceleration, **common).fit(X, sample_weight=w)
        for acceleration in ("none", "squarem")
        for tol in (1e-6, 1e-11)
    }
    plain, fast = fits["none", 1e-11], fits["squarem", 1e-11]  # both at the optimum
    assert plain.converged_ and fast.converged_ and plain.n_iter_ > 60
    assert fast.lower_bound_ == pytest.approx(plain.lower_bound_, rel=1e-8, abs=0)
    assert fast.n_iter_ < plain.n_iter_ / 2, (fast.n_iter_, plain.n_iter_)
    assert fits["squarem", 1e-6].n_iter_ < fits["none", 1e-6].n_iter_
    bounds = np.array(fast.lower_bounds_)
    if "prior" not in params:  # MAP EM never lowers the log-posterior; its lower bound may fall a little
        assert (np.diff(bounds) >= -1e-12 * np.abs(bounds[1:])).all()
    assert len(bounds) == fast.n_iter_


@pytest.fixture(scope="module")
def parquet(tmp_path_factory):
    path = tmp_path_factory.mktemp("squarem") / "data"
    write_parquet(path, overlapping(5, n=40_000), n_files=4)
    return path


def test_bit_identical_on_one_and_three_workers_and_after_a_kill_mid_cycle(parquet, tmp_path):
    model = {"n_components": 4, "tol": 0.0, "max_iter": 12, "acceleration": "squarem"}
    write_config(tmp_path / "a.yaml", data={"path": str(parquet)}, model=model, output={"path": "a"})
    write_config(
        tmp_path / "b.yaml", data={"path": str(parquet)}, model=model, output={"path": "b"}, cluster={"n_workers": 1}
    )
    write_config(
        tmp_path / "c.yaml", data={"path": str(parquet)}, model=model, output={"path": "c"}, cluster={"n_workers": 3}
    )
    uninterrupted = gmm(tmp_path, "fit", "a.yaml")
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    assert "extrapolation=kept" in uninterrupted.stderr
    assert gmm(tmp_path, "fit", "c.yaml").returncode == 0
    # killed with a point to try next (phase 2: after iteration 5 with no step rejected); a loaded machine may let the
    # fit run on past it before the kill lands, so again at iteration 8 (resuming from the first kill's checkpoint)
    for line in ("iteration 5:", "iteration 8:"):
        kill_at_line(tmp_path, line, "fit", "b.yaml")
        with np.load(tmp_path / "b.checkpoint.npz") as saved:
            if "run0_squarem_point_means" in saved.files:
                break
    else:
        pytest.fail("no kill landed in a cycle's phase 2")
    resumed = gmm(tmp_path, "fit", "b.yaml")
    assert resumed.returncode == 0 and re.search(r"resuming from iteration \d+", resumed.stderr), resumed.stderr
    npz = {name: (tmp_path / name / "model.npz").read_bytes() for name in "abc"}
    assert npz["a"] == npz["b"] == npz["c"]
    with np.load(tmp_path / "a" / "model.npz") as arrays:  # the model, not the cycle around it
        assert not any(name.startswith("squarem") for name in arrays.files)
    info = yaml.safe_load((tmp_path / "a" / "model.yaml").read_text())
    assert info["n_iter"] == 12 and info["parameters"]["acceleration"] == "squarem"


def test_squarem_is_refused_with_the_variational_mixture(tmp_path):
    write_parquet(tmp_path / "data", overlapping(6, n=400), n_files=1)
    write_config(
        tmp_path / "c.yaml",
        data={"path": "data"},
        model={"algorithm": "variational", "acceleration": "squarem"},
        output={"path": "out"},
    )
    run = gmm(tmp_path, "fit", "c.yaml")
    assert run.returncode == 2 and not (tmp_path / "out").exists()
    assert "model.acceleration: squarem applies only with model.algorithm: em" in run.stderr
    write_config(tmp_path / "d.yaml", data={"path": "data"}, model={"acceleration": "fast"}, output={"path": "out"})
    run = gmm(tmp_path, "fit", "d.yaml")
    assert run.returncode == 2 and "model.acceleration" in run.stderr and "squarem" in run.stderr
    with pytest.raises(ValueError, match="The 'acceleration' parameter of GaussianMixture must be a str among"):
        GaussianMixture(acceleration="SQUAREM").fit(overlapping(6, n=400))


def test_a_selection_fits_each_candidate_as_its_own_fit_would(parquet, tmp_path):
    model = {"tol": 1e-6, "max_iter": 200, "acceleration": "squarem"}
    write_config(tmp_path / "s.yaml", data={"path": str(parquet)}, model=model, output={"path": "sel"})
    selected = gmm(tmp_path, "select", "s.yaml", "--k", "3..4", "--covariance-types", "full,diag")
    assert selected.returncode == 0, selected.stderr
    best = yaml.safe_load((tmp_path / "sel" / "model.yaml").read_text())
    k, ct = best["n_components"], best["covariance_type"]
    one = {**model, "n_components": k, "covariance_type": ct}
    write_config(tmp_path / "f.yaml", data={"path": str(parquet)}, model=one, output={"path": "fit"})
    assert gmm(tmp_path, "fit", "f.yaml").returncode == 0
    with np.load(tmp_path / "sel" / "model.npz") as a, np.load(tmp_path / "fit" / "model.npz") as b:
        for name in ("weights", "means", "covariances"):
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
