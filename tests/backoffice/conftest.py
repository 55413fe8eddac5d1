"""The backoffice through the real api app, with admins signed in through moto's Cognito: one
user per admin group, one in no group, and a user-pool (merchant) token; invoices made through
the merchant API on a DB-only network, payments written as the scanner writes them."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator

import pytest
from tests.fixtures.app import unthrottled
from tests.fixtures.database import make_settings
from tests.invoices.conftest import Api, api_for, merchant, other_merchant  # noqa: F401

from nespay.kit.ids import new_id

BO = "/api/backoffice/v1"
GROUPS = ("admin", "finance", "support")


@pytest.fixture
async def admin_app(api_for, database_url, cognito) -> AsyncIterator[Api]:  # noqa: F811
    settings = unthrottled(make_settings(database_url, **cognito.setting_values()))
    async with api_for(settings) as value:
        yield value


@pytest.fixture(scope="module")
def tokens(cognito) -> dict[str, dict[str, str]]:
    """Headers per signed-in caller: each admin group, `none` (an admin-pool user in no
    group) and `merchant` (a user-pool token)."""
    found = {}
    for group in (*GROUPS, "none"):
        name = f"bo-{group}-{os.getpid()}-{secrets.token_hex(3)}@example.com"
        cognito.new_user("admin", name, () if group == "none" else (group,))
        found[group] = {"authorization": f"Bearer {cognito.tokens('admin', name)['IdToken']}"}
    found["merchant"] = {"authorization": f"Bearer {cognito.tokens('user')['IdToken']}"}
    return found


def fragment() -> str:
    """A token no other test's rows hold (the shared database keeps every test's rows)."""
    return "q" + secrets.token_hex(6)


async def add_payment(
    app: Api,
    invoice: dict,
    *,
    tx_hash: str | None = None,
    from_address: str | None = None,
    amount: int = 1_000_000,
    status: str = "confirmed",
    confirmed_at: str = "now()",
) -> str:
    """A payment to the invoice's first option, as the scanner records it (no ledger
    postings: these tests read, they do not settle)."""
    payment_id = new_id("pay")
    option = await app.rows(
        "SELECT o.id, o.currency_id, o.network_code, o.address, i.merchant_id"
        " FROM invoice_options o JOIN invoices i ON i.id = o.invoice_id"
        " WHERE o.invoice_id = :i ORDER BY o.id LIMIT 1",
        i=invoice["id"],
    )
    (option,) = option
    await app.execute(
        "INSERT INTO payments (id, invoice_id, option_id, merchant_id, network_code, currency_id,"
        " tx_hash, log_index, block_number, block_hash, from_address, to_address, amount, status,"
        " confirmations, confirmed_at) VALUES (:id, :inv, :opt, :m, :n, :c, :tx, 0, 7, '0xb7',"
        f" :sender, :to, :amount, :status, 3, {confirmed_at})",
        id=payment_id,
        inv=invoice["id"],
        opt=option.id,
        m=option.merchant_id,
        n=option.network_code,
        c=option.currency_id,
        tx=tx_hash or "0x" + secrets.token_hex(32),
        sender=from_address or "0x" + secrets.token_hex(20),
        to=option.address,
        amount=amount,
        status=status,
    )
    return payment_id
