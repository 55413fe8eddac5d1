"""Fragment search: `ILIKE '%fragment%'` patterns, served by pg_trgm GIN indexes.

A trigram index can only narrow a pattern that holds a trigram, i.e. three letters or digits
in a row: `'%ab%'`, `'%%%'` or `'%-_-%'` would make PostgreSQL read every row of a table
that may hold millions. So a search fragment is refused (422, in the one error shape) unless
it holds such a run; it is at most `MAX_FRAGMENT` characters and has no control characters;
LIKE's wildcards in it (`%`, `_`, `\\`) are taken literally. An empty (or blank) `q` means no
search at all.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Query

from nespay.errors import NespayError

BACKSLASH = "\\"
MIN_RUN = 3
MAX_FRAGMENT = 200
# Three letters or digits in a row, in any script (pg_trgm's word characters under a UTF-8
# ctype: ASCII, accented and CJK letters all make trigrams; punctuation and emoji do not).
_TRIGRAM_RUN = re.compile(rf"[^\W_]{{{MIN_RUN}}}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class SearchTooShort(NespayError):
    status_code = 422
    code = "search_too_short"
    message = (
        f"`q` needs at least {MIN_RUN} letters or digits in a row (the search works on "
        f"trigrams; a shorter fragment would read every row)."
    )


class SearchInvalid(NespayError):
    status_code = 422
    code = "search_invalid"
    message = "`q` must not contain control characters (tabs, line breaks, NUL, …)."


class SearchTooBroad(NespayError):
    status_code = 422
    code = "search_too_broad"
    message = "The search took too long; give a longer fragment or a filter."


def contains_pattern(fragment: str) -> str:
    """A pattern matching `fragment` anywhere, with LIKE's wildcards in it taken literally."""
    escaped = (
        fragment.replace(BACKSLASH, BACKSLASH * 2)
        .replace("%", BACKSLASH + "%")
        .replace("_", BACKSLASH + "_")
    )
    return f"%{escaped}%"


def checked_fragment(q: str | None) -> str | None:
    """`q` stripped, or None for no search; raises if it cannot be searched safely."""
    if q is None or not q.strip():
        return None
    q = q.strip()
    if _CONTROL.search(q):
        raise SearchInvalid()
    if not _TRIGRAM_RUN.search(q):
        raise SearchTooShort()
    return q


async def search_fragment(
    q: Annotated[
        str | None,
        Query(
            max_length=MAX_FRAGMENT,
            description=(
                f"A fragment to look for, {MIN_RUN}–{MAX_FRAGMENT} characters with at least "
                f"{MIN_RUN} letters or digits in a row; case-insensitive; `%`, `_` and `\\` "
                "are literal"
            ),
        ),
    ] = None,
) -> str | None:
    return checked_fragment(q)


FragmentDep = Annotated[str | None, Depends(search_fragment)]
