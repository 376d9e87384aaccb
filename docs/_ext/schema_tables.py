"""Reference tables generated from the code at build time, so they cannot drift from it.

Two directives and one check:

``schema-table``
    One row per key of a pydantic model (nested sections flattened into dotted keys): its type and range, its
    default, and its meaning (the field's ``description`` from the code, then a note written in the page).
    ``:section:`` picks one field of the model (``data`` of ``pipeline.config.Config``); ``:prefix:`` is written
    before every key.  The directive's body holds the notes, each an unindented key and its indented Markdown::

        ```{schema-table} pipeline.config.Config
        :section: data

        data.path
            Read recursively, in natural sort order.
        ```

    A note naming no key of the model, or a key with neither a description nor a note, fails the build
    (a warning, and the docs build with warnings as errors).
``names-table``
    One row per name of a tuple of strings in the code (``pipeline.kernels.params.PARAM_ARRAYS``), with a note
    for each, checked the same way.
``faces-table``
    One row per declared hyperparameter (``pipeline.spec.HYPERPARAMETERS``): the estimators' parameter, the
    config's key, both defaults, its meaning and, where the faces differ, why.
coverage check
    When the HTML is written, every option of every ``gmm`` command, every config key, every model.yaml key and
    every estimator parameter must appear on its reference page (:func:`missing_from_html`).

Everything but the directives' ``run`` works without Sphinx, for ``tests/test_docs.py``.
"""

from __future__ import annotations

import importlib
import inspect
import re
import textwrap
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

NOTE_KEY = re.compile(r"^(\S+)\s*$")
# The reference pages the coverage check reads, by what they document (paths under the HTML output).
PAGES = {"cli": "reference/cli.html", "config": "reference/config.html", "model": "reference/model-file.html"}
API_PAGE = "reference/api.html"
# What a table's rows are, by its ``:kind:``: each row is a target of the role of that name ({config-key}`data.path`).
KINDS = {
    "config-key": "config key",
    "model-key": "model.yaml key",
    "npz-array": "model.npz array",
    "hyperparameter": "hyperparameter",
}
ESTIMATORS = ("pipeline.GaussianMixture", "pipeline.BayesianGaussianMixture")


@dataclass(frozen=True)
class Row:
    """One key of a schema as its reference table shows it."""

    key: str
    type: str
    default: str
    description: str


def resolve(dotted: str) -> Any:
    """The object named ``module.attribute`` (``pipeline.config.Config``)."""
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _sections(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models among an annotation's alternatives (a nested section)."""
    options = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    return [a for a in options if isinstance(a, type) and issubclass(a, BaseModel)]


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def type_text(annotation: Any) -> str:
    """An annotation as a YAML user reads it: ``int``, ``list of float``, ``full | tied``, ``null``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    if _is_union(annotation):
        return " | ".join(type_text(a) for a in args)
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin is list:
        return f"list of {type_text(args[0])}" if args else "list"
    if origin is dict or annotation is dict:
        return "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


_BOUNDS = ((annotated_types.Ge, "ge", "≥"), (annotated_types.Gt, "gt", ">"), (annotated_types.Le, "le", "≤"))
_BOUNDS += ((annotated_types.Lt, "lt", "<"),)


def range_text(field: FieldInfo) -> str:
    """The field's bounds (``≥ 1``, ``> 0``, ``≤ 1024``, ``not empty``), as the schema declares them."""
    parts = []
    for item in field.metadata:
        for kind, attribute, sign in _BOUNDS:
            if isinstance(item, kind):
                parts.append(f"{sign} {getattr(item, attribute)}")
        if isinstance(item, annotated_types.MinLen) and item.min_length == 1:
            parts.append("not empty")
    return ", ".join(parts)


def value_text(value: Any) -> str:
    """A default as YAML writes it: ``null``, ``true``, ``{}``, ``1.0e-06``."""
    if isinstance(value, BaseModel):
        return value_text(value.model_dump(mode="json"))
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value != 0 and abs(value) < 1e-2:
        return f"{value:.1e}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {value_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    return str(value)


def default_text(field: FieldInfo) -> str:
    """The field's default as YAML writes it; ``(required)``, or nothing for a whole section (its keys follow)."""
    if field.is_required():
        return "(required)"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel) and field.default_factory is type(value):
        return ""
    return value_text(value)


def rows(model: type[BaseModel], prefix: str = "") -> list[Row]:
    """Every key of ``model``, nested models flattened into dotted keys after their own row."""
    out = []
    for name, field in model.model_fields.items():
        key = prefix + name
        kind = type_text(field.annotation)
        bounds = range_text(field)
        out.append(Row(key, f"{kind}, {bounds}" if bounds else kind, default_text(field), field.description or ""))
        for section in _sections(field.annotation):
            out.extend(rows(section, key + "."))
    return out


