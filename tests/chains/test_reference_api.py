"""Reference data over HTTP: the backoffice manages networks, currencies and RPC endpoints
(admins write, every admin group reads, every write audited with RPC URLs masked); merchants
see only what is enabled."""

import itertools
import logging
import os
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from nespay.apps.common import build_app
from nespay.auth.scopes import INVOICES_READ, MERCHANT_READ
from nespay.backoffice import reference
from nespay.chains import endpoints as chains_endpoints
from nespay.kit.ids import new_id
from tests.fixtures.app import app_client
from tests.fixtures.database import make_settings
from tests.fixtures.factories import merchant_with_key

BO = "/api/backoffice/v1"
API = "/api/v1"
USDT = "0xdAC17F958D2ee523a2206206994597C13D831ec7"
USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
TRON_USDT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
SECRET = "k3yS3cr3tAbc123"
_n = itertools.count()


def unique(prefix="t"):
    return f"{prefix}{os.getpid() % 10_000}-{next(_n)}"


def bearer(token):
    return {"authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
async def client(cognito, shared_database_url):
    settings = make_settings(shared_database_url, log_level="info", **cognito.setting_values())

    def factory(settings):
        return build_app(
            "api",
            settings,
            routers=[(BO, reference.router), (API, chains_endpoints.router)],
        )

    async with app_client(factory, settings) as (_, client):
        yield client


@pytest.fixture(scope="module")
def admins(cognito):
    """A token per admin group, and the admin's sub."""
    tokens = {}
    for group in ("admin", "finance", "support"):
        name = f"ref-{group}-{os.getpid()}@example.com"
        sub = cognito.new_user("admin", name, (group,))
        tokens[group] = cognito.tokens("admin", name)["IdToken"]
        tokens[f"{group}_sub"] = sub
    return tokens


@pytest.fixture(scope="module")
async def merchant(shared_database):
    return await merchant_with_key(shared_database, scopes={INVOICES_READ})


@pytest.fixture
def admin(admins):
    return bearer(admins["admin"])


async def new_network(client, admin, **fields):
    body = {
        "code": unique(),
        "name": "Test chain",
        "chain_family": "evm",
        "chain_id": 900_000 + next(_n),
        "confirmations": 5,
        **fields,
    }
    response = await client.post(f"{BO}/networks", headers=admin, json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def everything(client, path, headers, **params):
    """Every page of a list."""
    items, after = [], None
    while True:
        query = {"limit": 100, **params, **({"starting_after": after} if after else {})}
        page = (await client.get(path, headers=headers, params=query)).json()
        items += page["data"]
        if not page["has_more"]:
            return items
        last = page["data"][-1]
        after = last.get("id", last.get("code"))


async def audit(database, target_id):
    async with database.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT action, actor_type, actor_id, before, after, detail FROM audit_logs"
                " WHERE target_id = :t ORDER BY id"
            ),
            {"t": target_id},
        )
        return [dict(row._mapping) for row in rows]


def assert_error(response, status, code):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"] and error["request_id"]
    assert response.headers["x-request-id"] == error["request_id"]
    return error


