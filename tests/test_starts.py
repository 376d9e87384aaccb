"""Starts depend on (random_state, K, restart) only: every covariance type starts from the same place."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import COVARIANCE_TYPES, make_blobs

from pipeline import GaussianMixture
from pipeline.checkpoint import META, Checkpoint, SavedRun
from pipeline.choices import INIT_METHODS
from pipeline.model import npz_bytes, read_npz
from pipeline.storage import Place


@pytest.mark.parametrize("init_params", INIT_METHODS)
def test_one_random_state_gives_every_covariance_type_the_same_start(init_params):
    # As scikit-learn's test_bayesian_mixture checks: with max_iter=0 the start's means are the type's only output
    # that does not depend on the type (a first M-step from the same responsibilities).
    X = make_blobs(4, n_per=150)
    means = {
        ct: GaussianMixture(3, covariance_type=ct, init_params=init_params, max_iter=0, random_state=7).fit(X).means_
        for ct in COVARIANCE_TYPES
    }
    for ct in COVARIANCE_TYPES[1:]:
        np.testing.assert_allclose(means[ct], means["full"], rtol=0, atol=1e-12, err_msg=ct)
    other_seed = GaussianMixture(3, init_params=init_params, max_iter=0, random_state=8).fit(X).means_
    assert not np.allclose(other_seed, means["full"])


def test_a_checkpoint_of_the_earlier_start_scheme_is_not_resumed(tmp_path):
    identity = {"model": {"n_components": 2}}
    checkpoint = Checkpoint(Place.of(tmp_path / "out"), identity)
    run = SavedRun(0, {"weights": np.array([0.5, 0.5])}, -1.0, -1.0, [-1.0], 1, False)
    checkpoint.save([run], [None])
    resumed, reason = checkpoint.resume()
    assert resumed is not None and reason == ""
    arrays = read_npz((tmp_path / "out.checkpoint.npz").read_bytes(), "checkpoint")
    meta = json.loads(arrays[META].item())
    del meta["format"]  # as gmm-pipeline wrote them before starts ignored the covariance type
    arrays[META] = np.array(json.dumps(meta))
    (tmp_path / "out.checkpoint.npz").write_bytes(npz_bytes(arrays))
    resumed, reason = checkpoint.resume()
    assert resumed is None and "another version" in reason
