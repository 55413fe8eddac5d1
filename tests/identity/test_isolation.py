"""Isolation, proven over the whole route table: merchant A gets 404 for every route naming one
of merchant B's objects, and 403 on every route its key's scopes do not cover. A new route
without scoping, with a path parameter this test cannot fill, or needing other scopes than
`REQUIRED_SCOPES` says, fails here."""

import re

import pytest
from sqlalchemy import text

from nespay.apps import api
from nespay.auth.scopes import (
    ALL_SCOPES,
    API_KEYS_READ,
    API_KEYS_WRITE,
    BALANCES_READ,
    CARDS_READ,
    CARDS_WRITE,
    EVENTS_READ,
    INVOICES_READ,
    INVOICES_WRITE,
    MERCHANT_READ,
    MERCHANT_WRITE,
    WEBHOOKS_READ,
    WEBHOOKS_WRITE,
    WITHDRAWALS_READ,
    WITHDRAWALS_WRITE,
)
from tests.fixtures.app import app_client, unthrottled
from tests.fixtures.factories import key_for, merchant_user, merchant_with_key, register_network

PREFIX = "/api/v1"
# Merchant-side routes that need no scope: creating the merchant itself, liveness.
# Any signed-in caller: create its merchant; see its own credential (names no object).
UNSCOPED = {
    ("POST", "/api/v1/merchants"),
    ("GET", "/api/v1/whoami"),
    ("GET", "/api/v1/health"),
}
# What each other merchant-side route needs, written out (not read from the routes, which are
# what this checks): a key missing any one of these is refused, and these alone are enough.
REQUIRED_SCOPES: dict[tuple[str, str], set[str]] = {
    ("GET", "/api/v1/merchants/me"): {MERCHANT_READ},
    ("PATCH", "/api/v1/merchants/me"): {MERCHANT_WRITE},
    ("GET", "/api/v1/merchants/me/users"): {MERCHANT_READ},
    ("POST", "/api/v1/merchants/me/users"): {MERCHANT_WRITE},
    ("DELETE", "/api/v1/merchants/me/users/{user_id}"): {MERCHANT_WRITE},
    ("POST", "/api/v1/api-keys"): {API_KEYS_WRITE},
    ("GET", "/api/v1/api-keys"): {API_KEYS_READ},
    ("DELETE", "/api/v1/api-keys/{key_id}"): {API_KEYS_WRITE},
    ("POST", "/api/v1/webhook-endpoints"): {WEBHOOKS_WRITE},
    ("GET", "/api/v1/webhook-endpoints"): {WEBHOOKS_READ},
    ("GET", "/api/v1/webhook-endpoints/{endpoint_id}"): {WEBHOOKS_READ},
    ("PATCH", "/api/v1/webhook-endpoints/{endpoint_id}"): {WEBHOOKS_WRITE},
    ("DELETE", "/api/v1/webhook-endpoints/{endpoint_id}"): {WEBHOOKS_WRITE},
    ("POST", "/api/v1/webhook-endpoints/{endpoint_id}/rotate-secret"): {WEBHOOKS_WRITE},
    ("POST", "/api/v1/webhook-endpoints/{endpoint_id}/test"): {WEBHOOKS_WRITE},
    ("GET", "/api/v1/events"): {EVENTS_READ},
    ("GET", "/api/v1/events/{event_id}"): {EVENTS_READ},
    ("GET", "/api/v1/events/{event_id}/deliveries"): {EVENTS_READ},
    ("POST", "/api/v1/events/{event_id}/redeliver"): {WEBHOOKS_WRITE},  # it sends callbacks
    ("POST", "/api/v1/invoices"): {INVOICES_WRITE},
    ("GET", "/api/v1/invoices"): {INVOICES_READ},
    ("GET", "/api/v1/invoices/{invoice_id}"): {INVOICES_READ},
    ("POST", "/api/v1/invoices/{invoice_id}/cancel"): {INVOICES_WRITE},
    ("GET", "/api/v1/networks"): {INVOICES_READ},  # what an invoice may be created on
    ("GET", "/api/v1/currencies"): {INVOICES_READ},
    ("GET", "/api/v1/balances"): {BALANCES_READ},
    ("GET", "/api/v1/balance-transactions"): {BALANCES_READ},
    ("POST", "/api/v1/withdrawals"): {WITHDRAWALS_WRITE},
    ("GET", "/api/v1/withdrawals"): {WITHDRAWALS_READ},
    ("GET", "/api/v1/withdrawals/{withdrawal_id}"): {WITHDRAWALS_READ},
    ("POST", "/api/v1/withdrawals/{withdrawal_id}/cancel"): {WITHDRAWALS_WRITE},
    ("POST", "/api/v1/invoices/{invoice_id}/refunds"): {WITHDRAWALS_WRITE},
    ("POST", "/api/v1/card-users"): {CARDS_WRITE},
    ("GET", "/api/v1/card-users/{card_user_id}"): {CARDS_READ},
    ("GET", "/api/v1/card-users/{card_user_id}/cards"): {CARDS_READ},
    ("POST", "/api/v1/card-users/{card_user_id}/cards"): {CARDS_WRITE},
    ("GET", "/api/v1/card-users/{card_user_id}/balances"): {CARDS_READ},
    ("POST", "/api/v1/card-users/{card_user_id}/fundings"): {CARDS_WRITE},
    ("POST", "/api/v1/card-users/{card_user_id}/defundings"): {CARDS_WRITE},
    ("GET", "/api/v1/cards/{card_id}"): {CARDS_READ},
    ("PATCH", "/api/v1/cards/{card_id}"): {CARDS_WRITE},
    ("GET", "/api/v1/cards/{card_id}/transactions"): {CARDS_READ},
}
# Routes open to anyone by design (none may be merchant-owned objects).
PUBLIC = re.compile(r"^/api/v1/(health|public/)")
# Bodies for routes whose body must validate before the object lookup can answer.
BODIES: dict[tuple[str, str], dict] = {
    ("PATCH", "/api/v1/webhook-endpoints/{endpoint_id}"): {"description": "changed"},
    ("POST", "/api/v1/invoices/{invoice_id}/refunds"): {
        "amount": "1",
        "address": "0x8ba1f109551bD432803012645Ac136ddd64DBA72",
    },
    ("POST", "/api/v1/card-users/{card_user_id}/cards"): {
        "type": "virtual",
        "limit": {"amount": "10", "frequency": "allTime"},
    },
    ("PATCH", "/api/v1/cards/{card_id}"): {"status": "locked"},
    ("POST", "/api/v1/card-users/{card_user_id}/fundings"): {
        "network": "local",
        "currency": "USDT",
        "amount": "1",
    },
    ("POST", "/api/v1/card-users/{card_user_id}/defundings"): {
        "network": "local",
        "currency": "USDT",
        "amount": "1",
    },
}


