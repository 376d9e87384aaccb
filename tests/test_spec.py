"""One declaration of the hyperparameters: the config and the estimators take the same names and values.

Each declared hyperparameter (``pipeline.spec.HYPERPARAMETERS``) is refused at the same values by both faces
(the config with an ``InputError`` naming the file and the key, the estimators with scikit-learn's
``ValueError``), accepted at its least value by both, and has the same default in the estimators' signatures
as declared; where the faces differ, the declaration says why.
"""

from __future__ import annotations

import inspect
import re
import warnings

import numpy as np
import pytest

from pipeline import BayesianGaussianMixture, GaussianMixture
from pipeline.choices import SKLEARN_COVARIANCE_TYPES
from pipeline.config import Config, validate
from pipeline.errors import ConvergenceWarning, InputError
from pipeline.spec import HYPERPARAMETERS

ESTIMATORS = (GaussianMixture, BayesianGaussianMixture)
# Parameters checked where they are resolved against the data (shapes, positive definiteness), not by kind.
RESOLVED = {"weights_init", "means_init", "precisions_init", "prior", "mean_prior", "covariance_prior", "warm_start"}
# One feature: the least degrees_of_freedom_prior the data allow (> n_features - 1) is then the declared bound.
X = np.random.default_rng(0).normal(size=(40, 1))


def _parameters(cls) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(cls).parameters)


def _owners(name: str) -> list[type]:
    return [cls for cls in ESTIMATORS if name in _parameters(cls)]


def _bad_values(h) -> list:
    """Values of the wrong kind or below the range."""
    if h.kind == "int":
        return [h.low - 1, 1.5, True, "2"]
    if h.kind == "float":
        return [h.low if h.low_open else h.low - 1, "1e-3", True, *([] if h.high is None else [h.high + 0.5])]
    if h.kind == "seed":
        return [-1, 1.5, "0"]
    return ["nope", 1]


def _least(h, low):
    """The least value accepted."""
    if h.kind in ("choice", "dtype"):
        return h.choices[-1]
    if h.low_open:
        return low + 1e-300 if h.kind == "float" else low + 1
    return float(low) if h.kind == "float" else int(low)


def _config(h, value) -> Config:
    raw = {"data": {"path": "d"}}
    raw.setdefault(h.section, {})[h.name] = value
    if h.key.endswith("_prior") or h.name == "weight_concentration_prior_type":
        raw["model"]["algorithm"] = "variational"
    return validate(raw, "c.yaml")


def _refused(cls, name, value) -> None:
    with pytest.raises(ValueError, match=rf"^The {name!r} parameter of {cls.__name__} must be .* Got "):
        cls(**{name: value}).fit(X)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_every_parameter_is_declared_with_the_signatures_default(cls):
    declared = {name for name in _parameters(cls) if name not in RESOLVED}
    assert declared <= set(HYPERPARAMETERS), declared - set(HYPERPARAMETERS)
    for name in declared:
        assert _parameters(cls)[name].default == HYPERPARAMETERS[name].default, name


@pytest.mark.parametrize("name", list(HYPERPARAMETERS))
def test_faces_refuse_the_same_values(name):
    h = HYPERPARAMETERS[name]
    assert _owners(name), f"{name} is declared but no estimator takes it"
    for value in _bad_values(h):
        # YAML's true is no float either way; a config's init_params may name a model directory (a string it
        # does not know is refused when the fit starts: tests/test_bad_input.py)
        if (
            h.in_config
            and not (value is True and h.kind == "float")
            and not (name == "init_params" and value == "nope")
        ):
            with pytest.raises(InputError, match=rf"^c\.yaml: {re.escape(h.key)}: "):
                _config(h, value)
        for cls in _owners(name):
            _refused(cls, name, value)


@pytest.mark.parametrize("name", list(HYPERPARAMETERS))
def test_faces_accept_the_least_value(name):
    h = HYPERPARAMETERS[name]
    for cls in _owners(name):
        least = _least(h, h.low)
        if cls is BayesianGaussianMixture and name == "covariance_type":
            least = SKLEARN_COVARIANCE_TYPES[-1]  # the variational mixture has scikit-learn's four only
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # two iterations, or tol=0
            model = cls(**{name: least, "max_iter": 2 if name != "max_iter" else least}).fit(X)
        assert model.get_params()[name] == least
    if h.in_config:
        least = _least(h, h.low_in_config())
        assert getattr(getattr(_config(h, least), h.section), h.name) == least


@pytest.mark.parametrize("name", [n for n, h in HYPERPARAMETERS.items() if h.in_config])
def test_faces_differ_only_on_purpose(name):
    h = HYPERPARAMETERS[name]
    config_default = getattr(getattr(validate({"data": {"path": "d"}}, "c.yaml"), h.section), name)
    assert config_default == h.default_in_config()
    if config_default != h.default or h.low_in_config() != h.low:
        assert h.why, f"{h.key} and {name} differ, and the declaration does not say why"
        if h.low_in_config() != h.low:  # the config refuses what the estimators take, with the key named
            with pytest.raises(InputError, match=rf"^c\.yaml: {re.escape(h.key)}: "):
                _config(h, h.low)
    else:
        assert not h.why
