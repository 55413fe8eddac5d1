"""`Idempotency-Key` on invoice creation: a replay answers the same invoice, another body under
the key is a 409, concurrent requests with one key make one invoice, keys are per merchant,
a malformed key is a 400, and a failed request does not burn its key."""

import asyncio

import pytest

from tests.invoices.conftest import error_code


def body(network: str, **extra) -> dict:
    return {"amount": "12.34", "currency": "USDT", "network": network, **extra}


async def test_the_same_key_and_body_return_the_same_invoice(app, merchant, network):
    first = await app.create(merchant, body(network, metadata={"a": 1, "b": 2}), key="order-42")
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    # Same body, keys in another order: the same request.
    again = await app.create(merchant, body(network, metadata={"b": 2, "a": 1}), key="order-42")
    assert again.status_code == 201, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert await app.invoice_count(merchant) == 1
    assert [e.type for e in await app.events(first.json()["id"])] == ["invoice.created"]


async def test_the_same_key_with_another_body_is_a_409(app, merchant, network):
    first = await app.create(merchant, body(network), key="k-1")
    assert first.status_code == 201
    for other in (
        body(network, amount="12.35"),
        body(network, order_id="x"),
        body(network, metadata={"a": 1}),
    ):
        response = await app.create(merchant, other, key="k-1")
        assert response.status_code == 409, response.text
        assert error_code(response) == "idempotency_key_reused"
    assert await app.invoice_count(merchant) == 1
    # The original request still replays.
    replay = await app.create(merchant, body(network), key="k-1")
    assert replay.json()["id"] == first.json()["id"]


async def test_concurrent_requests_with_one_key_make_one_invoice(
    app, api_for, settings, merchant, network
):
    async with api_for(settings) as second_app:
        clients = [app, second_app] * 10
        responses = await asyncio.gather(
            *(each.create(merchant, body(network), key="burst-1") for each in clients)
        )
    assert [r.status_code for r in responses] == [201] * 20, [r.text for r in responses]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    replayed = [r.headers.get("Idempotent-Replayed") for r in responses]
    assert replayed.count("true") == 19 and replayed.count(None) == 1
    assert await app.invoice_count(merchant) == 1
    (invoice_id,) = ids
    assert [e.type for e in await app.events(invoice_id)] == ["invoice.created"]
    assert (
        await app.scalar(
            "SELECT count(*) FROM deposit_addresses WHERE merchant_id = :m",
            m=merchant.merchant_id,
        )
        == 1
    )


async def test_keys_are_per_merchant(app, merchant, other_merchant, network):
    mine = await app.create(merchant, body(network), key="shared-key")
    theirs = await app.create(other_merchant, body(network), key="shared-key")
    assert mine.status_code == theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs.headers
    assert mine.json()["id"] != theirs.json()["id"]
    assert (await app.get(other_merchant, theirs.json()["id"])).status_code == 200
    assert (await app.get(other_merchant, mine.json()["id"])).status_code == 404


async def test_without_a_key_every_request_creates(app, merchant, network):
    first = await app.create(merchant, body(network))
    second = await app.create(merchant, body(network))
    assert first.json()["id"] != second.json()["id"]
    assert await app.invoice_count(merchant) == 2


@pytest.mark.parametrize(
    "key",
    [
        "x" * 256,
        "has space",
        "",
        "tab\tkey",
        "ключ".encode(),
        "ké".encode("latin-1"),
        "a/b",
    ],
    ids=["too-long", "space", "empty", "tab", "utf8", "latin1", "slash"],
)
async def test_a_malformed_key_is_a_400_and_nothing_is_stored(app, merchant, network, key):
    raw = key if isinstance(key, bytes) else key.encode()
    headers = [(b"x-api-key", merchant.key.encode()), (b"idempotency-key", raw)]
    response = await app.client.post("/api/v1/invoices", json=body(network), headers=headers)
    assert response.status_code == 400, response.text
    assert error_code(response) == "idempotency_key_malformed"
    assert await app.invoice_count(merchant) == 0


async def test_the_longest_key_is_accepted(app, merchant, network):
    key = "A-z_0.9:" * 31 + "x" * 7  # 255 characters of the allowed set
    assert len(key) == 255
    first = await app.create(merchant, body(network), key=key)
    again = await app.create(merchant, body(network), key=key)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]


async def test_a_refused_request_does_not_burn_its_key(app, merchant, network):
    refused = await app.create(merchant, body("no-such-network"), key="retry-me")
    assert refused.status_code == 422 and error_code(refused) == "unknown_network"
    fixed = await app.create(merchant, body(network), key="retry-me")
    assert fixed.status_code == 201, fixed.text
    assert "Idempotent-Replayed" not in fixed.headers
    assert await app.invoice_count(merchant) == 1


async def test_code_case_does_not_make_another_request(app, merchant, network):
    first = await app.create(
        merchant,
        body(network, currency="usdt", payment_options=[{"network": network, "currency": "usdt"}]),
        key="case-1",
    )
    again = await app.create(
        merchant,
        body(network, currency="USDT", payment_options=[{"network": network, "currency": "USDT"}]),
        key="case-1",
    )
    assert first.status_code == again.status_code == 201, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
