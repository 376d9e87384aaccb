"""mclust's ``EVE`` and ``VVE`` M-steps (:mod:`pipeline.kernels.common_orientation`) against the naive reference,
mclust's fits and the formulas.

The reference (tests/reference_mclust.py) finds the common orientation by Browne & McNicholas's MM algorithm from
``D = I``; mclust's fixtures (tests/data/mclust) hold mclust 6.0.0's fitted ``EVE`` and ``VVE`` mixtures on four real
data sets.  ``F = sum_k n_k log det Sigma_k + tr(Sigma_k^-1 W_k)`` is what the M-step minimises; the closed forms
given an orientation ``D`` and the stationarity equations (Flury 1984) are written here from the formulas.
"""

from __future__ import annotations

import numpy as np
import pytest
import reference_mclust as ref
import scipy.linalg
from helpers import fixture_fits, json_fixtures
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from pipeline.kernels import common_orientation as eve_vve
from pipeline.kernels.common_orientation import common_orientation, eve, vve

pytestmark = pytest.mark.filterwarnings("error")  # no division by zero, no NaN, anywhere

ESTIMATE = {"EVE": eve, "VVE": vve}
REFERENCE = {"EVE": ref._eve, "VVE": ref._vve}
FIXTURES = json_fixtures("mclust")
FITS = fixture_fits(FIXTURES, lambda fit: fit["model"] in ESTIMATE)
RANDOM = [pytest.param(seed, model, id=f"{model}-seed{seed}") for seed in range(4) for model in ("EVE", "VVE")]
# many minima (11 starts end at 7 values): the four best after a sweep miss the reference's, the others find it
HARD = [pytest.param(116, 8, 16, 1.0, "VVE", id="VVE-K8-D16")]


def _fixture(name, i):
    """mclust's fit and the statistics of an E-step at it: the model, ``n_k``, ``W_k``, mclust's covariances and the
    data's standard deviations."""
    doc = FIXTURES[name]
    fit = doc["fits"][i]
    X = np.asarray(doc["X"], dtype=float)
    pro, mean, sigma = (np.asarray(fit[key], dtype=float) for key in ("pro", "mean", "sigma"))
    log_joint = np.column_stack([np.log(p) + multivariate_normal(m, s).logpdf(X) for p, m, s in zip(pro, mean, sigma)])
    resp = np.exp(log_joint - logsumexp(log_joint, axis=1)[:, None])
    nk, _, scatter = ref.component_statistics(X, resp)
    return fit["model"], nk, scatter, sigma, X.std(axis=0)


def _random(seed, k=None, d=None, spread=0.5):
    """``n_k`` and ``W_k`` of samples from ``K`` Gaussians whose axes are one random orientation perturbed by
    ``spread``, with log-normal axis lengths."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 6)) if k is None else k
    d = int(rng.integers(2, 7)) if d is None else d
    base = np.linalg.qr(rng.normal(size=(d, d)))[0]
    nk = rng.integers(d + 5, 300, size=k).astype(float)
    scatter = []
    for n in nk:
        axes = np.linalg.qr(base + spread * rng.normal(size=(d, d)))[0]
        X = (rng.normal(size=(int(n), d)) * np.exp(rng.normal(size=d))) @ axes.T
        scatter.append(X.T @ X)
    return nk, np.stack(scatter)


def _covariances(model, directions, nk, scatter):
    """The model's covariances for an orientation, in closed form: ``b_k = diag(D^T W_k D)``; VVE ``Lambda_k = b_k /
    n_k``; EVE ``lambda b_k / g_k`` with ``g_k = prod(b_k)^(1/d)``, ``lambda = sum_k g_k / n``."""
    b = np.einsum("il,kij,jl->kl", directions, scatter, directions)
    if model == "VVE":
        diagonals = b / nk[:, None]
    else:
        g = np.exp(np.log(b).mean(axis=1))
        diagonals = g.sum() / nk.sum() * b / g[:, None]
    return np.stack([directions @ np.diag(values) @ directions.T for values in diagonals])


def _stationarity(directions, covariances, scatter):
    """Flury's equations at an orientation: ``sum_k C_k,ij (1/lambda_ki - 1/lambda_kj)`` for ``i < j``, ``C_k = D^T
    W_k D``, relative to the sum of the terms' sizes (0 at a stationary point of ``F``)."""
    projected = np.einsum("il,kij,jm->klm", directions, scatter, directions)
    inverse = 1 / np.einsum("il,kij,jl->kl", directions, covariances, directions)
    terms = projected * (inverse[:, :, None] - inverse[:, None, :])
    upper = np.triu_indices(directions.shape[0], 1)
    return np.abs(terms.sum(axis=0)[upper]) / np.maximum(np.abs(terms).sum(axis=0)[upper], np.finfo(float).tiny)


