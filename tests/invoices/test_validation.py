"""Bad invoice requests: each a 4xx in the one error shape, and nothing stored."""

import pytest

from tests.invoices.conftest import error_code

NET = "<network>"  # replaced by the test's registered network


def fill(value, network):
    if value == NET:
        return network
    if isinstance(value, dict):
        return {k: fill(v, network) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, network) for v in value]
    return value


def usdt(**changes):
    return {"amount": "10", "currency": "USDT", "network": NET, **changes}


CASES = {
    # amounts
    "too-many-decimals-for-usdt": (usdt(amount="1.1234567"), "amount_precision", None),
    "too-many-decimals-for-usd": (usdt(amount="10.123", currency="USD"), "amount_precision", None),
    "too-many-decimals-for-idr": (usdt(amount="1.001", currency="IDR"), "amount_precision", None),
    "too-many-decimals-for-jpy": (usdt(amount="100.5", currency="JPY"), "amount_precision", None),
    "negative": (usdt(amount="-1"), "validation_error", "amount"),
    "zero": (usdt(amount="0"), "validation_error", "amount"),
    "zero-with-decimals": (usdt(amount="0.000"), "validation_error", "amount"),
    "letters": (usdt(amount="abc"), "validation_error", "amount"),
    "exponent": (usdt(amount="1e5"), "validation_error", "amount"),
    "exponent-upper": (usdt(amount="1E2"), "validation_error", "amount"),
    "nan": (usdt(amount="NaN"), "validation_error", "amount"),
    "infinity": (usdt(amount="Infinity"), "validation_error", "amount"),
    "absurdly-large": (usdt(amount="1" + "0" * 30), "validation_error", "amount"),
    "underscores": (usdt(amount="1_000"), "validation_error", "amount"),
    "non-ascii-digits": (usdt(amount="١٠"), "validation_error", "amount"),
    "whitespace": (usdt(amount=" 10 "), "validation_error", "amount"),
    "plus-sign": (usdt(amount="+10"), "validation_error", "amount"),
    "empty": (usdt(amount=""), "validation_error", "amount"),
    "json-number": (usdt(amount=10), "validation_error", "amount"),
    "json-float": (usdt(amount=10.5), "validation_error", "amount"),
    "missing-amount": ({"currency": "USDT", "network": NET}, "validation_error", "amount"),
    # currencies and networks
    "unknown-currency": (usdt(currency="DOGE"), "unknown_currency", None),
    "currency-not-a-code": (usdt(currency="US$"), "validation_error", "currency"),
    "missing-currency": ({"amount": "10", "network": NET}, "validation_error", "currency"),
    "unknown-network": (usdt(network="no-such-network"), "unknown_network", None),
    "unknown-option-network": (
        {"amount": "10", "currency": "USDT",
         "payment_options": [{"network": "no-such-network", "currency": "USDT"}]},
        "unknown_network",
        None,
    ),
    "unknown-option-currency": (
        {"amount": "10", "currency": "USDT",
         "payment_options": [{"network": NET, "currency": "DOGE"}]},
        "unknown_currency",
        None,
    ),
    "one-bad-option-among-good": (
        {"amount": "10", "currency": "USDT",
         "payment_options": [{"network": NET, "currency": "USDT"},
                             {"network": "no-such-network", "currency": "USDT"}]},
        "unknown_network",
        None,
    ),
    "no-options": (usdt(payment_options=[]), "validation_error", "payment_options"),
    "option-extra-field": (
        usdt(payment_options=[{"network": NET, "currency": "USDT", "address": "0x1"}]),
        "validation_error",
        "payment_options.0.address",
    ),
    # the rest of the body
    "metadata-too-large": (usdt(metadata={"blob": "x" * 9000}), "metadata_too_large", None),
    "metadata-not-an-object": (usdt(metadata=["a"]), "validation_error", "metadata"),
    "extra-field": (usdt(merchant_id="mer_x"), "validation_error", "merchant_id"),
    "redirect-javascript": (
        usdt(redirect_url="javascript:alert(1)"), "validation_error", "redirect_url"
    ),
    "redirect-ftp": (usdt(redirect_url="ftp://shop.example/"), "validation_error", "redirect_url"),
    "redirect-space": (
        usdt(redirect_url="https://shop.example/a b"), "validation_error", "redirect_url"
    ),
    "redirect-not-a-url": (usdt(redirect_url="thanks"), "validation_error", "redirect_url"),
    "expires-in-too-short": (usdt(expires_in=59), "validation_error", "expires_in"),
    "expires-in-too-long": (usdt(expires_in=31 * 86400), "validation_error", "expires_in"),
    "order-id-too-long": (usdt(order_id="o" * 201), "validation_error", "order_id"),
}  # fmt: skip


@pytest.mark.parametrize(("body", "code", "field"), CASES.values(), ids=CASES.keys())
async def test_a_bad_request_is_refused_and_stores_nothing(
    app, merchant, network, body, code, field
):
    before = await app.invoice_count(merchant)
    response = await app.create(merchant, fill(body, network))
    assert response.status_code == 422, response.text
    assert error_code(response) == code
    if field is not None:
        assert field in {f["field"] for f in response.json()["error"]["fields"]}
    assert await app.invoice_count(merchant) == before
    assert (
        await app.scalar(
            "SELECT count(*) FROM deposit_addresses WHERE merchant_id = :m", m=merchant.merchant_id
        )
        == 0
    )
    assert (
        await app.scalar(
            "SELECT count(*) FROM events WHERE merchant_id = :m AND type LIKE 'invoice.%'",
            m=merchant.merchant_id,
        )
        == 0
    )