async def test_admin_sets_up_a_network_and_merchants_see_it_once_enabled(client, admin, merchant):
    network = await new_network(client, admin)
    code = network["code"]
    native = await client.post(
        f"{BO}/currencies",
        headers=admin,
        json={"network": code, "code": "ETH", "decimals": 18, "name": "Ether"},
    )
    token = await client.post(
        f"{BO}/currencies",
        headers=admin,
        json={"network": code, "code": "USDT", "contract": USDT, "decimals": 6},
    )
    off = await client.post(
        f"{BO}/currencies",
        headers=admin,
        json={"network": code, "code": "USDC", "contract": USDC, "decimals": 6, "enabled": False},
    )
    endpoint = await client.post(
        f"{BO}/rpc-endpoints",
        headers=admin,
        json={"network": code, "url": "http://127.0.0.1:8545", "priority": 10},
    )
    hidden = await everything(client, f"{API}/networks", merchant.headers)
    enabled = await client.patch(f"{BO}/networks/{code}", headers=admin, json={"enabled": True})
    shown = await everything(client, f"{API}/networks", merchant.headers)
    currencies = await everything(client, f"{API}/currencies", merchant.headers, network=code)

    assert network["enabled"] is False and network["chain_family"] == "evm"
    assert native.status_code == 201 and native.json()["contract"] is None
    assert token.status_code == 201 and token.json()["contract"] == USDT.lower()
    assert token.json()["id"].startswith("cur_") and token.json()["network"] == code
    assert off.status_code == 201 and off.json()["enabled"] is False
    assert endpoint.status_code == 201 and endpoint.json()["status"] == "unknown"
    assert endpoint.json()["id"].startswith("rpc_") and endpoint.json()["priority"] == 10
    assert code not in [n["code"] for n in hidden]
    assert enabled.status_code == 200 and enabled.json()["enabled"] is True
    (listed,) = [n for n in shown if n["code"] == code]
    assert listed["confirmations"] == 5 and listed["chain_family"] == "evm"
    assert "created_at" not in listed  # the merchant view is the integration's subset
    assert sorted((c["code"], c["contract"]) for c in currencies) == [
        ("ETH", None),
        ("USDT", USDT.lower()),
    ]
    assert {(c["decimals"], c["confirmations"], c["chain_family"]) for c in currencies} == {
        (18, 5, "evm"),
        (6, 5, "evm"),
    }


async def test_admin_lists_filter_by_network_and_state_and_page(client, admin):
    network = await new_network(client, admin)
    code = network["code"]
    for symbol, contract in [("AAA", USDT), ("BBB", USDC), ("CCC", None)]:
        body = {"network": code, "code": symbol, "contract": contract, "decimals": 6}
        assert (await client.post(f"{BO}/currencies", headers=admin, json=body)).status_code == 201
    ids = []
    for priority, enabled in [(20, True), (10, False)]:
        response = await client.post(
            f"{BO}/rpc-endpoints",
            headers=admin,
            json={
                "network": code,
                "url": f"wss://node{priority}.example/ws",
                "priority": priority,
                "enabled": enabled,
            },
        )
        ids.append(response.json()["id"])
    second = (await everything(client, f"{BO}/currencies", admin, network=code))[1]
    await client.patch(f"{BO}/currencies/{second['id']}", headers=admin, json={"enabled": False})

    first = (
        await client.get(f"{BO}/currencies", headers=admin, params={"network": code, "limit": 2})
    ).json()
    rest = (
        await client.get(
            f"{BO}/currencies",
            headers=admin,
            params={"network": code, "limit": 2, "starting_after": first["data"][-1]["id"]},
        )
    ).json()
    enabled_only = await everything(client, f"{BO}/currencies", admin, network=code, enabled=True)
    endpoints = await everything(client, f"{BO}/rpc-endpoints", admin, network=code)
    enabled_endpoints = await everything(
        client, f"{BO}/rpc-endpoints", admin, network=code, enabled="true"
    )
    disabled_networks = await everything(client, f"{BO}/networks", admin, enabled="false")
    enabled_networks = await everything(client, f"{BO}/networks", admin, enabled="true")
    one = await client.get(f"{BO}/rpc-endpoints/{ids[0]}", headers=admin)
    unknown_filter = await client.get(
        f"{BO}/currencies", headers=admin, params={"network": unique("nope")}
    )

    assert [c["code"] for c in first["data"]] == ["AAA", "BBB"] and first["has_more"] is True
    assert [c["code"] for c in rest["data"]] == ["CCC"] and rest["has_more"] is False
    assert [c["code"] for c in enabled_only] == ["AAA", "CCC"]
    assert [e["priority"] for e in endpoints] == [10, 20]  # tried in this order
    assert [e["id"] for e in enabled_endpoints] == [ids[0]]
    assert code in [n["code"] for n in disabled_networks]
    assert code not in [n["code"] for n in enabled_networks]
    assert one.json()["url"] == "wss://node20.example/ws"
    assert_error(unknown_filter, 422, "unknown_network")


