"""`transaction.requested` is decided synchronously against the card user's balance, with a
ledger hold, never twice for one authorisation; `transaction.*` events post or release the
hold. Every refusal is a decline Rain understands, never a 500."""

from __future__ import annotations

import asyncio

import pytest

from tests.callbacks.delivery_rig import eventually
from tests.inbox.rig import rows

pytestmark = pytest.mark.own_database


async def test_fifty_concurrent_authorisations_never_overdraw_one_card_user(cards):
    user, _, rain_card = await cards.funded_card("30")
    answers = await asyncio.gather(*(cards.authorise(rain_card, 100) for _ in range(50)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * 30 + [402] * 20
    assert {a.json()["rejectionCode"] for a in answers if a.status_code == 402} == {
        "INSUFFICIENT_FUNDS"
    }
    assert await cards.balance(user["id"]) == {"available": "0", "held": "30", "spent": "0"}
    account = (
        await cards.app.rows(
            "SELECT credits_posted, debits_posted, debits_pending FROM ledger_accounts"
            " WHERE id LIKE :p",
            p=f"c:{user['id']}:available:%",
        )
    )[0]
    assert account[1] + account[2] <= account[0]
    await cards.ledger_holds()
    holds = await cards.app.scalar(
        "SELECT count(*) FROM ledger_transfers WHERE code = 'card_authorisation'"
        " AND type = 'pending'"
    )
    assert holds == 30


async def test_a_rain_retry_gets_the_same_answer_and_another_event_for_the_same_transaction_too(
    cards,
):
    user, _, rain_card = await cards.funded_card("10")
    first = await cards.authorise(rain_card, 600, transaction_id="tx-a", event_id="ev-a")
    retry = await cards.authorise(rain_card, 600, transaction_id="tx-a", event_id="ev-a")
    other_event = await cards.authorise(rain_card, 600, transaction_id="tx-a", event_id="ev-b")
    assert [r.status_code for r in (first, retry, other_event)] == [200, 200, 200]
    assert await cards.balance(user["id"]) == {"available": "4", "held": "6", "spent": "0"}
    declined = await cards.authorise(rain_card, 600, transaction_id="tx-b", event_id="ev-c")
    declined_again = await cards.authorise(rain_card, 600, transaction_id="tx-b", event_id="ev-c")
    assert declined.status_code == declined_again.status_code == 402
    assert declined_again.json()["rejectionCode"] == "INSUFFICIENT_FUNDS"
    stored = await rows(cards.app.database, "event_type = 'transaction.requested'")
    assert {r["external_id"] for r in stored} == {"ev-a", "ev-b", "ev-c"}
    assert {r["status"] for r in stored} == {"handled"}


async def test_a_locked_or_canceled_card_a_suspended_merchant_or_an_unknown_card_is_not_permitted(
    cards,
):
    user, card, rain_card = await cards.funded_card("10")
    unknown = await cards.authorise("no-such-card", 100)
    assert unknown.status_code == 402 and unknown.json()["reason"] == "unknown_card"
    assert unknown.json()["rejectionCode"] == "NOT_PERMITTED"

    await cards.app.execute(
        "UPDATE merchants SET status = 'suspended' WHERE id = :m", m=cards.merchant.merchant_id
    )
    suspended = await cards.authorise(rain_card, 100)
    assert suspended.status_code == 402 and suspended.json()["reason"] == "merchant_suspended"
    await cards.app.execute(
        "UPDATE merchants SET status = 'active' WHERE id = :m", m=cards.merchant.merchant_id
    )

    # Rain tells us the card was canceled (its own webhook): from then on, nothing passes.
    assert (
        await cards.send(*cards.rain.card_updated(rain_card, status="canceled"))
    ).status_code == 200

    async def canceled():
        got = await cards.client.get(f"/api/v1/cards/{card['id']}", headers=cards.headers())
        return got.json()["status"] == "canceled"

    await eventually(canceled, what="canceled")
    answer = await cards.authorise(rain_card, 100)
    assert answer.status_code == 402 and answer.json()["reason"] == "card_canceled"
    assert await cards.balance(user["id"]) == {"available": "10", "held": "0", "spent": "0"}
    refused = await cards.client.patch(
        f"/api/v1/cards/{card['id']}", json={"status": "active"}, headers=cards.headers()
    )
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "card_canceled"


async def test_an_unfunded_card_user_is_declined_and_amounts_of_zero_or_less_hold_nothing(cards):
    user = await cards.approved_user()
    card = await cards.card(user["id"])
    rain_card = await cards.rain_id_of("cards", card["id"])
    unfunded = await cards.authorise(rain_card, 100)
    assert unfunded.status_code == 402 and unfunded.json()["reason"] == "card_user_not_funded"
    assert (await cards.fund(user["id"], "1")).status_code == 201
    for amount in (0, -500):
        answer = await cards.authorise(rain_card, amount)
        assert answer.status_code == 200, answer.text
    assert await cards.balance(user["id"]) == {"available": "1", "held": "0", "spent": "0"}


@pytest.mark.parametrize(
    "spend",
    [
        {"amount": "1250"},
        {"amount": 12.5},
        {"amount": True},
        {"amount": 10**13},
        {"amount": None},
        {"currency": "eur"},
        {"cardId": 12345},
    ],
)
async def test_an_authorisation_in_the_wrong_form_is_stored_and_declined_never_a_500(cards, spend):
    user, _, rain_card = await cards.funded_card("10")
    raw, headers = cards.rain.transaction("requested", rain_card, 100, **spend)
    answer = await cards.send(raw, headers)
    assert answer.status_code == 402, answer.text
    assert answer.json()["rejectionCode"] == "UNKNOWN"
    assert await cards.balance(user["id"]) == {"available": "10", "held": "0", "spent": "0"}
    (stored,) = await rows(cards.app.database, "event_type = 'transaction.requested'")
    assert bytes(stored["body"]) == raw


async def test_a_body_without_spend_and_text_rain_would_not_send_are_declined_or_decided(cards):
    user, _, rain_card = await cards.funded_card("10")
    raw, headers = cards.rain.webhook("transaction", "requested", {"id": "x", "type": "spend"})
    answer = await cards.send(raw, headers)
    assert answer.status_code == 402 and answer.json()["rejectionCode"] == "UNKNOWN"
    raw, headers = cards.rain.transaction(
        "requested", rain_card, 100, merchantName="Caf\u00e9\u0000", localCurrency=7
    )
    answer = await cards.send(raw, headers)
    assert answer.status_code == 200, answer.text
    assert await cards.balance(user["id"]) == {"available": "9", "held": "1", "spent": "0"}


async def _send_event(cards, action, rain_card, amount, tx, **spend):
    raw, headers = cards.rain.transaction(action, rain_card, amount, transaction_id=tx, **spend)
    answer = await cards.send(raw, headers)
    assert answer.status_code == 200, answer.text
    return answer.json()["id"]


async def test_reversed_releases_the_hold_a_partial_completion_posts_less_and_more_is_charged(
    cards,
):
    user, card, rain_card = await cards.funded_card("20")
    for tx, cents in (("tx-r", 300), ("tx-p", 500), ("tx-o", 200)):
        assert (await cards.authorise(rain_card, cents, transaction_id=tx)).status_code == 200
    assert await cards.balance(user["id"]) == {"available": "10", "held": "10", "spent": "0"}

    await _send_event(cards, "updated", rain_card, 300, "tx-r", status="reversed")
    await _send_event(
        cards, "completed", rain_card, 400, "tx-p", status="completed", authorizedAmount=500
    )
    await _send_event(
        cards, "completed", rain_card, 250, "tx-o", status="completed", authorizedAmount=200
    )

    async def settled():
        statuses = sorted(t["status"] for t in await cards.transactions(card["id"]))
        return statuses == ["completed", "completed", "reversed"]

    await eventually(settled, what="settled")
    # 20 − (4 + 2.5) spent; nothing held.
    assert await cards.balance(user["id"]) == {"available": "13.5", "held": "0", "spent": "6.5"}
    await cards.ledger_holds()


async def test_a_completion_replayed_or_resent_under_another_event_id_changes_nothing(cards):
    user, card, rain_card = await cards.funded_card("10")
    assert (await cards.authorise(rain_card, 100, transaction_id="tx-1")).status_code == 200
    first = await _send_event(cards, "completed", rain_card, 100, "tx-1", status="completed")
    await eventually(lambda: cards.transaction_status(card["id"], "completed"), what="completed")
    await _send_event(cards, "completed", rain_card, 100, "tx-1", status="completed")
    # A replay of the first (as the backoffice does it): handled again, nothing moves twice.
    await cards.app.execute(
        "UPDATE provider_webhooks SET status = 'pending', next_attempt_at = now(), attempts = 0,"
        " handled_at = NULL WHERE id = :i",
        i=first,
    )
    await eventually(
        lambda: rows(cards.app.database, "id = :i AND status = 'handled'", i=first), what="handled"
    )
    await eventually(lambda: _none_pending(cards), what="nothing pending")
    assert await cards.balance(user["id"]) == {"available": "9", "held": "0", "spent": "1"}
    assert (
        await cards.app.scalar(
            "SELECT count(*) FROM ledger_transfers WHERE source_type = 'card_authorisation'"
        )
        == 2
    )  # the hold and its post


async def _none_pending(cards) -> bool:
    return not await rows(cards.app.database, "status = 'pending'")


async def test_a_refund_credits_the_card_user_and_a_stand_in_spend_is_charged(cards):
    user, card, rain_card = await cards.funded_card("10")
    await _send_event(cards, "completed", rain_card, 300, "tx-stand-in", status="completed")
    await _send_event(cards, "completed", rain_card, -100, "tx-refund", status="completed")

    async def both():
        return len(await cards.transaction_status(card["id"], "completed") or []) == 2

    await eventually(both, what="both completed")
    assert await cards.balance(user["id"]) == {"available": "8", "held": "0", "spent": "2"}
    kinds = await cards.app.rows(
        "SELECT code, type, overdrew FROM ledger_transfers WHERE source_type = 'card_authorisation'"
        " ORDER BY id"
    )
    assert sorted(tuple(k) for k in kinds) == [
        ("card_authorisation", "posted", False),
        ("card_refund", "posted", False),
    ]


async def test_a_transaction_rain_settles_although_it_was_declined_is_charged_once(cards):
    user, card, rain_card = await cards.funded_card("5")
    declined = await cards.authorise(rain_card, 600, transaction_id="tx-d")
    assert declined.status_code == 402
    await _send_event(cards, "completed", rain_card, 600, "tx-d", status="completed")
    await eventually(lambda: cards.transaction_status(card["id"], "completed"), what="completed")
    await _send_event(cards, "completed", rain_card, 600, "tx-d", status="completed")
    await eventually(lambda: _none_pending(cards), what="nothing pending")
    # Rain paid 6 out of a balance of 5: charged anyway, the card user 1 short (a deficit).
    assert await cards.balance(user["id"]) == {"available": "0", "held": "0", "spent": "6"}
    assert (
        await cards.app.scalar(
            "SELECT count(*) FROM ledger_transfers WHERE source_type = 'card_authorisation'"
            " AND overdrew"
        )
        == 1
    )
    await cards.ledger_holds()


async def test_an_authorisation_naming_another_user_than_the_cards_is_not_permitted(cards):
    user, _, rain_card = await cards.funded_card("5")
    answer = await cards.authorise(rain_card, 100, userId="someone-else")
    assert answer.status_code == 402 and answer.json()["reason"] == "unknown_card"
    assert await cards.balance(user["id"]) == {"available": "5", "held": "0", "spent": "0"}


async def test_with_the_database_unreachable_an_authorisation_is_declined_not_a_500(
    cards, database_url
):
    import asyncpg

    from nespay.db import plain_dsn
    from tests.fixtures.database import SERVER_URL

    user, _, rain_card = await cards.funded_card("5")
    name = plain_dsn(database_url).rsplit("/", 1)[1]
    admin = await asyncpg.connect(SERVER_URL)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )

        async def gone() -> bool:  # a terminated backend takes a moment to go
            return not await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", name
            )

        await eventually(gone, what="the database's connections closed")
        answer = await cards.authorise(rain_card, 100)
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
    assert answer.status_code == 503, answer.text
    assert answer.json()["rejectionCode"] == "UNKNOWN"
    assert answer.json()["reason"] == "unavailable"
    conn = await asyncpg.connect(plain_dsn(database_url))
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM provider_webhooks WHERE event_type = 'transaction.requested'"
        )
        held = await conn.fetchval(
            "SELECT debits_pending FROM ledger_accounts WHERE id LIKE $1",
            f"c:{user['id']}:available:%",
        )
    finally:
        await conn.close()
    assert stored == 0 and held == 0
