"""The manual in docs/ against the code: its generated reference tables cover every config key, model.yaml key and
estimator parameter, their notes name only keys the code has, and (once ``scripts/docs`` has built it) the HTML
shows every ``gmm`` option, key and parameter.

The tables are made by docs/_ext/schema_tables.py at build time; these tests use its functions without Sphinx.
"""

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.choices import COVARIANCE_TYPES
from pipeline.config import Config
from pipeline.model import ModelInfo

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
HTML = DOCS / "_build" / "html"


def _extension():
    spec = importlib.util.spec_from_file_location("schema_tables", DOCS / "_ext" / "schema_tables.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("schema_tables", module)
    spec.loader.exec_module(module)
    return module


st = _extension()


def _leaf_keys(mapping, prefix=""):
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            yield from _leaf_keys(value, f"{prefix}{key}.")
        else:
            yield prefix + key


def _tables(page, schema):
    """The notes of every schema-table of ``schema`` on ``page``, and the keys those tables show."""
    notes, keys = {}, []
    for argument, options, table_notes in st.directive_notes(DOCS / "reference" / page, "schema-table"):
        assert argument == schema
        keys += [row.key for row in st.section_rows(st.resolve(argument), options.get("section"))]
        notes.update(table_notes)
    return notes, keys


@pytest.mark.parametrize("page, schema", [("config.md", Config), ("model-file.md", ModelInfo)])
def test_every_key_has_a_row_and_a_meaning(page, schema):
    notes, keys = _tables(page, f"{schema.__module__}.{schema.__name__}")
    rows = st.rows(schema)
    sections = {row.key for row in rows if "." not in row.key and st._sections(schema.model_fields[row.key].annotation)}
    if schema is Config:  # the config's sections are the pages' headings, their keys the rows
        assert sorted(keys) == sorted(row.key for row in rows if row.key not in sections)
    else:
        assert sorted(keys) == sorted(row.key for row in rows)
    described = {row.key for row in rows if row.description}
    assert st.problems(keys, described, notes) == []


def test_every_key_of_the_default_config_is_in_the_reference():
    notes, keys = _tables("config.md", "pipeline.config.Config")
    default = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    assert set(_leaf_keys(default)) <= set(keys)


def test_the_default_config_says_what_the_schema_says():
    """configs/default.yaml repeats every key of every section with the schema's default, for readers."""
    default = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    schema = Config.model_validate({"data": {"path": default["data"]["path"]}}).model_dump(mode="json")
    assert default == schema


@pytest.mark.parametrize(
    "names", ["pipeline.kernels.params.PARAM_ARRAYS", "pipeline.kernels.variational.VARIATIONAL_ARRAYS"]
)
def test_every_array_of_model_npz_has_a_note(names):
    tables = {arg: notes for arg, _, notes in st.directive_notes(DOCS / "reference" / "model-file.md", "names-table")}
    assert sorted(tables[names]) == sorted(st.resolve(names))


def test_problems_finds_a_note_without_a_key_and_a_key_without_a_meaning():
    found = st.problems(["a.b", "a.c"], {"a.b"}, {"a.x": "a key the code has not"})
    assert found == [
        "a note for 'a.x', which is not a key of the schema",
        "'a.c' has no description in the code and no note",
    ]


def test_the_reference_table_shows_types_ranges_and_defaults():
    rows = {row.key: row for row in st.rows(Config)}
    assert rows["model.n_components"].type == "int, ≥ 1"
    assert rows["model.covariance_type"].type == " | ".join(COVARIANCE_TYPES)
    assert rows["data.path"].default == "(required)"
    assert rows["model.reg_covar"].default == "1.0e-06"
    assert rows["cluster.dashboard"].default == "true"
    assert rows["cluster.security.ca_file"].type == "str"


def test_readme_sends_users_to_the_docs():
    readme = (ROOT / "README.md").read_text()
    assert "scripts/docs" in readme
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).exists(), link


@pytest.mark.skipif(not (HTML / "index.html").exists(), reason="the docs are not built (scripts/docs builds them)")
def test_the_built_reference_shows_every_option_key_and_parameter():
    assert st.missing_from_html(HTML) == []
    cli = (HTML / "reference" / "cli.html").read_text()
    assert all(f'id="gmm-{command}"' in cli for command in st.cli_options())