async def test_changes_are_audited_before_and_after_with_rpc_urls_masked(
    client, admins, admin, database, caplog
):
    caplog.set_level(logging.INFO)
    network = await new_network(client, admin)
    code = network["code"]
    url = f"https://eth-mainnet.g.alchemy.com/v2/{SECRET}"
    new_url = f"https://eth-mainnet.g.alchemy.com/v2/{SECRET}-rotated?x=1"
    created = (
        await client.post(f"{BO}/rpc-endpoints", headers=admin, json={"network": code, "url": url})
    ).json()
    listed = await everything(client, f"{BO}/rpc-endpoints", admin, network=code)
    patched = await client.patch(
        f"{BO}/rpc-endpoints/{created['id']}",
        headers=admin,
        json={"url": new_url, "priority": 5},
    )
    renamed = await client.patch(
        f"{BO}/networks/{code}",
        headers=admin,
        json={"name": "Renamed", "confirmations": 9, "enabled": False, "code": code},
    )
    noop = await client.patch(f"{BO}/networks/{code}", headers=admin, json={"name": "Renamed"})
    deleted = await client.delete(f"{BO}/rpc-endpoints/{created['id']}", headers=admin)
    gone = await client.get(f"{BO}/rpc-endpoints/{created['id']}", headers=admin)

    masked = "https://eth-mainnet.g.alchemy.com/v2/***"
    assert [e["url"] for e in listed] == [masked]  # never the key (tested further below)
    assert patched.status_code == 200 and patched.json()["url"] == masked + "?x=1"
    assert patched.json()["priority"] == 5
    assert renamed.json()["name"] == "Renamed" and renamed.json()["confirmations"] == 9
    assert noop.status_code == 200
    assert deleted.status_code == 204
    assert_error(gone, 404, "rpc_endpoint_not_found")

    endpoint_log = await audit(database, created["id"])
    assert [e["action"] for e in endpoint_log] == [
        "rpc_endpoint.created",
        "rpc_endpoint.updated",
        "rpc_endpoint.deleted",
    ]
    assert endpoint_log[0]["after"] == {
        "network": code,
        "url": masked,
        "priority": 100,
        "enabled": True,
    }
    assert endpoint_log[1]["before"] == {"url": masked, "priority": 100}
    assert endpoint_log[1]["after"] == {"url": masked + "?x=1", "priority": 5}
    assert endpoint_log[1]["detail"] == {"url_changed": True}
    assert endpoint_log[2]["before"]["url"] == masked + "?x=1"
    assert endpoint_log[2]["after"] is None
    assert all(e["actor_type"] == "admin" for e in endpoint_log)
    assert {e["actor_id"] for e in endpoint_log} == {admins["admin_sub"]}
    assert SECRET not in str(endpoint_log)

    network_log = await audit(database, code)
    assert [e["action"] for e in network_log] == ["network.created", "network.updated"]
    assert network_log[0]["after"]["chain_family"] == "evm"
    assert network_log[1]["before"] == {"name": "Test chain", "confirmations": 5}
    assert network_log[1]["after"] == {"name": "Renamed", "confirmations": 9}

    # Log lines name the endpoint by id, never by URL.
    assert created["id"] in caplog.text
    assert SECRET not in caplog.text


async def test_currency_updates_are_audited_and_frozen_once_invoices_use_them(
    client, admin, database
):
    code = (await new_network(client, admin))["code"]
    currency = (
        await client.post(
            f"{BO}/currencies",
            headers=admin,
            json={"network": code, "code": "USDT", "contract": USDT, "decimals": 18},
        )
    ).json()
    fixed = await client.patch(
        f"{BO}/currencies/{currency['id']}",
        headers=admin,
        json={"decimals": 6, "contract": USDT.upper().replace("0X", "0x")},
    )
    await use_in_an_invoice(database, code, currency["id"])
    frozen = await client.patch(
        f"{BO}/currencies/{currency['id']}", headers=admin, json={"decimals": 8}
    )
    renamed = await client.patch(
        f"{BO}/currencies/{currency['id']}",
        headers=admin,
        json={"name": "Tether", "enabled": False},
    )

    assert fixed.status_code == 200 and fixed.json()["decimals"] == 6
    assert fixed.json()["contract"] == USDT.lower()  # the same contract, whatever its case
    assert_error(frozen, 409, "currency_in_use")
    assert renamed.status_code == 200 and renamed.json()["enabled"] is False
    log = await audit(database, currency["id"])
    assert [e["action"] for e in log] == [
        "currency.created",
        "currency.updated",
        "currency.updated",
    ]
    assert log[1]["before"] == {"decimals": 18} and log[1]["after"] == {"decimals": 6}
    assert log[2]["after"] == {"name": "Tether", "enabled": False}


