"""The EM driver and the estimator against scikit-learn, and EM's invariants."""

import warnings

import numpy as np
import pytest
from helpers import COVARIANCE_TYPES, em_runs, make_blobs, sklearn_start, sklearn_start_params, whitened_errors
from sklearn.exceptions import ConvergenceWarning as SkConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGMM

from pipeline import GaussianMixture, em, init, kernels, passes
from pipeline.choices import INIT_METHODS
from pipeline.errors import ConvergenceWarning, NumericalError
from pipeline.passes import BlockSource, blocks_from_arrays, scan

ATTRS = ("weights_", "means_", "covariances_", "precisions_cholesky_")


def sklearn_fit(X, covariance_type, start, max_iter):
    w, m, p = start
    sk = SkGMM(
        3, covariance_type=covariance_type, weights_init=w, means_init=m, precisions_init=p, tol=0, max_iter=max_iter
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkConvergenceWarning)
        return sk.fit(X)


def assert_same_fit(ours, theirs, rtol=1e-6):
    for attr in ATTRS:
        np.testing.assert_allclose(getattr(ours, attr), getattr(theirs, attr), rtol=rtol, atol=1e-12, err_msg=attr)
    assert ours.lower_bound_ == pytest.approx(theirs.lower_bound_, rel=rtol)
    assert ours.n_iter_ == theirs.n_iter_


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_parity_with_sklearn_on_numpy(covariance_type):
    X = make_blobs(10)
    start = sklearn_start(X, 3, covariance_type)
    theirs = sklearn_fit(X, covariance_type, start, max_iter=25)
    w, m, p = start
    ours = GaussianMixture(
        3, covariance_type=covariance_type, weights_init=w, means_init=m, precisions_init=p, tol=0, max_iter=25
    )
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        ours.fit(X)
    assert_same_fit(ours, theirs)
    np.testing.assert_allclose(ours.lower_bounds_, theirs.lower_bounds_, rtol=1e-9)
    np.testing.assert_allclose(ours.precisions_, theirs.precisions_, rtol=1e-6, atol=1e-12)


def test_parity_with_sklearn_on_a_distributed_cluster(client):
    X = make_blobs(11)
    start = sklearn_start(X, 3, "full")
    theirs = sklearn_fit(X, "full", start, max_iter=15)
    w, m, p = start
    import dask.array as da

    ours = GaussianMixture(3, weights_init=w, means_init=m, precisions_init=p, tol=0, max_iter=15)
    from distributed import get_task_stream

    with (
        client.as_current(),
        get_task_stream(client) as stream,
        pytest.warns(ConvergenceWarning, match="did not converge"),
    ):
        ours.fit(da.from_array(X, chunks=(97, 3)))  # uneven chunks on the cluster
    workers = set(client.scheduler_info()["workers"])
    assert stream.data and {task["worker"] for task in stream.data} <= workers  # the passes ran on the workers
    assert_same_fit(ours, theirs)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float32_fit_stays_within_its_claim_of_sklearns(covariance_type):
    X = make_blobs(10, n_per=6000)  # 18,000 rows: two chunks; components within 100 squared units of the centre
    start = sklearn_start(X, 3, covariance_type)
    theirs = sklearn_fit(X, covariance_type, start, max_iter=25)
    w, m, p = start
    ours = GaussianMixture(
        3,
        covariance_type=covariance_type,
        weights_init=w,
        means_init=m,
        precisions_init=p,
        tol=0,
        max_iter=25,
        dtype="float32",
    )
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        ours.fit(X)
    mean_error, cov_error = whitened_errors(
        ours.means_, ours.covariances_, theirs.means_, theirs.covariances_, theirs.precisions_cholesky_, covariance_type
    )
    # The claim for one M-step is 1e-5 (means, in standard deviations) and 1e-3 (covariances, relative) at the
    # float32 route's limit; this near the centre, 25 iterations stay within a few 1e-5 of float64 (measured).
    assert mean_error < 1e-5 and cov_error < 1e-4
    np.testing.assert_allclose(ours.weights_, theirs.weights_, rtol=1e-5)
    assert ours.lower_bound_ == pytest.approx(theirs.lower_bound_, rel=1e-6)
    # and the float32 route was taken: further from sklearn than float64's round-off (parity there is 1e-9)
    assert cov_error > 1e-8