async def make_objects(database, client, owner):
    """One object of each kind a path parameter can name, owned by `owner`."""
    network = await register_network(database, ["http://127.0.0.1:9"], "0x" + "11" * 20)
    client._transport.app.state.runtime.catalog.invalidate()
    invoice = await client.post(
        "/api/v1/invoices",
        headers=owner.headers,
        json={"amount": "1", "currency": "USDT", "network": network},
    )
    endpoint = await client.post(
        "/api/v1/webhook-endpoints",
        headers=owner.headers,
        json={"url": "http://127.0.0.1:9/h", "events": ["*"]},
    )
    async with database.engine.connect() as conn:
        event_id = await conn.scalar(
            text("SELECT id FROM events WHERE subject_id = :i"), {"i": invoice.json()["id"]}
        )
    withdrawal = await _withdrawal(database, client, owner, network)
    card_user, card = await _card(database, owner)
    spare = await key_for(database, owner.merchant_id)
    user = await merchant_user(database, owner.merchant_id)
    return {
        "key_id": spare.key_id,
        "endpoint_id": endpoint.json()["id"],
        "user_id": user.id,
        "invoice_id": invoice.json()["id"],
        "event_id": event_id,
        "withdrawal_id": withdrawal,
        "card_user_id": card_user,
        "card_id": card,
    }


