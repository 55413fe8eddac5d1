"""The Intrajasa client against the fake: secure codes the fake accepts, retries on 5xx and
transport errors only (a fresh single-use token each time), refusals final, exact amounts,
and never the secret word or a token in a log line."""

from __future__ import annotations

from decimal import Decimal

import pytest

from nespay.integrations.intrajasa.client import (
    IntrajasaClient,
    IntrajasaError,
    IntrajasaRejected,
    parse_wire_amount,
    read_json,
    wire_amount,
)
from tests.fixtures.database import make_settings
from tests.fixtures.fake_intrajasa import SECRET_WORD, intrajasa_settings


@pytest.fixture
async def client(fake_intrajasa, database_url):
    settings = make_settings(database_url, **intrajasa_settings(fake_intrajasa.url))
    value = IntrajasaClient(settings, retry_delays=(0.01, 0.01))
    yield value
    await value.aclose()


async def test_a_va_is_made_and_its_status_read_with_secure_codes_the_fake_accepts(
    client, fake_intrajasa
):
    va = await client.generate_va("NPREF0001", "Toko", 2_500_000)
    assert va.amount == 2_500_000 and fake_intrajasa.vas["NPREF0001"]["totalAmount"] == "25000.00"
    unpaid = await client.status("NPREF0001", va.va_number, 2_500_000)
    assert unpaid.paid is False and unpaid.amount == 2_500_000
    fake_intrajasa.vas["NPREF0001"]["paid"] = True
    assert (await client.status("NPREF0001", va.va_number, 2_500_000)).paid is True
    # Each call had its own token, spent by it.
    assert len(fake_intrajasa.calls("gettoken")) == 3 and fake_intrajasa.tokens == {}
    again = await client.generate_va("NPREF0001", "Toko", 2_500_000)
    assert again.va_number == va.va_number


async def test_5xx_is_retried_with_a_fresh_token_and_a_refusal_is_not(
    client, fake_intrajasa, caplog
):
    fake_intrajasa.fail_next(502)
    va = await client.generate_va("NPREF0002", "Toko", 100)
    assert len(fake_intrajasa.calls("gettoken")) == 2
    fake_intrajasa.secret_word = "changed"
    with pytest.raises(IntrajasaRejected):
        await client.status("NPREF0002", va.va_number, 100)
    assert len(fake_intrajasa.calls("gettoken")) == 3  # not retried
    fake_intrajasa.fail_next(500, 503, 504)
    with pytest.raises(IntrajasaError) as down:
        await client.generate_va("NPREF0003", "Toko", 100)
    assert down.value.status_code == 503 and len(fake_intrajasa.calls("gettoken")) == 6
    issued = [t for t in fake_intrajasa.tokens]
    assert SECRET_WORD not in caplog.text
    assert not any(token in caplog.text for token in issued)


async def test_transport_errors_are_retried_then_503(database_url):
    settings = make_settings(database_url, **intrajasa_settings("http://127.0.0.1:9"))
    client = IntrajasaClient(settings, retry_delays=(0.01, 0.01))
    try:
        with pytest.raises(IntrajasaError) as down:
            await client.generate_va("NPREF0004", "Toko", 100)
    finally:
        await client.aclose()
    assert down.value.code == "intrajasa_unavailable" and "3 attempts" in down.value.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("25000.00", 2_500_000),
        ("25000", 2_500_000),
        ("0.5", 50),
        (Decimal("25000.00"), 2_500_000),
        (25000, 2_500_000),
        ("0.00", None),
        ("-1.00", None),
        ("1.001", None),
        ("1e3", None),
        (Decimal("1E+3"), None),
        (Decimal("NaN"), None),
        (True, None),
        (1.5, None),  # a float never reaches here (read_json), and is refused if it does
        ("", None),
        ("9" * 16, None),
    ],
)
def test_wire_amounts_are_read_exactly_or_refused(value, expected):
    assert parse_wire_amount(value) == expected


def test_amounts_are_sent_with_two_decimals_and_json_numbers_read_as_decimals():
    assert wire_amount(2_500_000) == "25000.00" and wire_amount(5) == "0.05"
    assert read_json(b'{"a": 25000.10}') == {"a": Decimal("25000.10")}
    with pytest.raises(ValueError, match="not a number"):
        read_json(b'{"a": NaN}')
