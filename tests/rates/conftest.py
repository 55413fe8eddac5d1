import pytest
from sqlalchemy import delete, func, insert

from nespay.models import Rate
from nespay.rates.tasks import cooldowns, outages
from tests.fixtures.fake_coingecko import fake_coingecko  # noqa: F401 - a fixture


@pytest.fixture(autouse=True)
def _no_cooldowns():
    cooldowns.clear()
    outages.clear()
    yield
    cooldowns.clear()
    outages.clear()


@pytest.fixture
async def rates_table(session):
    """An empty rates table inside the test's transaction (rolled back), and a writer:
    `await put(base, quote, source, rate, age_s=0)`."""
    from datetime import timedelta
    from decimal import Decimal

    await session.execute(delete(Rate))

    async def put(base, quote, source, rate, age_s=0):
        await session.execute(
            insert(Rate).values(
                base=base,
                quote=quote,
                source=source,
                rate=Decimal(rate),
                fetched_at=func.now() - timedelta(seconds=age_s),
            )
        )

    return put
