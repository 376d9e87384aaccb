"""The declared seam holds: both algorithms are a ``Step`` to the type checker (scripts/test runs mypy on the kernels).

mypy reuses its cache (``.mypy_cache``, which scripts/test's own run fills), so a check takes a second or two.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

CONFORMS = """
    from pipeline.kernels.algorithms import EMStep
    from pipeline.kernels.params import Params
    from pipeline.kernels.steps import Step
    from pipeline.kernels.variational import VariationalState, VariationalStep

    def em(step: EMStep) -> Step[Params]:
        return step

    def variational(step: VariationalStep) -> Step[VariationalState]:
        return step
"""


def mypy(*args: str) -> tuple[str, int]:
    stdout, stderr, status = mypy_api.run(["--follow-imports=silent", *args])
    return stdout + stderr, status


def checked(tmp_path: Path, source: str) -> tuple[str, int]:
    path = tmp_path / "seam.py"
    path.write_text(textwrap.dedent(source))
    return mypy("--strict", str(path))


def test_both_algorithms_conform_to_the_step_protocol(tmp_path):
    output, status = checked(tmp_path, CONFORMS)
    assert status == 0, output


def test_a_step_without_its_m_step_is_refused(tmp_path):
    broken = (
        CONFORMS
        + """
    class Partial:
        covariance_type = "full"
        reg_covar = 0.0

        def prepare(self, state: Params, dtype: str = "float64") -> None: ...

    def partial(step: Partial) -> Step[Params]:
        return step
    """
    )
    output, status = checked(tmp_path, broken)
    assert status == 1 and 'Incompatible return value type (got "Partial", expected "Step[Params]")' in output, output
