"""A treasury is checked in its network's family: a Tron network takes a base58check `T…`
address and refuses an EVM one (and the other way round), changing nothing."""

import pytest
from sqlalchemy import text

from nespay.kit.ids import new_id
from nespay.sweeps.treasury import TreasuryInvalid, set_treasury
from tests.fixtures.factories import TEST_ACTOR, register_network

TRON_TREASURY = "TPX6HK2NRN4XKRX1JAhbC827bm7gMmy5w1"


async def _tron_network(session) -> str:
    code = f"trontest-{new_id('n')[-8:].lower()}"
    await session.execute(
        text(
            "INSERT INTO networks (code, name, chain_family, chain_id, confirmations,"
            " block_time_ms) VALUES (:c, :c, 'tron', 1, 1, 3000)"
        ),
        {"c": code},
    )
    return code


async def _treasury(session, network: str) -> str | None:
    return await session.scalar(
        text("SELECT treasury_address FROM networks WHERE code = :c"), {"c": network}
    )


async def test_a_tron_network_takes_a_base58_treasury_and_refuses_an_evm_one(session):
    network = await _tron_network(session)
    for wrong in ("0x" + "ab" * 20, "41" + "ab" * 20, TRON_TREASURY[:-1] + "2"):
        with pytest.raises(TreasuryInvalid):
            await set_treasury(session, TEST_ACTOR, network, wrong)
    assert await _treasury(session, network) is None
    assert await set_treasury(session, TEST_ACTOR, network, TRON_TREASURY) == TRON_TREASURY
    assert await _treasury(session, network) == TRON_TREASURY


async def test_an_evm_network_refuses_a_tron_treasury_saying_so(session, database):
    network = await register_network(database, ["http://127.0.0.1:9"], "0x" + "11" * 20)
    with pytest.raises(TreasuryInvalid, match="Tron address"):
        await set_treasury(session, TEST_ACTOR, network, TRON_TREASURY)