def section_rows(model: type[BaseModel], section: str | None, prefix: str = "") -> list[Row]:
    """The rows of one field of ``model`` (a section, keys prefixed with its name), or of all of it."""
    if section is None:
        return rows(model, prefix)
    field = model.model_fields[section]
    return [row for s in _sections(field.annotation) for row in rows(s, f"{prefix}{section}.")]


def parse_notes(lines: list[str]) -> dict[str, str]:
    """The notes of a directive's body: an unindented key, then its indented Markdown (blank lines kept)."""
    notes: dict[str, list[str]] = {}
    current = None
    for line in lines:
        match = NOTE_KEY.match(line)
        if match:
            current = match.group(1)
            if current in notes:
                raise ValueError(f"two notes for {current!r}")
            notes[current] = []
        elif line.strip() and current is None:
            raise ValueError(f"a note's text before any key: {line.strip()!r}")
        elif current is not None:
            notes[current].append(line)
    return {key: textwrap.dedent("\n".join(text)).strip() for key, text in notes.items()}


def problems(keys: list[str], described: set[str], notes: dict[str, str]) -> list[str]:
    """What is wrong with a table's notes: notes of keys the code does not have, keys with no meaning at all."""
    out = [f"a note for {key!r}, which is not a key of the schema" for key in notes if key not in keys]
    out += [f"{key!r} has no description in the code and no note" for key in keys if key not in described | set(notes)]
    return out


def directive_notes(page: Path, directive: str) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """Each ``directive`` block of a Markdown page: its argument, its options and its notes (for the tests)."""
    out = []
    pattern = re.compile(r"^(`{3,})\{" + re.escape(directive) + r"\}[ \t]*(\S+)[ \t]*\n(.*?)^\1[ \t]*$", re.M | re.S)
    for match in pattern.finditer(page.read_text()):
        options, body = {}, []
        for line in match.group(3).splitlines():
            option = re.match(r"^:(\w+):\s*(.*)$", line)
            if option and not body:
                options[option.group(1)] = option.group(2).strip()
            else:
                body.append(line)
        out.append((match.group(2), options, parse_notes(body)))
    return out


def faces_rows(declared: dict[str, Any]) -> list[tuple[str, list[str], str]]:
    """(parameter, [config key, config default, estimators' default], meaning and why they differ) of each declared
    hyperparameter."""
    out = []
    for name, h in declared.items():
        config = [h.key, value_text(h.default_in_config())] if h.in_config else ["", ""]
        why = f" Differs: {h.why}." if h.why else ""
        out.append((name, [*config, value_text(h.default)], h.description[:1].upper() + h.description[1:] + "." + why))
    return out


# -- the coverage of the built HTML ------------------------------------------------------------------------------------


def _text(html: str) -> str:
    """The words of a page: tags dropped, entities of the characters that matter here decoded."""
    text = re.sub(r"<[^>]+>", " ", html)
    for entity, char in (("&#8211;", "--"), ("&#8212;", "--"), ("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&")):
        text = text.replace(entity, char)
    return text


def cli_options() -> dict[str, list[str]]:
    """Every ``gmm`` command and the option strings of its parameters (``--set``; click's own ``--help`` aside)."""
    from pipeline.cli import main

    out = {}
    for name, command in main.commands.items():
        options = [opt for param in command.params for opt in param.opts if opt.startswith("-")]
        out[name] = options
    return out


def estimator_parameters() -> dict[str, list[str]]:
    """The constructor parameters of each public estimator."""
    return {name: list(inspect.signature(resolve(name)).parameters) for name in ESTIMATORS}


def missing_from_html(html_dir: Path) -> list[str]:
    """What the built reference pages leave out: a command's option, a config key, a model.yaml key, a parameter."""
    from pipeline.config import Config
    from pipeline.model import ModelInfo

    out = []
    pages = {what: (html_dir / path).read_text() for what, path in PAGES.items()}
    for command, options in cli_options().items():
        part = pages["cli"].partition(f'id="gmm-{command}"')[2].partition('<section id="gmm-')[0]
        out += [f"gmm {command} {option}: not in {PAGES['cli']}" for option in options if option not in _text(part)]
    config_text, model_text = _text(pages["config"]), _text(pages["model"])
    out += [f"config key {row.key}: not in {PAGES['config']}" for row in rows(Config) if row.key not in config_text]
    out += [
        f"model.yaml key {row.key}: not in {PAGES['model']}" for row in rows(ModelInfo) if row.key not in model_text
    ]
    api = (html_dir / API_PAGE).read_text()
    for name, parameters in estimator_parameters().items():
        part = api.partition(f'id="{name}"')[2].partition('<dl class="py class">')[0]
        # numpydoc writes each entry's names in bold: one name, or several that share a description ("a, b")
        documented = {n.strip() for names in re.findall(r"<strong>([^<]*)</strong>", part) for n in names.split(",")}
        out += [f"{name} parameter {p}: not in {API_PAGE}" for p in parameters if p not in documented]
    return out