async def use_in_an_invoice(database, network, currency_id):
    owner = await merchant_with_key(database)
    invoice_id = new_id("inv")
    async with database.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO invoices (id, merchant_id, price_amount, price_currency, expires_at)"
                " VALUES (:i, :m, 10, 'USDT', :e)"
            ),
            {"i": invoice_id, "m": owner.merchant_id, "e": datetime.now(UTC) + timedelta(hours=1)},
        )
        await conn.execute(
            text(
                "INSERT INTO invoice_options (id, invoice_id, network_code, currency_id,"
                " chain_family, address, amount, rate)"
                " VALUES (:o, :i, :n, :c, 'evm', :a, 10000000, 1)"
            ),
            {
                "o": new_id("opt"),
                "i": invoice_id,
                "n": network,
                "c": currency_id,
                "a": "0x" + "1" * 40,
            },
        )


async def test_support_and_finance_read_but_only_admins_write(client, admins, admin, merchant):
    code = (await new_network(client, admin))["code"]
    endpoint = (
        await client.post(
            f"{BO}/rpc-endpoints",
            headers=admin,
            json={"network": code, "url": "https://rpc.example/key"},
        )
    ).json()
    for group in ("support", "finance"):
        headers = bearer(admins[group])
        for path in ("/networks", "/currencies", "/rpc-endpoints", f"/networks/{code}"):
            assert (await client.get(f"{BO}{path}", headers=headers)).status_code == 200, path
        writes = [
            client.post(
                f"{BO}/networks",
                headers=headers,
                json={"code": unique(), "name": "x", "chain_family": "tron"},
            ),
            client.patch(f"{BO}/networks/{code}", headers=headers, json={"enabled": True}),
            client.post(
                f"{BO}/currencies",
                headers=headers,
                json={"network": code, "code": "ETH", "decimals": 18},
            ),
            client.patch(
                f"{BO}/rpc-endpoints/{endpoint['id']}", headers=headers, json={"priority": 1}
            ),
            client.delete(f"{BO}/rpc-endpoints/{endpoint['id']}", headers=headers),
        ]
        for write in writes:
            assert_error(await write, 403, "admin_role_missing")
    nobody = await client.get(f"{BO}/networks")
    by_merchant_key = await client.get(f"{BO}/networks", headers=merchant.headers)
    after = await client.get(f"{BO}/rpc-endpoints/{endpoint['id']}", headers=admin)
    assert_error(nobody, 401, "authentication_required")
    assert_error(by_merchant_key, 401, "authentication_required")
    assert after.json()["priority"] == 100 and after.json()["enabled"] is True
    network = (await client.get(f"{BO}/networks/{code}", headers=admin)).json()
    assert network["enabled"] is False


async def test_merchant_routes_need_invoices_read(client, database, admin):
    without = await merchant_with_key(database, scopes={MERCHANT_READ})
    anonymous = await client.get(f"{API}/currencies")
    refused = await client.get(f"{API}/networks", headers=without.headers)
    admin_token = await client.get(f"{API}/networks", headers=admin)
    assert_error(anonymous, 401, "authentication_required")
    assert_error(refused, 403, "scope_missing")
    assert_error(admin_token, 403, "wrong_user_pool")


