"""Keeping credentials out of everything written: model files, checkpoints, logs, error lines.

``storage_options`` (for fsspec) carry keys, secrets and tokens.  They are
handed to fsspec and to the workers, and nowhere else: model.yaml records
their keys with every value replaced by :data:`REDACTED`, the fit's identity
leaves them out (rotating a credential does not refit), and every line the
CLI prints passes through :func:`scrub`, which replaces any registered
secret value, and the password of a URL such as ``ftp://user:pass@host``,
with ``***``.  A URL in a setting (``data.path``, ``model.init_params``,
``output.path``, ...) is recorded and compared without its password
(:func:`without_passwords`).
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "<redacted>"
_SECRETS: set[str] = set()
# Values shorter than this are not secrets worth hiding (and would blank out common words).
_MIN_LENGTH = 4
# The password runs to the last "@" of the URL's authority (one written with an unescaped "@" is hidden whole).
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/?#@:\s]*):(?P<password>[^/?#\s]+)@")


def redact_options(options: dict[str, Any] | None) -> dict[str, Any] | None:
    """The keys of ``options`` with every value replaced by :data:`REDACTED`."""
    if options is None:
        return None
    return {str(key): REDACTED for key in options}


def _leaves(value: Any):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(key)
            yield from _leaves(item)
    elif isinstance(value, (list, tuple, set)):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, (str, bytes)):  # numbers and flags are settings, not secrets
        yield value.decode(errors="replace") if isinstance(value, bytes) else value


def register(*options: dict[str, Any] | None) -> None:
    """Remember every string value in ``options`` as a secret that :func:`scrub` hides (keys are not secrets)."""
    for mapping in options:
        for value in (mapping or {}).values():
            _SECRETS.update(v for v in _leaves(value) if len(v) >= _MIN_LENGTH)


def registered() -> list[str]:
    """The registered secret values (for worker processes that print lines of their own)."""
    return sorted(_SECRETS)


def without_passwords(value: Any) -> Any:
    """``value`` with the password of every URL in its strings (in mappings and lists too) replaced by ``***``."""
    if isinstance(value, str):
        return _URL_PASSWORD.sub(r"\g<scheme>\g<user>:***@", value)
    if isinstance(value, dict):
        return {key: without_passwords(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(without_passwords(item) for item in value)
    return value


def scrub(text: str) -> str:
    """``text`` with registered secrets and URL passwords replaced by ``***``."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    return without_passwords(text)
