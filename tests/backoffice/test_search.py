"""Backoffice search over every merchant's invoices, payments and deposit addresses: fragments
of ids, order ids, addresses and tx hashes, case-insensitive, with LIKE's wildcards taken
literally, filters, cursor pages; and search strings that cannot be searched safely refused
in the one error shape."""

import pytest
from tests.backoffice.conftest import BO, add_payment, fragment
from tests.invoices.conftest import error_code

SEARCHES = ("invoices", "payments", "addresses", "merchants")


async def search(app, tokens, what, group="support", **params):
    response = await app.client.get(f"{BO}/{what}", headers=tokens[group], params=params)
    assert response.status_code == 200, response.text
    return response.json()


def ids(page):
    return [row["id"] for row in page["data"]]


async def test_invoices_are_found_by_fragments_of_id_order_id_address_and_payment(
    admin_app, merchant, other_merchant, tokens
):
    network = await admin_app.network()
    token = fragment()
    mine = await admin_app.invoice(merchant, network, order_id=f"order-{token}-A")
    theirs = await admin_app.invoice(other_merchant, network, order_id=f"ORDER-{token.upper()}-B")
    paid = await admin_app.invoice(merchant, network)
    sender = "0x" + "ab" * 4 + token[1:] + "cd" * 4
    payment = await add_payment(admin_app, paid, from_address=sender)
    tx = (await admin_app.rows("SELECT tx_hash FROM payments WHERE id = :p", p=payment))[0][0]

    by_order = await search(admin_app, tokens, "invoices", q=token)
    assert ids(by_order) == [theirs["id"], mine["id"]]  # newest first
    assert {row["merchant_id"] for row in by_order["data"]} == {
        merchant.merchant_id,
        other_merchant.merchant_id,
    }
    assert by_order["has_more"] is False
    # a fragment of the id, in another case
    assert ids(await search(admin_app, tokens, "invoices", q=mine["id"][-12:].upper())) == [
        mine["id"]
    ]
    address = paid["payment_options"][0]["address"]
    assert ids(await search(admin_app, tokens, "invoices", q=address[5:19].lower())) == [paid["id"]]
    assert ids(await search(admin_app, tokens, "invoices", q=tx[10:40])) == [paid["id"]]
    assert ids(await search(admin_app, tokens, "invoices", q=token[1:])) == [
        paid["id"],
        theirs["id"],
        mine["id"],
    ]
    narrowed = await search(
        admin_app, tokens, "invoices", q=token[1:], merchant_id=merchant.merchant_id
    )
    assert ids(narrowed) == [paid["id"], mine["id"]]
    body = narrowed["data"][0]
    assert body["payments"][0]["from_address"] == sender and body["marked_at"] is None


async def test_invoice_search_pages_with_the_cursor_and_filters_by_status(
    admin_app, merchant, tokens
):
    network = await admin_app.network()
    token = fragment()
    made = [await admin_app.invoice(merchant, network, order_id=f"{token}-{n}") for n in range(5)]
    newest_first = [invoice["id"] for invoice in reversed(made)]
    first = await search(admin_app, tokens, "invoices", q=token, limit=2)
    assert ids(first) == newest_first[:2] and first["has_more"] is True
    second = await search(
        admin_app, tokens, "invoices", q=token, limit=2, starting_after=ids(first)[-1]
    )
    assert ids(second) == newest_first[2:4] and second["has_more"] is True
    last = await search(
        admin_app, tokens, "invoices", q=token, limit=2, starting_after=ids(second)[-1]
    )
    assert ids(last) == newest_first[4:] and last["has_more"] is False

    cancelled = await admin_app.client.post(
        f"/api/v1/invoices/{made[1]['id']}/cancel", headers=merchant.headers
    )
    assert cancelled.status_code == 200
    only = await search(admin_app, tokens, "invoices", q=token, status="cancelled")
    assert ids(only) == [made[1]["id"]]
    # without `q`: every invoice, newest first, filters still apply
    listed = await search(admin_app, tokens, "invoices", merchant_id=merchant.merchant_id, limit=5)
    assert ids(listed) == newest_first


async def test_like_wildcards_quotes_and_emoji_in_q_are_searched_literally(
    admin_app, merchant, tokens
):
    network = await admin_app.network()
    token = fragment()
    odd = await admin_app.invoice(merchant, network, order_id=f"{token}%_\\'\"💳 x")
    plain = await admin_app.invoice(merchant, network, order_id=f"{token}zz\\y")
    assert ids(await search(admin_app, tokens, "invoices", q=f"{token}%")) == [odd["id"]]
    assert ids(await search(admin_app, tokens, "invoices", q=f"{token}_")) == []
    assert ids(await search(admin_app, tokens, "invoices", q=f"{token}%_")) == [odd["id"]]
    assert ids(await search(admin_app, tokens, "invoices", q=f"{token}%_\\'\"💳")) == [odd["id"]]
    assert ids(await search(admin_app, tokens, "invoices", q=f"{token}zz\\")) == [plain["id"]]
    assert ids(await search(admin_app, tokens, "invoices", q=f"  {token}zz  ")) == [plain["id"]]
    # a blank q is no search at all: the newest invoices
    everything = await search(admin_app, tokens, "invoices", q="   ", limit=1)
    assert ids(everything) == [plain["id"]] and everything["has_more"] is True


