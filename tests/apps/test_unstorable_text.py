"""Text PostgreSQL cannot store (NUL, unpaired surrogates) is refused by every route of the
api app (merchant and backoffice) and the jobs app: 422 in the validation-error shape naming
the field, logged, nothing written. Before, each of these answered 500."""

import logging
import os

import pytest
from sqlalchemy import text

from nespay.apps import api, jobs
from tests.fixtures.app import app_client
from tests.fixtures.database import make_settings
from tests.fixtures.factories import merchant_with_key, register_network

TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
BO = "/api/backoffice/v1"


@pytest.fixture(scope="module")
def app_settings(cognito, shared_database_url):
    return make_settings(shared_database_url, log_level="info", **cognito.setting_values())


@pytest.fixture(scope="module")
async def client(app_settings):
    async with app_client(api.create_app, app_settings) as (_, client):
        yield client


@pytest.fixture(scope="module")
def admin(cognito):
    name = f"nul-admin-{os.getpid()}@example.com"
    cognito.new_user("admin", name, ("admin",))
    return {"authorization": f"Bearer {cognito.tokens('admin', name)['IdToken']}"}


@pytest.fixture(scope="module")
async def network(shared_database):
    return await register_network(shared_database, ["http://127.0.0.1:9"], TOKEN)


@pytest.fixture
async def merchant(database):
    return await merchant_with_key(database)


async def scalar(database, sql: str, **params):
    async with database.engine.connect() as conn:
        return await conn.scalar(text(sql), params)


def assert_refused(response, field: str) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["request_id"] == response.headers["x-request-id"]
    assert [f["field"] for f in error["fields"]] == [field], error
    assert error["fields"][0]["type"] == "string_unstorable"


def invoice_json(network: str, rest: str) -> bytes:
    """A raw body: the escapes must reach the server as written (httpx cannot encode a lone
    surrogate)."""
    return f'{{"amount":"10","currency":"USDT","network":"{network}",{rest}}}'.encode()


async def post_invoice(client, merchant, body: bytes):
    headers = {**merchant.headers, "content-type": "application/json"}
    return await client.post("/api/v1/invoices", content=body, headers=headers)


async def invoices_of(database, merchant) -> int:
    return await scalar(
        database, "SELECT count(*) FROM invoices WHERE merchant_id = :m", m=merchant.merchant_id
    )


@pytest.mark.parametrize(
    ("rest", "field"),
    [
        (r'"description":"a\u0000b"', "description"),
        (r'"metadata":{"note":"x\u0000"}', "metadata.note"),
        (r'"metadata":{"outer":{"k\u0000":"v"}}', r"metadata.outer.k\u0000"),
        (r'"metadata":{"list":["ok",{"deep":"\u0000"}]}', "metadata.list.1.deep"),
        (r'"description":"lone \ud800 surrogate"', "description"),
        (r'"metadata":{"low":"\uDC00"}', "metadata.low"),
        (r'"order_id":"o\u0000"', "order_id"),
    ],
    ids=[
        "description",
        "metadata",
        "nested-key",
        "in-a-list",
        "surrogate",
        "low-surrogate",
        "order_id",
    ],  # fmt: skip
)
async def test_invoice_body_with_unstorable_text_is_422_naming_the_field_and_writes_nothing(
    client, database, network, merchant, caplog, rest, field
):
    caplog.set_level(logging.INFO)
    response = await post_invoice(client, merchant, invoice_json(network, rest))
    assert_refused(response, field)
    assert await invoices_of(database, merchant) == 0
    assert "request_invalid" in caplog.text and field.split(".")[0] in caplog.text


async def test_storable_escapes_are_accepted(client, database, network, merchant):
    """A surrogate pair is one character (an emoji); an escaped backslash before u0000 is
    text, not NUL."""
    body = invoice_json(network, r'"description":"\ud83d\ude00 \\u0000","metadata":{"k":"\\ud800"}')
    response = await post_invoice(client, merchant, body)
    assert response.status_code == 201, response.text
    assert response.json()["metadata"] == {"k": "\\ud800"}
    assert await invoices_of(database, merchant) == 1


async def test_query_parameter_with_nul_is_422_before_rate_limits_count(client, database, merchant):
    counters = "SELECT coalesce(sum(count), 0) FROM rate_counters"
    before = await scalar(database, counters)
    response = await client.get(
        "/api/v1/invoices?starting_after=%00x&limit=5", headers=merchant.headers
    )
    assert_refused(response, "query.starting_after")
    assert await scalar(database, counters) == before  # the guard runs before every dependency


async def test_path_parameter_with_nul_is_422(client, database, merchant):
    before = await scalar(database, "SELECT count(*) FROM audit_logs")
    response = await client.get("/api/v1/invoices/inv_%00x", headers=merchant.headers)
    assert_refused(response, "path.invoice_id")
    cancel = await client.post("/api/v1/invoices/inv_%00x/cancel", headers=merchant.headers)
    assert_refused(cancel, "path.invoice_id")
    assert await scalar(database, "SELECT count(*) FROM audit_logs") == before


async def test_backoffice_network_name_with_nul_is_422_and_writes_nothing(client, database, admin):
    code = f"nul{os.getpid() % 10_000}"
    body = (
        f'{{"code":"{code}","name":"Bad\\u0000name","chain_family":"evm","chain_id":9999}}'
    ).encode()
    response = await client.post(
        f"{BO}/networks", content=body, headers={**admin, "content-type": "application/json"}
    )
    assert_refused(response, "name")
    for table, column in (("networks", "code"), ("audit_logs", "target_id")):
        sql = f"SELECT count(*) FROM {table} WHERE {column} = :c"
        assert await scalar(database, sql, c=code) == 0


async def test_backoffice_path_and_query_with_nul_are_422(client, network, admin):
    patched = await client.patch(f"{BO}/networks/{network}%00", headers=admin, json={"name": "x"})
    assert_refused(patched, "path.code")
    listed = await client.get(f"{BO}/networks?starting_after=a%00", headers=admin)
    assert_refused(listed, "query.starting_after")


async def test_every_unstorable_field_is_named_at_once(client, network, merchant):
    response = await client.post(
        "/api/v1/invoices?x%00=1",
        content=invoice_json(network, r'"description":"\u0000","metadata":{"a":"\ud800"}'),
        headers={**merchant.headers, "content-type": "application/json"},
    )
    assert response.status_code == 422
    fields = [f["field"] for f in response.json()["error"]["fields"]]
    assert fields == [r"query.x\u0000", "description", "metadata.a"]


async def test_the_jobs_app_refuses_them_too(database_url):
    settings = make_settings(database_url)
    async with app_client(jobs.create_app, settings) as (_, client):
        run = await client.post("/api/v1/jobs/chains.rpc_health%00/run")
        listed = await client.get("/api/v1/jobs?x=%00")
    assert_refused(run, "path.name")
    assert_refused(listed, "query.x")


async def test_header_with_nul_is_422_before_any_lookup(client, database, merchant):
    """HTTP forbids NUL in a header value (uvicorn's parser refuses it with a 400); behind
    another server or proxy, it is refused here before the key is looked up."""
    touched = "SELECT last_used_at FROM api_keys WHERE id = :k"
    before = await scalar(database, touched, k=merchant.key_id)
    response = await client.get("/api/v1/invoices", headers={"x-api-key": merchant.key + "\x00"})
    assert_refused(response, "header.x-api-key")
    assert await scalar(database, touched, k=merchant.key_id) == before