async def _card(database, owner) -> tuple[str, str]:
    """An approved card user of `owner`'s with an active card (rows as Rain's answers leave
    them: no call to Rain is needed to find them)."""
    from nespay.kit.ids import new_id

    card_user, card = new_id("cu"), new_id("card")
    async with database.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO card_users (id, merchant_id, rain_user_id, application_status)"
                " VALUES (:i, :m, :r, 'approved')"
            ),
            {"i": card_user, "m": owner.merchant_id, "r": new_id("rain")},
        )
        await conn.execute(
            text(
                "INSERT INTO cards (id, merchant_id, card_user_id, rain_card_id, type, status)"
                " VALUES (:i, :m, :u, :r, 'virtual', 'active')"
            ),
            {"i": card, "m": owner.merchant_id, "u": card_user, "r": new_id("rain")},
        )
    return card_user, card


async def _withdrawal(database, client, owner, network) -> str:
    """A withdrawal of `owner`'s (its balance funded straight in the ledger)."""
    from tests.fixtures.factories import fund_merchant
    from tests.wallets.sending import import_key

    await import_key(client._transport.app.state.runtime.settings, database, network)
    await fund_merchant(database, owner.merchant_id, network, 10**6)
    response = await client.post(
        "/api/v1/withdrawals",
        headers=owner.headers,
        json={
            **BODIES[("POST", "/api/v1/invoices/{invoice_id}/refunds")],
            "network": network,
            "currency": "USDT",
        },
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def merchant_operations(app):
    for path, operations in app.openapi()["paths"].items():
        if not path.startswith(PREFIX) or PUBLIC.match(path):
            continue
        for method in operations:
            yield method.upper(), path


def fill(path, objects):
    names = re.findall(r"{(\w+)}", path)
    missing = [name for name in names if name not in objects]
    assert not missing, f"{path}: add a factory for {missing} to make_objects"
    return re.sub(r"{(\w+)}", lambda m: objects[m.group(1)], path)


@pytest.fixture
async def setup(settings, database):
    async with app_client(api.create_app, unthrottled(settings)) as (app, client):
        a, b = await merchant_with_key(database), await merchant_with_key(database)
        yield app, client, a, b, await make_objects(database, client, b)


async def test_every_route_naming_another_merchants_object_is_404(setup):
    app, client, a, _, objects_of_b = setup
    checked = 0
    for method, path in merchant_operations(app):
        if "{" not in path:
            continue
        response = await client.request(
            method, fill(path, objects_of_b), headers=a.headers, json=BODIES.get((method, path))
        )
        assert response.status_code == 404, (
            f"{method} {path}: {response.status_code} {response.text}"
        )
        checked += 1
    assert checked == sum("{" in path for _, path in REQUIRED_SCOPES)


def scope_missing(response) -> bool:
    return response.status_code == 403 and response.json()["error"]["code"] == "scope_missing"


async def test_every_route_needs_exactly_its_scopes(setup, database):
    """Each listed scope is needed (a key with every scope but it is refused) and they are
    enough (a key with them alone is served). Scope checks are subset checks (a key with more
    scopes is never refused for it), so no other scope needs probing."""
    app, client, a, _, _ = setup
    operations = [op for op in merchant_operations(app) if op not in UNSCOPED]
    wrong = []
    for method, path in operations:
        required = REQUIRED_SCOPES.get((method, path))
        if required is None:
            wrong.append(f"{method} {path}: not in REQUIRED_SCOPES")
            continue
        objects = await make_objects(database, client, a)
        for scope in sorted(required):
            probe = await key_for(database, a.merchant_id, scopes=ALL_SCOPES - {scope})
            response = await client.request(method, fill(path, objects), headers=probe.headers)
            if not scope_missing(response):
                wrong.append(f"{method} {path}: served without {scope}")
        exact = await key_for(database, a.merchant_id, scopes=required)
        response = await client.request(method, fill(path, objects), headers=exact.headers)
        if scope_missing(response):
            wrong.append(f"{method} {path}: refused with {sorted(required)} alone")
    assert wrong == []
    assert set(REQUIRED_SCOPES) == set(operations)  # no route gone without the table knowing


async def test_unscoped_routes_are_the_expected_ones(setup):
    app, *_ = setup
    operations = set(merchant_operations(app))
    assert {op for op in UNSCOPED if op[1] != "/api/v1/health"} <= operations
