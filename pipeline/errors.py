"""Exceptions and warnings raised by gmm-pipeline.

``InputError`` marks a user mistake (config, data, model files): the CLI prints
its message as one ``error:`` line and exits with code 2.  It subclasses
``ValueError`` so the Python API raises what scikit-learn users expect.
``EnvironmentFault`` marks a fault of the surroundings (an unreachable or
silent scheduler, no workers, an unwritable output): one ``error:`` line and
exit code 1.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass


class InputError(ValueError):
    """Bad config, data or model file; the message names the culprit."""


class ComponentCollapseError(InputError):
    """A mixture component lost its support and its covariance became singular."""


class NumericalError(InputError):
    """An iteration produced NaN or inf; the message names the cause."""


class EnvironmentFault(RuntimeError):
    """The environment failed (cluster, storage): exit code 1, one line, no traceback."""


class NotFittedError(ValueError, AttributeError):
    """Raised when a method needs a fitted model (as scikit-learn's)."""


def not_fitted(message: str) -> NotFittedError:
    """A NotFittedError that is also scikit-learn's, when scikit-learn is loaded (it is, whenever it calls us)."""
    sklearn_exceptions = sys.modules.get("sklearn.exceptions")
    if sklearn_exceptions is None:
        return NotFittedError(message)
    both = _BOTH.get(sklearn_exceptions.NotFittedError)
    if both is None:
        both = _BOTH[sklearn_exceptions.NotFittedError] = type(
            "NotFittedError", (NotFittedError, sklearn_exceptions.NotFittedError), {"__module__": __name__}
        )
    return both(message)


_BOTH: dict[type, type] = {}


class PipelineWarning(UserWarning):
    """Base class of the warnings this package emits."""


class ConvergenceWarning(PipelineWarning):
    """EM stopped at max_iter before the lower bound changed by less than tol."""


class RenamedKeyWarning(PipelineWarning, FutureWarning):
    """A config key under its old name (``model.init``, now ``model.init_params``): it still works, for now."""


class CollapsedComponentsWarning(PipelineWarning):
    """Some components sit on single points (or none): reg_covar alone keeps their covariances positive definite."""


@dataclass(frozen=True)
class BlockError:
    """A partition that could not be used (unreadable, bad values): carried to the client as a value.

    Raising on a worker would make Dask log a traceback for a user's mistake;
    instead the reduction passes the first error (in partition order) along
    and the client raises it as an :class:`InputError`.
    """

    message: str
