"""Text PostgreSQL cannot store: NUL (U+0000; `text` and `jsonb` both refuse it) and unpaired
UTF-16 surrogates (U+D800–U+DFFF, which have no UTF-8 form). JSON can spell both
(`"\\u0000"`, `"\\ud800"`), and a URL can carry NUL (`%00`).

`may_hold_unstorable` is the cheap test on raw bytes that decides whether a request is walked
at all: every way a parsed JSON string can end up holding such a character shows in the raw
body as one of its patterns (the escapes, a raw NUL, the UTF-8-style bytes of a surrogate that
`json.loads` lets through, or the NUL bytes of a UTF-16/32 body).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_MAY_HOLD = re.compile(rb"\x00|\\u(?:0000|[dD][89a-fA-F])|\xed[\xa0-\xbf]")


def unstorable(text: str) -> bool:
    return _UNSTORABLE.search(text) is not None


def may_hold_unstorable(raw: bytes) -> bool:
    return _MAY_HOLD.search(raw) is not None


def printable(text: str) -> str:
    """`text` with its unstorable characters spelled as escapes, fit for a message or a log."""
    return _UNSTORABLE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def unstorable_locations(value: Any, loc: tuple[str | int, ...] = ()) -> Iterator[tuple]:
    """The location (keys and indexes from `loc` down) of every string, and every object key,
    in a parsed JSON value that holds an unstorable character."""
    if isinstance(value, str):
        if unstorable(value):
            yield loc
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and unstorable(key):
                yield (*loc, printable(key))
            else:
                yield from unstorable_locations(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from unstorable_locations(item, (*loc, index))