def _start(index, nk, scatter):
    """The orientation a start index names: the identity, the eigenvectors of sum_k W_k, of sum_k W_k / n_k, of W_k."""
    d = scatter.shape[-1]
    if index == 0:
        return np.eye(d)
    pooled = [scatter.sum(axis=0), (scatter / nk[:, None, None]).sum(axis=0), *scatter]
    return np.linalg.eigh(pooled[index - 1])[1]


def _check_constraints(model, covariances, directions):
    """Symmetric to the bit, diagonal in the common orientation, and for EVE one volume."""
    np.testing.assert_array_equal(covariances, np.swapaxes(covariances, 1, 2))
    rotated = np.swapaxes(directions, 0, 1) @ covariances @ directions
    off = rotated - rotated * np.eye(directions.shape[0])
    assert np.abs(off).max() <= 1e-12 * np.abs(rotated).max()
    volumes = np.exp(np.linalg.slogdet(covariances)[1] / directions.shape[0])
    if model == "EVE":
        np.testing.assert_allclose(volumes, volumes[0], rtol=1e-12)


@pytest.mark.parametrize("name, i", FITS)
def test_no_higher_than_the_reference_on_mclusts_data(name, i):
    model, nk, scatter, _, _ = _fixture(name, i)
    ours = ESTIMATE[model](nk, scatter)
    theirs = REFERENCE[model](scatter, nk, 1e-14, 20_000)
    ours_value, theirs_value = ref.objective(ours, scatter, nk), ref.objective(theirs, scatter, nk)
    assert ours_value <= theirs_value + 1e-10 * abs(theirs_value)


@pytest.mark.parametrize("seed, model", RANDOM)
def test_no_higher_than_the_reference_on_random_scatter(seed, model):
    nk, scatter = _random(seed)
    ours = ESTIMATE[model](nk, scatter)
    theirs = REFERENCE[model](scatter, nk, 1e-13, 5_000)
    ours_value, theirs_value = ref.objective(ours, scatter, nk), ref.objective(theirs, scatter, nk)
    assert ours_value <= theirs_value + 1e-10 * abs(theirs_value)


@pytest.mark.parametrize("seed, k, d, spread, model", HARD)
def test_no_higher_than_the_reference_where_minima_are_many(seed, k, d, spread, model):
    nk, scatter = _random(seed, k=k, d=d, spread=spread)
    ours = ESTIMATE[model](nk, scatter)
    theirs = REFERENCE[model](scatter, nk, 1e-13, 20_000)
    ours_value, theirs_value = ref.objective(ours, scatter, nk), ref.objective(theirs, scatter, nk)
    assert ours_value <= theirs_value + 1e-10 * abs(theirs_value)


