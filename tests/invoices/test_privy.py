"""Invoice creation with Privy deposit wallets, through the real api app and a fake Privy on a
real socket: no database transaction or pooled connection is held while Privy makes the
wallet; a replay makes no Privy call; a retry of a failed request gets the same wallet; a
concurrent pair under one Idempotency-Key makes one invoice and one wallet; Privy down is a 503
in the error shape with nothing written."""

import asyncio

import pytest

from tests.fixtures.fake_privy import privy_settings
from tests.fixtures.processes import free_port
from tests.invoices.conftest import error_code

APP_NAME = "nespay-privy-under-test"  # the app's connections in pg_stat_activity


def body(network: str, **extra) -> dict:
    return {"amount": "3", "currency": "USDT", "network": network, **extra}


@pytest.fixture
def settings_for(database_url, fake_privy):
    def make(**overrides):
        return privy_settings(database_url, fake_privy.url, service_name=APP_NAME, **overrides)

    return make


@pytest.fixture
async def app(api_for, settings_for):
    async with api_for(settings_for()) as value:
        yield value


async def written(app, merchant) -> dict[str, int]:
    counts = {}
    for table in ("idempotency_keys", "invoices", "deposit_addresses", "events"):
        counts[table] = await app.scalar(
            f"SELECT count(*) FROM {table} WHERE merchant_id = :m",  # noqa: S608 - fixed names
            m=merchant.merchant_id,
        )
    return counts


async def stored_wallets(app, merchant) -> list:
    return await app.rows(
        "SELECT provider, provider_wallet_id, address FROM deposit_addresses "
        "WHERE merchant_id = :m",
        m=merchant.merchant_id,
    )


async def test_no_transaction_or_connection_is_held_while_privy_makes_the_wallet(
    api_for, settings_for, fake_privy, merchant
):
    # One connection in each of the app's pools: a request holding one would stall the next.
    settings = settings_for(database_pool_size=1, database_max_overflow=0)
    async with api_for(settings) as app:
        network = await app.network()
        fake_privy.hold()
        creating = asyncio.create_task(app.create(merchant, body(network), key="held-1"))
        try:
            assert await asyncio.to_thread(fake_privy.wait_for_arrivals, 1)
            busy = await app.rows(
                "SELECT state, query FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = :name "
                "AND state <> 'idle'",
                name=APP_NAME,
            )
            assert busy == []  # neither "idle in transaction" nor a statement waiting
            listed = await asyncio.wait_for(
                app.client.get("/api/v1/invoices", headers=merchant.headers), 10
            )
            assert listed.status_code == 200 and listed.json()["data"] == []
        finally:
            fake_privy.release()
        created = await creating
    assert created.status_code == 201, created.text
    [(provider, wallet_id, address)] = await stored_wallets(app, merchant)
    [wallet] = fake_privy.wallets
    assert (provider, wallet_id, address) == ("privy", wallet["id"], wallet["address"].lower())
    assert created.json()["payment_options"][0]["address"].lower() == address


async def test_a_replay_answers_the_invoice_without_calling_privy(app, merchant, fake_privy):
    network = await app.network()
    first = await app.create(merchant, body(network), key="privy-1")
    again = await app.create(merchant, body(network), key="privy-1")
    other = await app.create(merchant, body(network, amount="4"), key="privy-1")
    assert first.status_code == 201, first.text
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert other.status_code == 409 and error_code(other) == "idempotency_key_reused"
    assert len(fake_privy.requests) == 1
    assert len(await stored_wallets(app, merchant)) == 1


async def test_a_retry_of_a_failed_request_gets_the_same_wallet_and_one_invoice(
    app, merchant, fake_privy
):
    network = await app.network()
    # Privy makes the wallet every time, but no answer reaches us: the request fails.
    fake_privy.fail_next(502, times=3, after_create=True)
    failed = await app.create(merchant, body(network), key="retry-1")
    assert failed.status_code == 503 and error_code(failed) == "wallet_provider_unavailable"
    assert set((await written(app, merchant)).values()) == {0}

    retried = await app.create(merchant, body(network), key="retry-1")
    assert retried.status_code == 201, retried.text
    assert "Idempotent-Replayed" not in retried.headers
    [wallet] = fake_privy.wallets  # the retry got the wallet the failed request made
    assert [row.provider_wallet_id for row in await stored_wallets(app, merchant)] == [wallet["id"]]
    again = await app.create(merchant, body(network), key="retry-1")
    assert again.json()["id"] == retried.json()["id"]
    assert await app.invoice_count(merchant) == 1 and len(fake_privy.wallets) == 1


async def test_a_concurrent_pair_with_one_key_makes_one_invoice_and_one_wallet(
    app, api_for, settings_for, merchant, fake_privy
):
    network = await app.network()
    async with api_for(settings_for()) as replica:
        fake_privy.hold()
        pair = [
            asyncio.create_task(each.create(merchant, body(network), key="pair-1"))
            for each in (app, replica)
        ]
        try:
            # Both are at Privy at once: neither holds anything the other waits for.
            assert await asyncio.to_thread(fake_privy.wait_for_arrivals, 2)
        finally:
            fake_privy.release()
        responses = await asyncio.gather(*pair)
    assert [r.status_code for r in responses] == [201, 201], [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert sorted(str(r.headers.get("Idempotent-Replayed")) for r in responses) == [
        "None",
        "true",
    ]
    assert len(fake_privy.requests) == 2 and len(fake_privy.wallets) == 1
    counts = await written(app, merchant)
    assert counts == {"idempotency_keys": 1, "invoices": 1, "deposit_addresses": 1, "events": 1}


async def test_privy_down_is_a_503_in_the_error_shape_and_writes_nothing(
    api_for, database_url, merchant
):
    down = privy_settings(database_url, f"http://127.0.0.1:{free_port()}")
    async with api_for(down) as app:
        network = await app.network()
        for key in ("down-1", None):
            response = await app.create(merchant, body(network), key=key)
            assert response.status_code == 503, response.text
            assert error_code(response) == "wallet_provider_unavailable"
            assert "try again" in response.json()["error"]["message"]
    assert set((await written(app, merchant)).values()) == {0}