def test_an_iteration_too_far_from_the_centre_for_float32_runs_in_float64_and_says_so():
    # A tight component 420 of its standard deviations from the mixture's mean (squared distance 1.8e5, past
    # float32's 4e3): float32 would lose its covariance; near the mean, float32 is kept.
    rng = np.random.default_rng(14)
    near = rng.normal(size=(300, 2))
    far = np.concatenate([near, 300 + 0.5 * rng.normal(size=(300, 2))])
    reports = []
    for X, means, variances in (
        (near, [[-1, 0], [1, 0]], [[1.0, 1.0], [1.0, 1.0]]),
        (far, [[0, 0], [300, 300]], [[1.0, 1.0], [0.25, 0.25]]),
    ):
        start = kernels.make_params([0.5, 0.5], means, variances, "diag")
        em.run_em(
            blocks_from_arrays(X), em_runs([start]), tol=0.0, max_iter=2, dtype="float32", on_iteration=reports.append
        )
    assert [r.dtypes for r in reports] == [["float32"], ["float32"], ["float64"], ["float64"]]


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_lower_bound_never_decreases(covariance_type):
    X = make_blobs(12)
    gm = GaussianMixture(3, covariance_type=covariance_type, init_params="random", tol=0, max_iter=40, random_state=0)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        gm.fit(X)
    steps = np.diff(gm.lower_bounds_)
    # EM is monotone; allow round-off of the order of 1e-12 per step.
    assert (steps >= -1e-12).all(), steps.min()


def split_source(X, cuts):
    """A BlockSource over NumPy blocks cut at ``cuts`` (empty blocks allowed)."""
    import dask

    blocks = [dask.delayed((X[a:b], None)) for a, b in zip(cuts[:-1], cuts[1:])]
    return BlockSource(blocks, [b - a for a, b in zip(cuts[:-1], cuts[1:])], X.shape[1])