async def test_bad_input_is_refused_with_a_clear_code_and_nothing_is_stored(
    client, admin, database
):
    evm = (await new_network(client, admin))["code"]
    tron = (await new_network(client, admin, chain_family="tron", chain_id=None))["code"]
    base = {"network": evm, "decimals": 6}
    ok = [
        await client.post(f"{BO}/currencies", headers=admin, json={**base, "code": "ETH"}),
        await client.post(
            f"{BO}/currencies", headers=admin, json={**base, "code": "USDT", "contract": USDT}
        ),
        await client.post(
            f"{BO}/currencies",
            headers=admin,
            json={"network": tron, "code": "USDT", "contract": TRON_USDT, "decimals": 6},
        ),
    ]
    assert [r.status_code for r in ok] == [201, 201, 201]
    bad_code = unique("btc")
    nope = unique("nope")
    # fmt: off
    cases = [
        # (method, path, body, status, error code, offending field of a validation error)
        ("post", "/currencies", {**base, "code": "X1", "contract": "0x1234"},
         422, "invalid_contract", None),
        ("post", "/currencies", {**base, "code": "X2", "contract": "0x" + "0" * 40},
         422, "invalid_contract", None),
        ("post", "/currencies", {**base, "code": "X3", "contract": TRON_USDT},
         422, "invalid_contract", None),
        ("post", "/currencies", {"network": tron, "code": "X4", "contract": USDT, "decimals": 6},
         422, "invalid_contract", None),
        ("post", "/currencies", {"network": tron, "code": "X5", "decimals": 6,
                                 "contract": TRON_USDT[:-1] + "u"},  # checksum
         422, "invalid_contract", None),
        ("post", "/currencies", {**base, "code": "X6", "decimals": 99, "contract": USDC},
         422, "validation_error", "decimals"),
        ("post", "/currencies", {**base, "code": "usdt", "contract": USDC},
         409, "currency_code_taken", None),
        ("post", "/currencies", {**base, "code": "X7", "contract": USDT.lower()},
         409, "currency_contract_taken", None),
        ("post", "/currencies", {**base, "code": "NATIVE2"},
         409, "native_currency_exists", None),
        ("post", "/currencies", {**base, "network": nope, "code": "X8"},
         422, "unknown_network", None),
        ("post", "/networks", {"code": bad_code, "name": "Bitcoin", "chain_family": "btc"},
         422, "validation_error", "chain_family"),
        ("post", "/networks", {"code": evm, "name": "Again", "chain_family": "evm", "chain_id": 1},
         409, "network_exists", None),
        ("post", "/networks", {"code": unique(), "name": "No id", "chain_family": "evm"},
         422, "chain_id_required", None),
        ("post", "/networks", {"code": "Bad Code", "name": "x", "chain_family": "evm",
                               "chain_id": 1},
         422, "validation_error", "code"),
        ("post", "/networks", {"code": unique(), "name": "x", "chain_family": "evm",
                               "chain_id": 1, "confirmations": 0},
         422, "validation_error", "confirmations"),
        ("post", "/rpc-endpoints", {"network": evm, "url": "ftp://x"},
         422, "validation_error", "url"),
        ("post", "/rpc-endpoints", {"network": evm, "url": "https://"},
         422, "validation_error", "url"),
        ("post", "/rpc-endpoints", {"network": nope, "url": "https://rpc.example"},
         422, "unknown_network", None),
        ("patch", f"/networks/{evm}", {"code": unique()},
         422, "network_code_immutable", None),
        ("patch", f"/networks/{evm}", {"confirmations": None},
         422, "validation_error", "confirmations"),
        ("patch", f"/networks/{evm}", {"chain_family": "tron"},
         409, "chain_family_locked", None),
        ("patch", f"/networks/{nope}", {"enabled": True},
         404, "network_not_found", None),
        ("patch", f"/currencies/{new_id('cur')}", {"enabled": False},
         404, "currency_not_found", None),
        ("patch", f"/rpc-endpoints/{new_id('rpc')}", {"priority": 1},
         404, "rpc_endpoint_not_found", None),
        ("delete", f"/rpc-endpoints/{new_id('rpc')}", None,
         404, "rpc_endpoint_not_found", None),
    ]
    # fmt: on
    for method, path, body, status, code, field in cases:
        kwargs = {"json": body} if body is not None else {}
        response = await getattr(client, method)(f"{BO}{path}", headers=admin, **kwargs)
        error = assert_error(response, status, code)
        if field is not None:
            assert field in [f["field"] for f in error["fields"]], (path, body, error)
        assert "ftp://x" not in response.text  # URLs are never echoed back

    usdt_id = ok[1].json()["id"]
    clash = await client.patch(f"{BO}/currencies/{usdt_id}", headers=admin, json={"contract": None})
    assert_error(clash, 409, "native_currency_exists")
    async with database.engine.connect() as conn:
        currencies = await conn.scalar(
            text("SELECT count(*) FROM currencies WHERE network_code IN (:e, :t)"),
            {"e": evm, "t": tron},
        )
        endpoints = await conn.scalar(
            text("SELECT count(*) FROM rpc_endpoints WHERE network_code = :e"), {"e": evm}
        )
        stray_network = await conn.scalar(
            text("SELECT count(*) FROM networks WHERE code = :c"), {"c": bad_code}
        )
        family = await conn.scalar(
            text("SELECT chain_family FROM networks WHERE code = :e"), {"e": evm}
        )
        audited = await conn.scalar(
            text(
                "SELECT count(*) FROM audit_logs WHERE action LIKE 'currency.%'"
                " AND after->>'network' IN (:e, :t)"
            ),
            {"e": evm, "t": tron},
        )
    assert (currencies, endpoints, stray_network, family, audited) == (3, 0, 0, "evm", 3)