BAD_QUERIES = [
    ("ab", "search_too_short"),
    ("%%%", "search_too_short"),
    ("___", "search_too_short"),
    ("\\\\\\", "search_too_short"),
    ("a_b_c", "search_too_short"),
    ("💳💳💳", "search_too_short"),
    ("''';--", "search_too_short"),
    ("abc\tdef", "search_invalid"),
    ("abc\ndef", "search_invalid"),
    ("abc\x7f", "search_invalid"),
    ("x" * 201, "validation_error"),
    ("x" * 10_000, "validation_error"),
    ("abc\x00def", "validation_error"),
]


@pytest.mark.parametrize("what", SEARCHES)
@pytest.mark.parametrize(("q", "code"), BAD_QUERIES, ids=[c + str(len(q)) for q, c in BAD_QUERIES])
async def test_a_search_string_that_cannot_be_searched_safely_is_refused(
    admin_app, tokens, what, q, code
):
    response = await admin_app.client.get(f"{BO}/{what}", headers=tokens["admin"], params={"q": q})
    assert response.status_code == 422, response.text
    assert error_code(response) == code
    if code == "validation_error":
        assert response.json()["error"]["fields"][0]["field"].endswith("q")


async def test_payments_are_found_by_id_tx_hash_addresses_or_invoice(admin_app, merchant, tokens):
    network = await admin_app.network()
    invoice = await admin_app.invoice(merchant, network)
    other = await admin_app.invoice(merchant, network)
    token = fragment()
    first = await add_payment(admin_app, invoice, tx_hash="0x" + token + "e" * 51)
    second = await add_payment(
        admin_app,
        invoice,
        from_address="0x" + token[1:] + "1" * 27,
        status="pending",
        confirmed_at="NULL",
    )
    elsewhere = await add_payment(admin_app, other)

    assert ids(await search(admin_app, tokens, "payments", q=token[1:])) == [second, first]
    assert ids(await search(admin_app, tokens, "payments", q=token.upper())) == [first]
    assert ids(await search(admin_app, tokens, "payments", q=invoice["id"])) == [second, first]
    assert ids(await search(admin_app, tokens, "payments", q=elsewhere[-10:])) == [elsewhere]
    address = invoice["payment_options"][0]["address"]
    assert ids(await search(admin_app, tokens, "payments", q=address[6:20])) == [second, first]
    pending = await search(admin_app, tokens, "payments", q=invoice["id"], status="pending")
    (row,) = pending["data"]
    assert row["id"] == second and row["amount"] == "1" and row["currency"] == "USDT"
    assert row["invoice_id"] == invoice["id"] and row["merchant_id"] == merchant.merchant_id
    paged = await search(admin_app, tokens, "payments", q=invoice["id"], limit=1)
    assert ids(paged) == [second] and paged["has_more"] is True
    rest = await search(
        admin_app, tokens, "payments", q=invoice["id"], limit=1, starting_after=second
    )
    assert ids(rest) == [first] and rest["has_more"] is False


async def test_deposit_addresses_are_found_by_fragment_or_invoice(admin_app, merchant, tokens):
    network = await admin_app.network()
    invoice = await admin_app.invoice(merchant, network)
    address = invoice["payment_options"][0]["address"]
    found = await search(admin_app, tokens, "addresses", q=address[-14:].swapcase())
    (row,) = found["data"]
    assert row["address"] == address and row["invoice_id"] == invoice["id"]
    assert row["merchant_id"] == merchant.merchant_id and row["chain_family"] == "evm"
    by_invoice = await search(admin_app, tokens, "addresses", q=invoice["id"])
    assert ids(by_invoice) == [row["id"]]
    assert ids(await search(admin_app, tokens, "addresses", q=row["id"])) == [row["id"]]
    tron = await search(admin_app, tokens, "addresses", q=invoice["id"], chain_family="tron")
    assert tron == {"data": [], "has_more": False}


async def test_one_invoice_is_read_with_its_merchant_and_a_missing_one_is_404(
    admin_app, merchant, tokens
):
    network = await admin_app.network()
    invoice = await admin_app.invoice(merchant, network)
    read = await admin_app.client.get(f"{BO}/invoices/{invoice['id']}", headers=tokens["finance"])
    assert read.status_code == 200, read.text
    assert read.json()["merchant_id"] == merchant.merchant_id
    assert read.json()["payment_options"] == invoice["payment_options"]
    missing = await admin_app.client.get(f"{BO}/invoices/inv_nope", headers=tokens["finance"])
    assert missing.status_code == 404 and error_code(missing) == "invoice_not_found"


BAD_PARAMETERS = [
    {"limit": "0"},
    {"limit": "101"},
    {"limit": "-1"},
    {"limit": "ten"},
    {"starting_after": "x" * 65},
    {"starting_after": "inv_\x00"},
    {"merchant_id": "m" * 41},
    {"status": "everything"},
]


@pytest.mark.parametrize("params", BAD_PARAMETERS, ids=lambda p: next(iter(p)))
async def test_bad_page_and_filter_parameters_are_refused(admin_app, tokens, params):
    refused = await admin_app.client.get(f"{BO}/invoices", headers=tokens["admin"], params=params)
    assert refused.status_code == 422 and error_code(refused) == "validation_error"


async def test_a_cursor_of_any_text_is_only_a_bound(admin_app, merchant, tokens):
    network = await admin_app.network()
    token = fragment()
    invoice = await admin_app.invoice(merchant, network, order_id=token)
    for cursor in ("'; DROP TABLE invoices; --", "%", "\\", "💳"):
        page = await search(admin_app, tokens, "invoices", q=token, starting_after=cursor)
        assert page["has_more"] is False  # every id sorts below or above it, nothing breaks
    assert ids(await search(admin_app, tokens, "invoices", q=token)) == [invoice["id"]]
