"""Cursor pagination: `?limit=&starting_after=` → `{"data": […], "has_more": bool}`.

Ids are time-ordered, so "after" in a newest-first list means "older than"."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel
from sqlalchemy import Select

T = TypeVar("T")


class PageParams(BaseModel):
    limit: int
    starting_after: str | None


async def page_params(
    limit: Annotated[int, Query(ge=1, le=100, description="Page size (1–100)")] = 20,
    starting_after: Annotated[
        str | None, Query(max_length=64, description="The last id of the previous page")
    ] = None,
) -> PageParams:
    return PageParams(limit=limit, starting_after=starting_after)


PageDep = Annotated[PageParams, Depends(page_params)]


def page_query(
    query: Select[T], id_column: Any, *, limit: int, starting_after: Any | None
) -> Select[T]:
    """Newest first by id, `limit` rows, after the cursor (ids are time-ordered)."""
    query = query.order_by(id_column.desc()).limit(limit)
    if starting_after is not None:
        query = query.where(id_column < starting_after)
    return query


def fetch_size(limit: int) -> int:
    """Rows to fetch for a page of `limit`: one more, so `split_page` can tell if more follow."""
    return limit + 1


def split_page(rows: Sequence[T], limit: int) -> tuple[list[T], bool]:
    """Rows fetched with `fetch_size(limit)` → (the first `limit` of them, whether more follow)."""
    return list(rows[:limit]), len(rows) > limit
