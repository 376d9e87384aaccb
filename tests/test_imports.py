"""The package's import graph: every module on a floor, imports point down (or across a floor), no cycles, and the
kernels pure NumPy.

The graph is read from the source, not by importing it: every ``import pipeline...`` and ``from pipeline... import``
of every module of ``pipeline/``, at the top of the file or inside a function (lazy imports are dependencies too).
A module added to the package must be given its floor in ``FLOORS`` below.
"""

from __future__ import annotations

import ast
import fnmatch
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"

# The floors, top down, by module name within the package ("__init__" is the package itself: the public names).
# A module may import modules of its own floor and of the floors below it, never of a floor above.
FLOORS: dict[str, tuple[str, ...]] = {
    # the gmm command and the estimators
    "faces": ("__init__", "__main__", "cli", "stopping", "estimator", "bayesian", "mixture", "inputs"),
    # a command's work from start to end: outputs, the cluster's session, what is written
    "jobs": ("job", "scoring", "report", "synthetic", "export"),
    # fitting: starts, the EM loop, the fitted record, checkpoints, the selection table
    "core": ("fitting", "engine", "em", "init", "model", "checkpoint", "selection"),
    # Parquet data, passes over blocks, the cluster, bytes in and out
    "Dask layer": ("passes", "data", "cluster", "storage", "outputs"),
    # what a config and a model's hyperparameters may say
    "declarations": ("config", "spec"),
    # pure NumPy over one block
    "kernels": ("kernels", "kernels.*"),
    # errors, secrets, allowed values, YAML, rendering and logging
    "ground": ("errors", "secrets", "choices", "yamlfile", "console", "jsonlog"),
}
# What the kernels may import of the package, and what of the outside they may not (no Dask, no I/O).
KERNELS = "pipeline.kernels"
KERNELS_MAY_IMPORT = ("pipeline.kernels", "pipeline.kernels.*", "pipeline.errors", "pipeline.choices")
KERNELS_MUST_NOT_IMPORT = ("dask", "distributed", "fsspec", "pyarrow", "pandas")


def module_files() -> dict[str, Path]:
    """Every module of the package by its dotted name (``pipeline``, ``pipeline.cli``, ``pipeline.kernels.params``)."""
    files = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def imports(name: str, path: Path) -> set[str]:
    """The dotted names module ``name`` (its file ``path``) imports, anywhere in the file: ``import M`` gives ``M``;
    ``from M import x`` gives ``M.x`` (a module, or a name ``M`` defines: see :func:`import_graph`)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up for each dot after the first
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.update(base if alias.name == "*" else f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """Each module of the package and the modules of the package it imports: ``from M import x`` is an edge to the
    module ``M.x`` if there is one, else to ``M``."""
    files = module_files()
    graph = {}
    for name, path in files.items():
        edges = set()
        for imported in imports(name, path):
            while imported and imported not in files:
                imported = imported.rpartition(".")[0]
            edges.add(imported)
        graph[name] = edges - {"", name}
    return graph


def floor_of(module: str) -> str | None:
    """The floor ``FLOORS`` gives the module (a dotted name of the package), or None."""
    short = "__init__" if module == "pipeline" else module.removeprefix("pipeline.")
    matches = (floor for floor, names in FLOORS.items() for pattern in names if fnmatch.fnmatch(short, pattern))
    return next(matches, None)


GRAPH = import_graph()
LEVEL = {floor: height for height, floor in enumerate(reversed(FLOORS))}  # the ground is 0


def test_the_graph_sees_imports_inside_functions_and_names_taken_from_a_module():
    assert "pipeline.job" in GRAPH["pipeline.cli"]  # imported inside the commands
    assert "pipeline.secrets" in GRAPH["pipeline.console"]  # from pipeline.secrets import scrub
    assert "pipeline.kernels" in GRAPH["pipeline.passes"] and "pipeline" not in GRAPH["pipeline.passes"]


def test_every_module_has_a_floor():
    unknown = [module for module in GRAPH if floor_of(module) is None]
    assert not unknown, (
        f"{', '.join(unknown)}: not in FLOORS of tests/test_imports.py; add each to the floor of its job (it may "
        "import its own floor and the floors below)"
    )


def test_no_module_imports_a_module_on_a_floor_above_its_own():
    upward = [
        f"{module} ({floor_of(module)}) imports {imported} ({floor_of(imported)})"
        for module, edges in sorted(GRAPH.items())
        for imported in sorted(edges)
        if floor_of(module) and floor_of(imported) and LEVEL[floor_of(imported)] > LEVEL[floor_of(module)]
    ]
    assert not upward, "imports that point up:\n" + "\n".join(upward)


def test_the_imports_form_no_cycle():
    try:
        tuple(graphlib.TopologicalSorter(GRAPH).static_order())
    except graphlib.CycleError as cycle:
        pytest.fail(f"an import cycle (each imports the next): {' -> '.join(reversed(cycle.args[1]))}")


def test_the_kernels_import_only_numpy_scipy_and_the_packages_ground():
    for module, path in module_files().items():
        if module != KERNELS and not module.startswith(KERNELS + "."):
            continue
        outside = sorted(
            imported
            for imported in GRAPH[module]
            if not any(fnmatch.fnmatch(imported, allowed) for allowed in KERNELS_MAY_IMPORT)
        )
        assert not outside, (
            f"{module} imports {', '.join(outside)}: the kernels may import only themselves, pipeline.errors and "
            "pipeline.choices"
        )
        forbidden = sorted({name.split(".")[0] for name in imports(module, path)} & set(KERNELS_MUST_NOT_IMPORT))
        assert not forbidden, f"{module} imports {', '.join(forbidden)}: the kernels do no I/O and know no Dask"