@pytest.mark.parametrize("name, i", [case for case in FITS if "EVE" in case.id])
def test_mclusts_eve_optimum_is_a_fixed_point(name, i):
    """One M-step at mclust's optimum gives it back.  mclust's MM stops at a relative change of ``F`` of 1e-12, not
    at a stationary point: there ``F`` is up to 4.5e-8 above ours and Flury's equations off by up to 5e-4 relative
    (ours 5e-14), so the tolerance is 3e-5 of the data's scale (banknote G=2: 2.2e-5; the others below 5e-6)."""
    model, nk, scatter, sigma, scale = _fixture(name, i)
    ours = eve(nk, scatter)
    outer = np.outer(scale, scale)
    np.testing.assert_allclose(ours / outer, sigma / outer, rtol=0, atol=3e-5)
    assert ref.objective(ours, scatter, nk) <= ref.objective(sigma, scatter, nk) + 1e-12 * nk.sum()


@pytest.mark.parametrize("name, i", [case for case in FITS if "VVE" in case.id])
def test_below_mclusts_vve(name, i):
    """mclust's VVE leaves ``1/lambda_k`` out of its MM steps: its fixed point is not the maximum-likelihood one."""
    model, nk, scatter, sigma, _ = _fixture(name, i)
    assert ref.objective(vve(nk, scatter), scatter, nk) < ref.objective(sigma, scatter, nk) - 0.1


@pytest.mark.parametrize(
    "nk, scatter",
    [
        pytest.param(*_fixture(name, i)[1:3], id=f"{name}-{FIXTURES[name]['fits'][i]['model']}")
        for name, i in [case.values for case in FITS]
    ]
    + [
        pytest.param(*_random(seed, k=5, d=6, spread=spread), id=f"random-{seed}-{spread}")
        for seed in range(4)
        for spread in (0.1, 1.0)
    ],
)
@pytest.mark.parametrize("model", ["EVE", "VVE"])
def test_a_stationary_minimum_reached_by_falling_rounds(model, nk, scatter):
    found = common_orientation(nk, scatter, common_volume=model == "EVE")
    assert found.converged
    covariances = ESTIMATE[model](nk, scatter)
    _check_constraints(model, covariances, found.directions)
    np.testing.assert_allclose(covariances, _covariances(model, found.directions, nk, scatter), rtol=1e-12, atol=0)
    assert _stationarity(found.directions, covariances, scatter).max() <= 1e-10
    value = ref.objective(covariances, scatter, nk)
    # a minimum: no small rotation in any plane lowers F beyond round-off
    d = scatter.shape[-1]
    for i, j in zip(*np.triu_indices(d, 1)):
        for angle in (-1e-3, 1e-3):
            rotation = np.eye(d)
            rotation[[i, i, j, j], [i, j, i, j]] = np.cos(angle), -np.sin(angle), np.sin(angle), np.cos(angle)
            moved = ref.objective(_covariances(model, found.directions @ rotation, nk, scatter), scatter, nk)
            assert moved >= value - 1e-12 * abs(value)
    # every round lowers F (or keeps it): the history starts at the chosen start and ends at the result
    history = found.history
    assert np.all(np.diff(history) <= 1e-13 * np.abs(history[1:]))
    start = _start(found.start, nk, scatter)
    assert history[0] == pytest.approx(ref.objective(_covariances(model, start, nk, scatter), scatter, nk), rel=1e-12)
    assert history[-1] == found.objective == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize("model", ["EVE", "VVE"])
