"""All SQL of wallets: derivation indexes taken from the chain family's sequence."""

from __future__ import annotations

from typing import Any

_RESERVE = "SELECT nextval(CAST($1 AS regclass)) FROM generate_series(1, $2)"


async def reserve_indexes(conn: Any, sequence: str, count: int) -> list[int]:
    """`count` values of a derivation-index sequence, committed at once (unused ones are gaps,
    never reuses)."""
    return [row[0] for row in await conn.fetch(_RESERVE, sequence, count)]
