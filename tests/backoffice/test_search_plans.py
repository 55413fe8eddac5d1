"""Every searched column's condition is one its trigram index can serve: on 20,000 rows per
table, with sequential and plain index scans priced out, each search's plan names the
trigram index of every column it searches (on a million rows the planner picks them by
itself for a rare fragment: bench/bench_search.py). A database of its own: ANALYZE's row
counts outlive the rolled-back rows."""

import pytest
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect

from nespay.backoffice import repository

pytestmark = pytest.mark.own_database
ROWS = 20_000
FILL = [
    "SET LOCAL session_replication_role = replica",  # rows without their parents
    "INSERT INTO invoices (id, merchant_id, price_amount, price_currency, order_id, expires_at)"
    " SELECT 'inv_' || md5(g::text), 'mer_x', 1, 'USDT', 'ord-' || md5((g + 1)::text), now()"
    " FROM generate_series(1, :rows) g",
    "INSERT INTO deposit_addresses (id, chain_family, address, provider, invoice_id, merchant_id)"
    " SELECT 'dep_' || md5(g::text), 'evm', '0x' || md5((g + 2)::text), 'hd',"
    " 'inv_' || md5(g::text), 'mer_x' FROM generate_series(1, :rows) g",
    "INSERT INTO payments (id, invoice_id, option_id, merchant_id, network_code, currency_id,"
    " tx_hash, log_index, block_number, block_hash, from_address, to_address, amount)"
    " SELECT 'pay_' || md5(g::text), 'inv_' || md5(g::text), 'opt_x', 'mer_x', 'local', 'cur_x',"
    " '0x' || md5((g + 3)::text) || md5((g + 4)::text), 0, g, '0xb', '0x' || md5((g + 5)::text),"
    " '0x' || md5((g + 2)::text), 1 FROM generate_series(1, :rows) g",
    "ANALYZE invoices, deposit_addresses, payments",
]
PAGE = {"limit": 21, "starting_after": None}
SEARCHES = {
    "invoices": (
        repository.invoices_query("a%b_c\\def", status=None, merchant_id=None, **PAGE),
        {"ix_invoices_id_trgm", "ix_invoices_order_id_trgm", "ix_deposit_addresses_address_trgm",
         "ix_payments_tx_hash_trgm", "ix_payments_from_address_trgm"},
    ),
    "payments": (
        repository.payments_query("abcdef", status=None, merchant_id=None, network=None, **PAGE),
        {"ix_payments_id_trgm", "ix_payments_tx_hash_trgm", "ix_payments_from_address_trgm",
         "ix_payments_to_address_trgm"},
    ),
    "addresses": (
        repository.addresses_query("abcdef", chain_family="evm", merchant_id=None, **PAGE),
        {"ix_deposit_addresses_address_trgm"},
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SEARCHES))
async def test_each_searched_column_is_served_by_its_trigram_index(session, name):
    query, indexes = SEARCHES[name]
    sql = str(
        query.compile(dialect=asyncpg_dialect.dialect(), compile_kwargs={"literal_binds": True})
    )
    for statement in FILL:
        await session.execute(text(statement), {"rows": ROWS} if ":rows" in statement else {})
    await session.execute(text("SET LOCAL enable_seqscan = off"))
    await session.execute(text("SET LOCAL enable_indexscan = off"))
    plan = "\n".join(row[0] for row in await session.execute(text(f"EXPLAIN {sql}")))
    used = {word for word in plan.replace("(", " ").split() if word.endswith("_trgm")}
    assert indexes <= used, plan
