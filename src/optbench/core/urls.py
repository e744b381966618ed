"""Credentials in URLs: the one place that hides them wherever optbench shows or stores a URL.

A store URL (``postgresql+psycopg://user:secret@host/db``) or any other URL optbench is given may
carry a password. optbench needs it to connect, and must never show or store it: every place
that shows a URL or a text that may hold one (terminal, summary, HTML report, tables, the
"reproduce" command, stored study metadata and run messages, error messages) goes through
:func:`redact_url` (one URL or path) or :func:`redact_text` (any text: a command line, an error
message), and JSON-like data about to be stored through :func:`redact_json`.

What is hidden (replaced by :data:`REDACTED`, as SQLAlchemy's
``URL.render_as_string(hide_password=True)`` does):

* the password of the userinfo part of any URL (``scheme://user:PASSWORD@host``);
* the value of credential parameters (:data:`SECRET_KEYS`), in a URL's query
  (``?password=...``) or in libpq's ``key=value`` connection strings (``password=...``);
* in :func:`redact_text`, any further secret the caller names (the store and the executor name
  their URL's passwords, :func:`passwords`), however it appears in the text. Nothing is kept
  between calls.

A password need not be written in a URL at all: PostgreSQL URLs without one use libpq's
``PGPASSWORD``, ``~/.pgpass`` and ``PGSERVICE`` (README, "Credentials").
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote

REDACTED = "***"
"""What a hidden password is shown as (SQLAlchemy's ``hide_password=True`` text)."""

SECRET_KEYS = ("password", "passwd", "pwd", "sslpassword", "secret", "token", "access_token", "api_key", "apikey")
"""Names of query or connection-string parameters whose values are credentials (case-insensitive)."""

MIN_KNOWN_SECRET = 4
"""Remembered passwords shorter than this are not searched for in free text (a 1-3 character
password would match inside ordinary words); they are still hidden inside URLs."""

# scheme://user:password@ -- the password runs to the last "@" before whitespace, a quote, "?" or
# "#" (SQLAlchemy stops at the first "@"; hiding up to the last one hides at least as much)
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@'\"]*):(?P<password>[^\s'\"?#]*)@")
_KEY_VALUE = re.compile(r"(?P<head>(?<![A-Za-z0-9_])(?:" + "|".join(SECRET_KEYS) + r")\s*=\s*)"
                        r"(?P<value>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&;,'\"]+)", re.IGNORECASE)



def _text(value: object) -> str:
    """``value`` as text: a path's string, a SQLAlchemy URL rendered with its password hidden."""
    render = getattr(value, "render_as_string", None)
    if callable(render):  # a sqlalchemy.engine.URL: its str() would hide the password too
        return render(hide_password=True)
    if isinstance(value, os.PathLike):
        return str(os.fspath(value))
    return str(value)


def _hide(text: str) -> str:
    """``text`` with every userinfo password and credential parameter value replaced."""
    text = _USERINFO.sub(lambda m: f"{m['head']}:{REDACTED}@", text)
    return _KEY_VALUE.sub(lambda m: f"{m['head']}{REDACTED}", text)


def redact_url(url: object) -> str:
    """A URL or path as text with every credential hidden: what optbench shows of a store.

    A SQLAlchemy URL (a string ``scheme://...`` that parses as one, or a ``sqlalchemy.engine.URL``)
    is rendered by SQLAlchemy's ``render_as_string(hide_password=True)``, and credential
    parameters of its query (``?password=...``) are hidden as well; a path or any other text is
    returned with the URL passwords and credential parameters in it hidden (:func:`redact_text`
    without remembered secrets).

    Args:
        url: a path, a URL string, a ``sqlalchemy.engine.URL`` or any object (its ``str``).

    Returns:
        the text to show; never the password.

    Raises:
        nothing: a URL that does not parse is redacted as text.
    """
    text = _text(url)
    if "://" not in text:
        return _hide(text)
    try:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            parsed = make_url(text)
        except (ArgumentError, ValueError):
            return _hide(text)
    except ImportError:  # pragma: no cover - SQLAlchemy is a dependency
        return _hide(text)
    match = _USERINFO.search(text)
    seen = unquote(match["password"]) if match else None
    if seen is not None and seen != parsed.password:  # e.g. an unencoded "@" in the password
        return _hide(text)  # SQLAlchemy would show part of the password as the host
    return _hide(parsed.render_as_string(hide_password=True))


def passwords(url: object) -> set[str]:
    """The credentials written in ``url``: its userinfo password and credential query parameters,
    each as written and percent-decoded. Empty for a path or a URL without any.

    Raises:
        nothing.
    """
    render = getattr(url, "render_as_string", None)
    text = render(hide_password=False) if callable(render) else _text(url)  # a sqlalchemy.engine.URL
    found: set[str] = set()
    for m in _USERINFO.finditer(text):
        found |= {m["password"], unquote(m["password"])}
    for m in _KEY_VALUE.finditer(text):
        value = m["value"].strip("'\"")
        found |= {value, unquote(value)}
    if "://" in text:
        try:
            from sqlalchemy.engine import make_url

            parsed = make_url(text)
            if parsed.password:
                found.add(str(parsed.password))
        except Exception:  # noqa: BLE001 - a text that is no SQLAlchemy URL has no more to find
            pass
    found.discard("")
    return found


def redact_text(text: object, secrets: Iterable[str] = ()) -> str:
    """``text`` with every credential in it hidden: the passwords of the URLs in it and the values
    of credential parameters (``password=...``), plus each of ``secrets`` of at least
    :data:`MIN_KNOWN_SECRET` characters (the passwords of the store's own URL, :func:`passwords`)
    wherever it appears, as written or percent-encoded. For command lines, error messages and other
    free text.

    Args:
        text: the text (any object: its ``str``; None gives ``""``).
        secrets: further strings to hide (empty and shorter ones are ignored).

    Returns:
        the text to show or store.

    Raises:
        nothing.
    """
    out = _hide("" if text is None else _text(text))
    hidden = {s for s in secrets if len(s) >= MIN_KNOWN_SECRET}
    forms = {form for s in hidden for form in (s, quote(s, safe=""), quote(s), quote_plus(s)) if form}
    for form in sorted(forms, key=len, reverse=True):  # longest first: a form inside another
        out = out.replace(form, REDACTED)
    return out


def redact_json(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of JSON-like data (dicts, lists, tuples, strings, numbers) with :func:`redact_text`
    applied to every string, keys included (``secrets`` as there): what optbench stores (study
    metadata, run messages).

    Raises:
        nothing: other objects are returned unchanged.
    """
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, Mapping):
        return {redact_json(k, secrets) if isinstance(k, str) else k: redact_json(v, secrets)
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact_json(v, secrets) for v in value]
    if isinstance(value, tuple):
        return tuple(redact_json(v, secrets) for v in value)
    return value


__all__ = ["MIN_KNOWN_SECRET", "REDACTED", "SECRET_KEYS", "passwords", "redact_json",
           "redact_text", "redact_url"]