def test_newton_steps_use_the_exact_gradient_and_hessian(model):
    """The solver's gradient and Hessian of ``f(D expm(X))`` in the angles ``X_ji = -X_ij = x_ij`` (``i < j``) equal
    central differences of ``f`` written here: VVE ``sum_k n_k sum_l log b_kl``, EVE ``sum_k prod_l b_kl^(1/d)``."""
    nk, scatter = _random(5, k=3, d=4, spread=1.0)
    directions = np.linalg.qr(np.random.default_rng(1).normal(size=(4, 4)))[0]
    lower = np.triu_indices(4, 1)[::-1]

    def value(angles):
        skew = np.zeros((4, 4))
        skew[lower] = angles
        moved = directions @ scipy.linalg.expm(skew - skew.T)
        b = np.einsum("il,kij,jl->kl", moved, scatter, moved)
        return (nk[:, None] * np.log(b)).sum() if model == "VVE" else np.exp(np.log(b).mean(axis=1)).sum()

    solver = eve_vve._Model(nk, scatter, model == "EVE")
    gradient, hessian = (part[0] for part in solver.gradient_hessian(solver.project(directions[None])))
    h, basis = 1e-4, np.eye(6)
    np.testing.assert_allclose(
        gradient,
        [(value(h * e) - value(-h * e)) / (2 * h) for e in basis],
        rtol=1e-6,
        atol=1e-9 * np.abs(gradient).max(),
    )
    differences = [
        [
            (value(h * (a + b)) - value(h * (a - b)) - value(h * (b - a)) + value(-h * (a + b))) / (4 * h * h)
            for b in basis
        ]
        for a in basis
    ]
    np.testing.assert_allclose(hessian, differences, rtol=0, atol=1e-5 * np.abs(hessian).max())


@pytest.mark.parametrize("model", ["EVE", "VVE"])
def test_a_previous_orientation_is_never_lost(model):
    """Given the last M-step's covariances, ``F`` ends no higher than at their orientation (so EM's likelihood cannot
    fall for a minimum the starts miss): here (EVE) the starts alone end at 2904.7 and a random rotation's descent at
    2814.9; and, on statistics one EM iteration later, no higher than the old orientation with the new closed forms."""
    nk, scatter = _random(1084, k=4, d=7, spread=3.0)
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(7, 7)))[0]
    found = common_orientation(nk, scatter, common_volume=model == "EVE", start=rotation)
    previous = _covariances(model, found.directions, nk, scatter)
    ours = ESTIMATE[model](nk, scatter, previous=previous)
    value = ref.objective(previous, scatter, nk)
    assert ref.objective(ours, scatter, nk) <= value + 1e-12 * abs(value)
    rng = np.random.default_rng(1)
    extra = rng.normal(size=(4, 20, 7)) * 3
    later_nk, later_scatter = nk + 20, scatter + np.swapaxes(extra, 1, 2) @ extra
    later = ESTIMATE[model](later_nk, later_scatter, previous=previous)
    at_previous = ref.objective(_covariances(model, found.directions, later_nk, later_scatter), later_scatter, later_nk)
    assert ref.objective(later, later_scatter, later_nk) <= at_previous + 1e-12 * abs(at_previous)


@pytest.mark.parametrize("model", ["EVE", "VVE"])
def test_the_same_bits_for_the_same_input(model):
    nk, scatter = _random(7, k=6, d=5, spread=1.0)
    first = ESTIMATE[model](nk, scatter)
    again = ESTIMATE[model](nk.copy(), np.ascontiguousarray(scatter.copy()))
    np.testing.assert_array_equal(first, again)
    assert first.tobytes() == ESTIMATE[model](nk, scatter).tobytes()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("model", ["EVE", "VVE"])