async def test_disabling_a_network_and_removing_its_last_endpoint_are_allowed(
    client, admin, merchant
):
    code = (await new_network(client, admin, enabled=True))["code"]
    await client.post(
        f"{BO}/currencies", headers=admin, json={"network": code, "code": "ETH", "decimals": 18}
    )
    endpoint = (
        await client.post(
            f"{BO}/rpc-endpoints", headers=admin, json={"network": code, "url": "http://n.example"}
        )
    ).json()
    before = await everything(client, f"{API}/currencies", merchant.headers, network=code)
    removed = await client.delete(f"{BO}/rpc-endpoints/{endpoint['id']}", headers=admin)
    disabled = await client.patch(f"{BO}/networks/{code}", headers=admin, json={"enabled": False})
    networks = await everything(client, f"{API}/networks", merchant.headers)
    after = await everything(client, f"{API}/currencies", merchant.headers, network=code)
    assert [c["code"] for c in before] == ["ETH"]
    assert removed.status_code == 204 and disabled.status_code == 200
    assert code not in [n["code"] for n in networks] and after == []


async def test_a_tron_network_is_enabled_like_any_other_and_offered_with_its_base58_token(
    client, admin, merchant
):
    """Tron has its scanner: an enabled Tron network and its TRC-20 token are offered to
    merchants, the contract shown in its base58 form."""
    tron = (await new_network(client, admin, chain_family="tron", chain_id=None))["code"]
    await client.post(
        f"{BO}/currencies",
        headers=admin,
        json={"network": tron, "code": "USDT", "contract": TRON_USDT, "decimals": 6},
    )
    enabled = await client.patch(f"{BO}/networks/{tron}", headers=admin, json={"enabled": True})
    assert enabled.status_code == 200, enabled.text
    networks = await everything(client, f"{API}/networks", merchant.headers)
    currencies = await everything(client, f"{API}/currencies", merchant.headers)
    assert tron in {n["code"] for n in networks}
    [usdt] = [c for c in currencies if c["network"] == tron]
    assert usdt["contract"] == TRON_USDT
    await client.patch(f"{BO}/networks/{tron}", headers=admin, json={"enabled": False})


async def test_a_currencys_dust_threshold_is_set_in_whole_units_and_audited(
    client, admin, database
):
    network = (await new_network(client, admin))["code"]
    currency = (
        await client.post(
            f"{BO}/currencies",
            headers=admin,
            json={"network": network, "code": "USDT", "contract": USDT, "decimals": 6},
        )
    ).json()
    assert currency["dust_threshold"] == "0" and currency["watch_until"] is None
    changed = await client.patch(
        f"{BO}/currencies/{currency['id']}", headers=admin, json={"dust_threshold": "0.01"}
    )
    assert changed.status_code == 200 and changed.json()["dust_threshold"] == "0.01"
    too_fine = await client.patch(
        f"{BO}/currencies/{currency['id']}", headers=admin, json={"dust_threshold": "0.0000001"}
    )
    assert_error(too_fine, 422, "dust_threshold_precision")
    for bad in ("-1", "1e3", "abc", 0.5):
        response = await client.patch(
            f"{BO}/currencies/{currency['id']}", headers=admin, json={"dust_threshold": bad}
        )
        assert response.status_code == 422, (bad, response.text)
    (_, update) = [entry for entry in await audit(database, currency["id"])][:2]
    assert update["before"] == {"dust_threshold": "0"}
    assert update["after"] == {"dust_threshold": "10000"}  # base units


