"""A search PostgreSQL cancels at its statement timeout is the client's 422
`search_too_broad`, never a 500."""

import pytest
from sqlalchemy import func, select

from nespay.backoffice.repository import run_search
from nespay.kit.search import SearchTooBroad


async def test_a_search_that_outruns_its_timeout_is_too_broad(database):
    async with database.sessionmaker() as session:
        with pytest.raises(SearchTooBroad):
            await run_search(session, select(func.pg_sleep(5)), statement_timeout="20ms")
        await session.rollback()
        # within the timeout the rows come back
        rows = await run_search(session, select(func.length("abc")), statement_timeout="5s")
        assert rows == [(3,)]
