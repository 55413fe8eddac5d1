"""Fragment search: `ILIKE '%fragment%'` patterns (served by pg_trgm GIN indexes)."""

from __future__ import annotations

BACKSLASH = "\\"


def contains_pattern(fragment: str) -> str:
    """A pattern matching `fragment` anywhere, with LIKE's wildcards in it taken literally."""
    escaped = (
        fragment.replace(BACKSLASH, BACKSLASH * 2)
        .replace("%", BACKSLASH + "%")
        .replace("_", BACKSLASH + "_")
    )
    return f"%{escaped}%"