async def test_metadata_at_the_limit_is_accepted(app, merchant, network):
    limit = app.runtime.settings.invoice_metadata_max_bytes
    metadata = {"blob": "x" * (limit - len('{"blob":""}'))}
    response = await app.create(merchant, fill(usdt(metadata=metadata), network))
    assert response.status_code == 201, response.text
    too_big = {"blob": metadata["blob"] + "x"}
    response = await app.create(merchant, fill(usdt(metadata=too_big), network))
    assert response.status_code == 422 and error_code(response) == "metadata_too_large"


async def test_a_price_finer_than_any_stored_price_is_refused(app, merchant, network):
    """A price in a crypto currency none of the options pays in still has at most 18
    decimals (what a stored price holds): finer is refused, never silently rounded."""
    body = {
        "amount": "0.0000000000000000001",
        "currency": "ETH",
        "payment_options": [{"network": network, "currency": "USDT"}],
    }
    response = await app.create(merchant, body)
    assert response.status_code == 422, response.text
    assert error_code(response) == "amount_precision"
    assert await app.invoice_count(merchant) == 0


async def test_the_largest_amount_is_accepted(app, merchant, network):
    response = await app.create(merchant, fill(usdt(amount="999999999999999.999999"), network))
    assert response.status_code == 201, response.text
    assert response.json()["amount_due"] == "999999999999999.999999"
    assert response.json()["payment_options"][0]["amount"] == "999999999999999.999999"


async def test_an_invalid_json_body_is_a_422(app, merchant):
    response = await app.client.post(
        "/api/v1/invoices",
        content=b"{not json",
        headers={**merchant.headers, "content-type": "application/json"},
    )
    assert response.status_code == 422 and error_code(response) == "validation_error"


async def test_without_a_key_the_create_is_a_401_and_without_the_scope_a_403(
    app, database, network
):
    from nespay.auth.scopes import INVOICES_READ
    from tests.fixtures.factories import merchant_with_key

    anonymous = await app.client.post("/api/v1/invoices", json=fill(usdt(), network))
    assert anonymous.status_code == 401 and error_code(anonymous) == "authentication_required"
    reader = await merchant_with_key(database, scopes={INVOICES_READ})
    forbidden = await app.create(reader, fill(usdt(), network))
    assert forbidden.status_code == 403 and error_code(forbidden) == "scope_missing"
    assert await app.invoice_count(reader) == 0


async def _refusal(app, merchant, body):
    app.runtime.catalog.invalidate()
    response = await app.create(merchant, body)
    assert response.status_code == 422, response.text
    return error_code(response), response.json()["error"]["message"]


async def test_a_disabled_network_is_named_with_the_command_that_enables_it(app, merchant, network):
    await app.execute("UPDATE networks SET enabled = false WHERE code = :n", n=network)
    for body in (
        {"amount": "10", "currency": "USDT", "network": network},
        {"amount": "10", "currency": "USDT",
         "payment_options": [{"network": network, "currency": "USDT"}]},
        {"amount": "10", "currency": "USD", "network": network},
    ):  # fmt: skip
        assert await _refusal(app, merchant, body) == (
            "unknown_network",
            f"USDT on {network} is disabled: an operator enables it with "
            f"`nespay networks enable {network}`.",
        )


async def test_a_disabled_currency_is_named_with_the_command_that_enables_it(
    app, merchant, network
):
    await app.execute(
        "UPDATE currencies SET enabled = false WHERE network_code = :n AND code = 'USDT'",
        n=network,
    )
    body = {"amount": "10", "currency": "USDT", "network": network}
    assert await _refusal(app, merchant, body) == (
        "unknown_currency",
        f"USDT on {network} is disabled: an operator enables it with "
        f"`nespay currencies enable --network {network} --code USDT`.",
    )
    await app.execute("UPDATE networks SET enabled = false WHERE code = :n", n=network)
    code, message = await _refusal(app, merchant, body)
    assert code == "unknown_network"
    assert message.endswith(
        f"`nespay networks enable {network}` and "
        f"`nespay currencies enable --network {network} --code USDT`."
    )


async def test_a_currency_disabled_everywhere_and_an_unknown_one_say_which(app, merchant, network):
    only_here = f"T{network[-6:].upper()}"
    await app.execute(
        "INSERT INTO currencies (id, network_code, code, name, decimals, enabled)"
        " VALUES (:i, :n, :c, :c, 6, false)",
        i=f"cur_{only_here.lower()}",
        n=network,
        c=only_here,
    )
    assert await _refusal(app, merchant, {"amount": "1", "currency": only_here}) == (
        "unknown_currency",
        f"{only_here} on {network} is disabled: an operator enables it with "
        f"`nespay currencies enable --network {network} --code {only_here}`.",
    )
    assert await _refusal(app, merchant, {"amount": "1", "currency": "DOGE"}) == (
        "unknown_currency",
        "DOGE is not a currency Nespay knows or a fiat code.",
    )
    code, message = await _refusal(app, merchant, {"amount": "1", "currency": "USDT",
                                                   "network": "no-such-network"})  # fmt: skip
    assert (code, message) == ("unknown_network", "There is no network 'no-such-network'.")
