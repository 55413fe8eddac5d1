"""No card number, CVC or PIN is ever stored or logged: the fake Rain puts its test card's
number and CVC in every card answer and `card.updated` webhook (and a webhook carries one in
a free-text field); after a whole card program, neither is anywhere in a dump of the
database (text or bytea) nor in any log line the processes wrote."""

from __future__ import annotations

import logging

import pytest

from nespay.cards.redaction import REDACTED, scrub
from nespay.logging import configure_logging
from tests.callbacks.delivery_rig import eventually
from tests.fixtures.database import pg_dump
from tests.fixtures.fake_rain import TEST_CVC, TEST_PAN
from tests.inbox.rig import rows

pytestmark = pytest.mark.own_database
SECRETS = (TEST_PAN, '"cvc"', "encryptedPan", f"{TEST_PAN[:4]} {TEST_PAN[4:8]}")


def _absent(text: str, what: str) -> None:
    lowered = text.lower()
    for secret in SECRETS:
        assert secret.lower() not in lowered, f"{secret!r} found in {what}"
        assert secret.encode().hex() not in lowered, f"{secret!r} (as bytea) found in {what}"


async def test_no_card_number_or_cvc_reaches_the_database_or_the_logs(
    cards, fake_rain, database_url, card_settings, caplog
):
    configure_logging(card_settings.model_copy(update={"log_level": "debug"}), "webhook")
    with caplog.at_level(logging.DEBUG):
        user, card, rain_card = await cards.funded_card("20")
        created = await cards.client.get(f"/api/v1/cards/{card['id']}", headers=cards.headers())
        locked = await cards.client.patch(
            f"/api/v1/cards/{card['id']}", json={"status": "locked"}, headers=cards.headers()
        )
        for answer in (created, locked):
            _absent(answer.text, "an answer")
        assert (
            await cards.send(*fake_rain.card_updated(rain_card, status="active"))
        ).status_code == 200

        async def active():
            got = await cards.client.get(f"/api/v1/cards/{card['id']}", headers=cards.headers())
            return got.json()["status"] == "active"

        await eventually(active, what="card active again")
        raw, headers = fake_rain.transaction(
            "requested", rain_card, 100, merchantName=f"PAN {TEST_PAN} CVC {TEST_CVC}"
        )
        assert (await cards.send(raw, headers)).status_code == 200
        raw, headers = fake_rain.webhook(
            "card", "notification", {"cardId": rain_card, "pin": "1234", "cardNumber": TEST_PAN}
        )
        assert (await cards.send(raw, headers)).status_code == 200
        await eventually(lambda: _all_done(cards), what="every webhook handled")
    _absent(await pg_dump(database_url, "--data-only"), "the database dump")
    lines = "\n".join(
        f"{record.getMessage()} {getattr(record, 'msg', '')}" for record in caplog.records
    )
    assert "card_authorisation_decided" in lines  # the capture saw the processes' lines
    _absent(lines, "the logs")
    stored = await rows(cards.app.database, "event_type = 'card.updated'")
    assert stored and all(TEST_PAN.encode() not in bytes(r["body"]) for r in stored)


async def _all_done(cards) -> bool:
    return not await rows(cards.app.database, "status = 'pending'")


def test_scrub_drops_secret_fields_anywhere_and_card_numbers_in_any_text():
    answer = {
        "id": "c1",
        "last4": "1142",
        "PAN": TEST_PAN,
        "nested": [{"encrypted_pan": {"iv": "x", "data": "y"}, "cvv2": "1"}],
        "note": f"number {TEST_PAN[:4]} {TEST_PAN[4:8]} {TEST_PAN[8:12]} {TEST_PAN[12:]}",
        "uuid": "12345678-1234-1234-1234-123456789012",
        "amount": 4111111145551142,
    }
    assert scrub(answer) == {
        "id": "c1",
        "last4": "1142",
        "nested": [{}],
        "note": REDACTED,
        "uuid": "12345678-1234-1234-1234-123456789012",
        "amount": 4111111145551142,
    }