def test_the_sum_tree_is_the_same_however_blocks_are_grouped_into_tasks():
    # Strings make the order of every addition visible: equal strings, equal floating-point sums.
    rng = np.random.default_rng(4)
    join = lambda a, b: f"({a}+{b})"  # noqa: E731
    for n in range(1, 40):
        leaves = [(0, i, str(i)) for i in range(n)]
        (whole,) = passes._merge(join, n, leaves)
        for _ in range(20):
            cuts = [0, *sorted(rng.choice(np.arange(1, n), size=rng.integers(0, n), replace=False)), n]
            nodes = [passes._merge(join, n, leaves[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
            while len(nodes) > 1:
                every = int(rng.integers(2, 6))
                nodes = [passes._merge(join, n, *nodes[i : i + every]) for i in range(0, len(nodes), every)]
            assert nodes[0] == [whole]


def test_persisted_blocks_are_folded_by_one_task_per_worker_thread(client, monkeypatch):
    from distributed import futures_of, get_task_stream, wait

    X = make_blobs(15)
    with client.as_current():
        source = blocks_from_arrays(X, rows_per_block=37).persist()
        wait(futures_of(source.blocks))
        assert source.ranges == passes.balanced_ranges(source.n_rows, 2)
        holders = client.who_has()
        for start, stop in source.ranges:  # each range is held by one worker
            assert len({w for b in source.blocks[start:stop] for w in holders[b.key]}) == 1
        with get_task_stream(client) as stream:
            stats = source.run(
                em._em_block, (kernels.prepare(sklearn_start_params(X, 3, "full")),), combine=passes.add_tuples
            )
    # one fold task per worker thread, carrying the E-step constants, joined on the client: nothing else
    assert len(stream.data) == 2
    single = split_source(X, [0, X.shape[0]]).run(
        em._em_block, (kernels.prepare(sklearn_start_params(X, 3, "full")),), combine=passes.add_tuples
    )
    np.testing.assert_allclose(stats[0].s2, single[0].s2, rtol=1e-12)
    # Arguments whose copies would exceed EMBED_BYTES go as one key the fold tasks share, with the same result.
    monkeypatch.setattr(passes, "EMBED_BYTES", 0)
    with client.as_current(), get_task_stream(client) as stream:
        shared = source.run(
            em._em_block, (kernels.prepare(sklearn_start_params(X, 3, "full")),), combine=passes.add_tuples
        )
    assert len(stream.data) == 3  # and one more: the shared arguments
    np.testing.assert_array_equal(shared[0].s2, stats[0].s2)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_one_partition_equals_many_with_empty_ones(covariance_type):
    X = make_blobs(13)
    start = sklearn_start_params(X, 3, covariance_type)
    n = X.shape[0]
    one = split_source(X, [0, n])
    many = split_source(X, [0, 0, 100, 101, 101, 450, 700, n, n])
    prep = kernels.prepare(start)
    a = one.run(em._em_block, (prep,), combine=lambda x, y: (x[0] + y[0],), split_every=2)[0]
    b = many.run(em._em_block, (prep,), combine=lambda x, y: (x[0] + y[0],), split_every=2)[0]
    assert (a.n_rows, a.weight_sum) == (b.n_rows, b.weight_sum)
    for name in ("nk", "s1", "s2"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-11, atol=1e-9)
    runs_one = em.run_em(one, em_runs([start]), tol=0, max_iter=10)
    runs_many = em.run_em(many, em_runs([start]), tol=0, max_iter=10)
    np.testing.assert_allclose(runs_one[0].params.covariances, runs_many[0].params.covariances, rtol=1e-9)


def first_m_steps(source, candidates, init_params, n_init, seed, reg_covar=1e-6):
    """Every start of every candidate after its first M-step, as lists per candidate."""
    starts = init.start_statistics(source, candidates, init_params=init_params, n_init=n_init, seed=seed)
    return [
        [kernels.m_step(s, spec.shift, spec.covariance_type, reg_covar) for spec, s in zip(specs, stats)]
        for specs, stats in zip(starts.specs, starts.stats)
    ]


@pytest.mark.parametrize("init_params", INIT_METHODS)
def test_starts_do_not_depend_on_partitioning(init_params):
    X = make_blobs(14)
    n = X.shape[0]
    starts = []
    for cuts in ([0, n], [0, 250, 251, 600, n]):
        source, _ = scan(split_source(X, cuts))
        (group,) = first_m_steps(source, [(3, "full")], init_params, n_init=2, seed=5)
        starts.append(group)
    assert [len(group) for group in starts] == [2, 2]
    for a, b in zip(*starts):
        np.testing.assert_allclose(a.means, b.means, rtol=1e-10)
        np.testing.assert_allclose(a.covariances, b.covariances, rtol=1e-9)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random_from_data"])
def test_data_driven_tied_starts_do_not_stall_at_the_data_mean(init_params):
    # scikit-learn's k-means++ and random_from_data give each component one point, so a tied fit
    # starts (and stays) with every mean near the data mean; ours assign every row to a centre.
    X = make_blobs(15)
    gm = GaussianMixture(3, covariance_type="tied", init_params=init_params, max_iter=0, random_state=1).fit(X)
    spread = np.linalg.norm(gm.means_[:, None] - gm.means_[None], axis=2).max()
    assert spread > 4.0, gm.means_


def test_kmeans_start_finds_the_blobs():
    X = make_blobs(15)
    gm = GaussianMixture(3, covariance_type="tied", random_state=1).fit(X)
    np.testing.assert_allclose(np.sort(gm.means_[:, 0]), [-4, 0, 5], atol=0.5)


def test_n_init_runs_advance_together_and_the_best_wins():
    X = make_blobs(16)
    source = blocks_from_arrays(X, rows_per_block=200)
    (starts,) = first_m_steps(source, [(3, "diag")], "random_from_data", n_init=4, seed=3)
    runs = em.run_em(source, em_runs(starts), tol=1e-3, max_iter=100)
    bounds = [r.lower_bound for r in runs]
    assert len(set(np.round(bounds, 6))) > 1, bounds  # the starts really differ
    assert em.best_run(runs).lower_bound == max(bounds)
    # The estimator with the same seed makes the same starts and keeps the same best run.
    gm = GaussianMixture(3, covariance_type="diag", init_params="random_from_data", n_init=4, random_state=3).fit(X)
    assert gm.lower_bound_ == pytest.approx(max(bounds), rel=1e-12)


def test_a_candidates_start_depends_only_on_itself_and_the_seed():
    # K=3 full starts the same alone, beside other candidates, and in another order of candidates.
    X = make_blobs(17)
    source, _ = scan(blocks_from_arrays(X, rows_per_block=200))
    (alone,) = first_m_steps(source, [(3, "full")], "kmeans", n_init=2, seed=7)
    among = first_m_steps(source, [(2, "diag"), (3, "full"), (5, "full")], "kmeans", n_init=2, seed=7)[1]
    assert len(alone) == len(among) == 2
    for a, b in zip(alone, among):
        np.testing.assert_array_equal(a.means, b.means)
        np.testing.assert_array_equal(a.covariances, b.covariances)
    other_seed = first_m_steps(source, [(3, "full")], "kmeans", n_init=2, seed=8)[0]
    assert not np.array_equal(other_seed[0].means, alone[0].means)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_an_iteration_that_gives_nan_or_inf_stops_with_its_cause():
    # A value whose square overflows, given straight to the driver (the scan before a fit refuses it by name).
    X = make_blobs(18)
    start = sklearn_start_params(X, 3, "full")
    X[0] = 1e200
    with pytest.raises(NumericalError, match=r"iteration 1: the E-step gave a non-finite log-likelihood or moments"):
        em.run_em(blocks_from_arrays(X), em_runs([start]), tol=0.0, max_iter=3)
