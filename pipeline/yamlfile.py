"""Reading YAML safely: YAML 1.2 numbers, bounded size, aliases expanded at most so far."""

from __future__ import annotations

import re
from typing import Any

import yaml

from pipeline.errors import InputError


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-3`` as a float, as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def count_values(value: Any, budget: int) -> int:
    """Values in ``value`` with YAML aliases expanded (shared objects counted each time), up to ``budget`` + 1."""
    stack, seen = [value], 0
    while stack and seen <= budget:
        item = stack.pop()
        seen += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return seen


def parse_yaml(text: str | bytes, source: str, max_values: int) -> Any:
    """Parse YAML; a syntax error names ``source``, line and column; more than ``max_values`` values is an error.

    A YAML alias bomb (a few lines that expand to billions of values) stops at the bound.
    """
    try:
        value = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"{where}: invalid YAML: {problem}") from None
    except (RecursionError, UnicodeDecodeError) as exc:
        raise InputError(f"{source}: invalid YAML ({type(exc).__name__})") from None
    if count_values(value, max_values) > max_values:
        raise InputError(f"{source}: expands to more than {max_values} values (YAML aliases?)")
    return value