# -- Sphinx ------------------------------------------------------------------------------------------------------------


def _directives():
    """The directive classes (built here so that the functions above import without Sphinx)."""
    from docutils import nodes
    from docutils.parsers.rst import directives
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective

    class _Table(SphinxDirective):
        has_content = True
        required_arguments = 1
        option_spec = {"kind": directives.unchanged_required}
        headers: tuple[str, ...] = ()
        widths: tuple[int, ...] = ()

        def table_rows(self) -> list[tuple[str, list[str], str]]:
            """(key, its other literal cells, its description)."""
            raise NotImplementedError

        def _markdown(self, text: str) -> list[nodes.Node]:
            holder = nodes.container()
            self.state.nested_parse(
                StringList(text.splitlines(), self.get_source_info()[0]), self.content_offset, holder
            )
            return holder.children

        def _row(self, cells: list[list[nodes.Node]]) -> nodes.row:
            row = nodes.row()
            for children in cells:
                entry = nodes.entry()
                entry.extend(children)
                row += entry
            return row

        def run(self) -> list[nodes.Node]:
            try:
                notes = parse_notes(list(self.content))
            except ValueError as exc:
                raise self.error(f"{self.name}: {exc}") from None
            table_rows = self.table_rows()
            described = {key for key, _, description in table_rows if description}
            for problem in problems([key for key, _, _ in table_rows], described, notes):
                self.reporter.warning(f"{self.name} {self.arguments[0]}: {problem}", line=self.lineno)
            group = nodes.tgroup(cols=len(self.headers))
            group.extend(nodes.colspec(colwidth=width) for width in self.widths)
            head = nodes.thead()
            head += self._row([[nodes.paragraph(text=h)] for h in self.headers])
            body = nodes.tbody()
            kind = self.options.get("kind")
            if kind not in KINDS:
                raise self.error(f"{self.name}: :kind: must be one of {', '.join(KINDS)}")
            std = self.env.get_domain("std")
            for key, literals, description in table_rows:
                node_id = nodes.make_id(f"{kind}-{key}")
                std.note_object(kind, key, node_id, location=(self.env.docname, self.lineno))
                target = nodes.paragraph(ids=[node_id])
                target += nodes.literal(text=key)
                meaning = "\n\n".join(text for text in (description, notes.get(key, "")) if text)
                literal_cells = [[nodes.paragraph("", "", nodes.literal(text=v))] if v else [] for v in literals]
                body += self._row([[target], *literal_cells, self._markdown(meaning)])
            group += head
            group += body
            table = nodes.table(classes=["schema-table"])
            table += group
            return [table]

    class SchemaTable(_Table):
        option_spec = {**_Table.option_spec, "section": directives.unchanged, "prefix": directives.unchanged}
        headers = ("key", "type", "default", "meaning")
        widths = (22, 16, 12, 50)

        def table_rows(self):
            model = resolve(self.arguments[0])
            found = section_rows(model, self.options.get("section"), self.options.get("prefix", ""))
            return [(row.key, [row.type, row.default], row.description) for row in found]

    class NamesTable(_Table):
        headers = ("name", "meaning")
        widths = (25, 75)

        def table_rows(self):
            return [(name, [], "") for name in resolve(self.arguments[0])]

    class FacesTable(_Table):
        headers = ("parameter", "config key", "config default", "estimators' default", "meaning")
        widths = (20, 22, 10, 10, 38)

        def table_rows(self):
            return faces_rows(resolve(self.arguments[0]))

    return SchemaTable, NamesTable, FacesTable


def _check_coverage(app, exception) -> None:
    """After an HTML build: every CLI option, config key, model.yaml key and parameter is on its page."""
    if exception is not None or app.builder.name != "html":
        return
    from sphinx.util import logging

    for problem in missing_from_html(Path(app.outdir)):
        logging.getLogger(__name__).warning(f"reference incomplete: {problem}")


def setup(app) -> dict[str, Any]:
    schema_table, names_table, faces_table = _directives()
    app.add_directive("schema-table", schema_table)
    app.add_directive("names-table", names_table)
    app.add_directive("faces-table", faces_table)
    for kind, what in KINDS.items():
        app.add_crossref_type(kind, kind, indextemplate=f"pair: %s; {what}")
    app.connect("build-finished", _check_coverage)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