def test_two_dimensions_reach_the_best_angle(model, seed):
    """In two dimensions ``D`` is a rotation by one angle: the lowest of 200 001 angles in [0, pi/2) (F has period
    pi/2 in the angle), refined, is no lower than ours, and the angle is the same."""
    nk, scatter = _random(seed, k=2 + seed % 3, d=2, spread=2.0)

    def value(angle):
        c, s = np.cos(angle), np.sin(angle)
        return ref.objective(_covariances(model, np.array([[c, -s], [s, c]]), nk, scatter), scatter, nk)

    angles = np.linspace(0, np.pi / 2, 200_001)[:-1]
    rotated = np.stack(
        [np.stack([np.cos(angles), -np.sin(angles)], 1), np.stack([np.sin(angles), np.cos(angles)], 1)], 1
    )
    b = np.einsum("ail,kij,ajl->akl", rotated, scatter, rotated)
    if model == "VVE":
        values = (nk * np.log(b).sum(axis=2)).sum(axis=1)
    else:
        values = np.exp(np.log(b).mean(axis=2)).sum(axis=1)
    best = angles[np.argmin(values)]
    step = angles[1]
    for _ in range(60):  # golden-section search around the best grid angle
        low, high = best - step, best + step
        middle = (low + high) / 2
        best = min((low + middle) / 2, middle, (middle + high) / 2, key=value)
        step /= 2
    found = common_orientation(nk, scatter, common_volume=model == "EVE")
    ours = ref.objective(ESTIMATE[model](nk, scatter), scatter, nk)
    assert ours <= value(best) + 1e-12 * abs(ours)
    angle = np.arctan2(found.directions[1, 0], found.directions[0, 0]) % (np.pi / 2)
    gap = abs(angle - best % (np.pi / 2))
    assert min(gap, np.pi / 2 - gap) <= 1e-6


@pytest.mark.parametrize("model", ["EVE", "VVE"])
def test_one_component_and_one_dimension_are_exact(model):
    nk, scatter = _random(3, k=1, d=4)
    expected = scatter / nk[:, None, None]
    np.testing.assert_allclose(ESTIMATE[model](nk, scatter), expected, rtol=0, atol=1e-12 * np.abs(expected).max())
    nk, scatter = np.array([10.0, 20.0, 30.0]), np.array([[[2.0]], [[5.0]], [[1.0]]])
    expected = np.full((3, 1, 1), 8.0 / 60.0) if model == "EVE" else scatter / nk[:, None, None]
    np.testing.assert_allclose(ESTIMATE[model](nk, scatter), expected, rtol=1e-15, atol=0)


@pytest.mark.parametrize(
    "spectra",
    [
        pytest.param([[1.0, 2.0, 3.0, 4.0], [4.0, 1.0, 2.0, 9.0], [1.0, 1.0, 5.0, 1.0]], id="distinct"),
        pytest.param([[1.0, 1.0, 3.0, 7.0], [2.0, 2.0, 5.0, 1.0]], id="ties"),
        pytest.param([[1.0, 1.0 + 1e-9, 3.0, 7.0], [2.0, 2.0, 5.0, 1.0 + 1e-9]], id="near-ties"),
        pytest.param([[3.0, 3.0, 3.0, 3.0], [1.0, 1.0, 1.0, 1.0]], id="round"),
        pytest.param([[1.0, 1e-6, 1e3, 1.0], [1e-3, 1.0, 1.0, 1e4]], id="ill-conditioned"),
    ],
)
@pytest.mark.parametrize("model", ["EVE", "VVE"])
def test_exact_common_principal_components_are_found(model, spectra):
    """Scatter matrices with common eigenvectors ``Q`` (any orientation of ``Q``'s tied eigenvalues is optimal): VVE
    gives VVV's ``W_k / n_k`` and EVE gives EVV's ``lambda W_k / det(W_k)^(1/d)``."""
    rng = np.random.default_rng(0)
    axes = np.linalg.qr(rng.normal(size=(4, 4)))[0]
    nk = rng.uniform(10, 100, size=len(spectra))
    scatter = np.stack([axes @ np.diag(values) @ axes.T for values in spectra]) * nk[:, None, None]
    if model == "VVE":
        expected = scatter / nk[:, None, None]
    else:
        roots = np.exp(np.linalg.slogdet(scatter)[1] / 4)
        expected = roots.sum() / nk.sum() * scatter / roots[:, None, None]
    found = common_orientation(nk, scatter, common_volume=model == "EVE")
    ours = ESTIMATE[model](nk, scatter)
    assert found.converged and np.isfinite(ours).all()
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-9 * np.abs(expected).max())
