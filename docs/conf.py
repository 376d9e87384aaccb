"""Sphinx configuration of the gmm-pipeline manual: ``scripts/docs`` builds it into docs/_build/html.

The reference pages are generated from the code (autodoc + numpydoc for the estimators, sphinx-click for ``gmm``,
the local ``schema_tables`` extension for the config and model.yaml), so they cannot drift from it.  Nothing is
fetched while building (no intersphinx): the build works offline.
"""

import sys
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "gmm-pipeline"
release = metadata.version("gmm-pipeline")
copyright = "the gmm-pipeline authors"

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx_click",
    "schema_tables",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
# Every cross-reference must resolve (a key or a name the code no longer has fails the build).
nitpicky = True
# scikit-learn's classes, named in the docstrings, are not in this site and nothing is fetched (no intersphinx).
nitpick_ignore_regex = [("py:class", r"sklearn\..*")]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# The estimators' docstrings list their methods themselves through autodoc (:members:); numpydoc's own member
# tables would need autosummary stubs.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
autodoc_member_order = "bysource"
autodoc_typehints = "none"

html_theme = "pydata_sphinx_theme"
html_title = "gmm-pipeline"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    # The reference tables are wide: their pages give the right-hand column to them.
    "secondary_sidebar_items": {"reference/*": []},
}
html_static_path = []