async def test_an_rpc_urls_key_is_never_answered_and_edits_need_not_resend_it(
    client, admin, database, caplog
):
    caplog.set_level(logging.INFO)
    code = (await new_network(client, admin))["code"]
    key = "SECRETKEY123456789"
    url = f"https://eth-mainnet.g.alchemy.com/v2/{key}"
    path = f"{BO}/rpc-endpoints"
    created = await client.post(path, headers=admin, json={"network": code, "url": url})
    endpoint_id = created.json()["id"]
    masked = created.json()["url"]
    answers = [
        created,
        await client.get(f"{path}/{endpoint_id}", headers=admin),
        await client.get(path, headers=admin, params={"network": code}),
        await client.get(f"{BO}/networks/{code}", headers=admin),
        await client.get(f"{BO}/networks", headers=admin, params={"limit": 100}),
        # a client sending back what it read, to change only the priority and the state
        await client.patch(
            f"{path}/{endpoint_id}",
            headers=admin,
            json={"url": masked, "priority": 7, "enabled": False},
        ),
        await client.patch(f"{path}/{endpoint_id}", headers=admin, json={"priority": 3}),
    ]
    edited_masked = await client.patch(
        f"{path}/{endpoint_id}", headers=admin, json={"url": masked.replace("/v2/", "/v3/")}
    )
    copied = await client.post(path, headers=admin, json={"network": code, "url": masked})
    async with database.engine.connect() as conn:
        query = text("SELECT url, priority, enabled FROM rpc_endpoints WHERE id = :i")
        stored = (await conn.execute(query, {"i": endpoint_id})).one()

    assert masked == "https://eth-mainnet.g.alchemy.com/v2/***"
    assert all(answer.status_code in (200, 201) for answer in answers), answers
    assert answers[5].json()["url"] == masked and answers[5].json()["priority"] == 7
    for answer in answers:
        assert key not in answer.text
    assert_error(edited_masked, 422, "rpc_url_masked")
    assert_error(copied, 422, "rpc_url_masked")
    assert tuple(stored) == (url, 3, False)  # the key kept, for the scanner
    log = await audit(database, endpoint_id)
    assert [e["detail"] for e in log[1:]] == [None, None]  # the URL never changed
    assert key not in str(log) and key not in caplog.text


async def test_endpoint_api_keys_are_write_only_in_the_backoffice(client, admin, database):
    tron = (await new_network(client, admin, chain_family="tron", chain_id=None))["code"]
    evm = (await new_network(client, admin))["code"]
    secret = "trongrid-key-0123456789"
    created = await client.post(
        f"{BO}/rpc-endpoints",
        headers=admin,
        json={"network": tron, "url": "https://api.trongrid.io", "api_key": secret},
    )
    assert created.status_code == 201, created.text
    assert created.json()["has_api_key"] is True and secret not in created.text
    endpoint_id = created.json()["id"]
    listed = await client.get(f"{BO}/rpc-endpoints?network={tron}", headers=admin)
    assert secret not in listed.text
    refused = await client.post(
        f"{BO}/rpc-endpoints",
        headers=admin,
        json={"network": evm, "url": "https://rpc.example.com", "api_key": secret},
    )
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "rpc_api_key_unused"
    bad = await client.patch(
        f"{BO}/rpc-endpoints/{endpoint_id}", headers=admin, json={"api_key": "has space 123"}
    )
    assert bad.status_code == 422 and "has space" not in bad.text
    removed = await client.patch(
        f"{BO}/rpc-endpoints/{endpoint_id}", headers=admin, json={"api_key": None}
    )
    assert removed.status_code == 200 and removed.json()["has_api_key"] is False
    async with database.engine.connect() as conn:
        audit = await conn.scalar(
            text(
                "SELECT string_agg(coalesce(detail::text, '') || coalesce(after::text, ''), ' ')"
                " FROM audit_logs WHERE target_id = :i"
            ),
            {"i": endpoint_id},
        )
    assert secret not in audit and "api_key_set" in audit
