"""Who may use the backoffice: every route refuses a caller without an admin-pool token (401),
a merchant's token (403 `wrong_user_pool`) and an admin in no group (403
`admin_role_missing`), before reading its input; groups narrow further per route."""

import re

import pytest
from fastapi import FastAPI
from tests.backoffice.conftest import BO
from tests.invoices.conftest import error_code

from nespay.apps import api


def backoffice_routes() -> list[tuple[str, str]]:
    app = FastAPI()
    app.include_router(api.backoffice_api())
    return [
        (method.upper(), re.sub(r"\{[^}]+\}", "x_nope", path))
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    ]


ROUTES = backoffice_routes()


def test_the_backoffice_has_every_route_of_the_spec():
    wanted = {
        ("GET", "/merchants"), ("PATCH", "/merchants/x_nope"), ("GET", "/invoices"),
        ("POST", "/invoices/x_nope/mark-paid"), ("POST", "/invoices/x_nope/mark-invalid"),
        ("GET", "/payments"), ("GET", "/addresses"), ("GET", "/networks"), ("POST", "/networks"),
        ("PATCH", "/networks/x_nope"), ("GET", "/currencies"), ("POST", "/currencies"),
        ("PATCH", "/currencies/x_nope"), ("GET", "/rpc-endpoints"), ("POST", "/rpc-endpoints"),
        ("PATCH", "/rpc-endpoints/x_nope"), ("DELETE", "/rpc-endpoints/x_nope"),
        ("GET", "/withdrawals"), ("POST", "/withdrawals/x_nope/approve"),
        ("POST", "/withdrawals/x_nope/reject"), ("GET", "/events"),
        ("POST", "/events/x_nope/redeliver"), ("GET", "/provider-webhooks"),
        ("POST", "/provider-webhooks/x_nope/replay"), ("GET", "/audit-logs"), ("GET", "/stats"),
    }  # fmt: skip
    assert wanted <= set(ROUTES)


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
async def test_every_route_needs_an_admin_in_a_group(admin_app, tokens, method, path):
    url = f"{BO}{path}"
    anonymous = await admin_app.client.request(method, url, json={})
    assert anonymous.status_code == 401 and error_code(anonymous) == "authentication_required"
    merchant = await admin_app.client.request(method, url, headers=tokens["merchant"], json={})
    assert merchant.status_code == 403 and error_code(merchant) == "wrong_user_pool"
    nobody = await admin_app.client.request(method, url, headers=tokens["none"], json={})
    assert nobody.status_code == 403 and error_code(nobody) == "admin_role_missing"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/stats"),
        ("POST", "/invoices/x_nope/mark-paid"),
        ("POST", "/invoices/x_nope/mark-invalid"),
    ],
)
async def test_support_may_not_see_totals_nor_mark_invoices(admin_app, tokens, method, path):
    refused = await admin_app.client.request(
        method, f"{BO}{path}", headers=tokens["support"], json={"reason": "because"}
    )
    assert refused.status_code == 403 and error_code(refused) == "admin_role_missing"


@pytest.mark.parametrize("path", ["/invoices", "/payments", "/addresses"])
@pytest.mark.parametrize("group", ["admin", "finance", "support"])
async def test_every_admin_group_may_search(admin_app, tokens, path, group):
    found = await admin_app.client.get(f"{BO}{path}", headers=tokens[group], params={"limit": 1})
    assert found.status_code == 200, found.text
    assert set(found.json()) == {"data", "has_more"}


def test_every_route_documents_its_errors_in_the_one_shape(settings):
    document = api.create_app(settings.model_copy(update={"swagger_enable": True})).openapi()
    operations = [
        (path, method, operation)
        for path, methods in document["paths"].items()
        if path.startswith(BO)
        for method, operation in methods.items()
    ]
    assert len(operations) == len(ROUTES)
    for path, method, operation in operations:
        upsert = method == "put"  # `PUT /rates/{base}/{quote}` sets, whether or not one was
        statuses = ("401", "403", "422", "429") + (("404",) if "{" in path and not upsert else ())
        for status in statuses:
            schema = operation["responses"][status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path, status)
    error = document["components"]["schemas"]["ErrorDetail"]
    assert {"code", "message", "request_id"} <= set(error["required"])
