"""Text PostgreSQL cannot store: the NUL character (U+0000), refused at the edge with the field that holds it.

PostgreSQL's ``text`` and ``jsonb`` cannot hold U+0000; left alone, a request carrying one fails at the database
(a 500) and an event carrying one fails in every consumer that stores it. JSON can only carry it escaped, so one
search of the raw bytes for ``\\u0000`` tells whether a document needs looking at (nearly never).
"""

from typing import Any

import orjson

NUL_ESCAPE = b"\\u0000"
REASON = "contains a NUL character (\\u0000), which text cannot hold"


def nul_path(value: Any, path: str = "") -> str | None:
    """The dotted path (``needs.0.template_id``) of the first string in ``value``, an object's key or a value,
    that holds a NUL (in a key, written ``\\u0000``); ``"body"`` for ``value`` itself; None if there is none."""
    if isinstance(value, str):
        return (path or "body") if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            shown = str(key).replace("\x00", "\\u0000")  # the field named as JSON writes it
            here = f"{path}.{shown}" if path else shown
            if shown != key:
                return here
            found = nul_path(item, here)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = nul_path(item, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None


def nul_in_json(raw: bytes) -> str | None:
    """The path of the first NUL in a JSON document's strings (None if none, or if it is not JSON at all)."""
    if NUL_ESCAPE not in raw:
        return None
    try:
        return nul_path(orjson.loads(raw))
    except orjson.JSONDecodeError:
        return None
