"""Fast to start: importing the package and the ``gmm`` paths that do no work load neither Dask nor SciPy.

Each case runs in a fresh Python (what is loaded is the subject).  Timings are measured, not tested.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("dask", "distributed", "scipy")

LOADED_AFTER = """
import json, sys
{code}
print(json.dumps([name for name in {heavy!r} if name in sys.modules]))
"""

RUN_GMM = """
from pipeline.cli import main
try:
    code = main({args!r}, prog_name="gmm")
except SystemExit as exit:
    code = exit.code
print(code, file=sys.stderr)
"""


def heavy_modules_loaded(code: str, cwd) -> tuple[list[str], str]:
    """Run ``code`` in a fresh Python in ``cwd``: the heavy modules it left in ``sys.modules``, and its stderr."""
    run = subprocess.run(
        [sys.executable, "-c", LOADED_AFTER.format(code=code, heavy=HEAVY)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.splitlines()[-1]), run.stderr


@pytest.mark.parametrize(
    "code",
    ["import pipeline", "import pipeline.cli", "import pipeline.jsonlog", "import pipeline.config"],
)
def test_importing_the_package_loads_neither_dask_nor_scipy(tmp_path, code):
    loaded, _ = heavy_modules_loaded(code, tmp_path)
    assert loaded == []


@pytest.mark.parametrize(
    ("args", "exit_code", "stderr"),
    [
        (["--help"], 0, ""),
        (["--version"], 0, ""),
        (["fit", "--help"], 0, ""),
        (["fit", "absent.yaml"], 2, "error: config file 'absent.yaml' not found"),
        (["fit", "bad.yaml"], 2, "error: bad.yaml: unknown key 'bogus'"),
        (["select", "bad.yaml", "--k", "2"], 2, "error: bad.yaml: unknown key 'bogus'"),
        (["select", "bad.yaml", "--k", "0"], 2, "error: --k '0': needs at least one K, each >= 1"),
        (["score", "--model", "m", "--input", "d", "--output", "o", "--config", "bad.yaml"], 2, "unknown key 'bogus'"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_gmm_paths_that_do_no_work_load_neither_dask_nor_scipy(tmp_path, args, exit_code, stderr):
    (tmp_path / "bad.yaml").write_text("data: {path: data}\nbogus: 1\n")
    loaded, err = heavy_modules_loaded(RUN_GMM.format(args=args), tmp_path)
    *lines, code = err.splitlines()
    assert int(code) == exit_code and stderr in "\n".join(lines), err
    assert loaded == []


def test_the_public_names_load_on_first_use():
    import pipeline
    from pipeline import estimator

    assert set(pipeline.__all__) <= set(dir(pipeline))
    assert pipeline.GaussianMixture is estimator.GaussianMixture
    with pytest.raises(AttributeError, match="no attribute 'GausianMixture'"):
        pipeline.GausianMixture  # noqa: B018 - the attribute access is the test
