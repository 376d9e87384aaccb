"""Exceptions and warnings raised by gmm-pipeline.

``InputError`` marks a user mistake (config, data, model files): the CLI prints
its message as one ``error:`` line and exits with code 2.  It subclasses
``ValueError`` so the Python API raises what scikit-learn users expect.
"""


class InputError(ValueError):
    """Bad config, data or model file; the message names the culprit."""


class ComponentCollapseError(InputError):
    """A mixture component lost its support and its covariance became singular."""


class NotFittedError(ValueError, AttributeError):
    """Raised when a method needs a fitted model (as scikit-learn's)."""


class PipelineWarning(UserWarning):
    """Base class of the warnings this package emits."""


class ConvergenceWarning(PipelineWarning):
    """EM stopped at max_iter before the lower bound changed by less than tol."""
