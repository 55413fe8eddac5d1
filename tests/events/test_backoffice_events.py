"""The backoffice's view of the event log: every merchant's events, their deliveries and
redelivery, for the admin and support groups only; a redelivery is audited as the admin's.
(The api app serves both sides, so merchants' endpoints are registered through it too.)"""

import pytest
from sqlalchemy import text

from nespay.apps import api
from tests.fixtures.app import app_client, unthrottled
from tests.fixtures.callbacks import add_delivery, emit_event, register, woken_app
from tests.fixtures.cognito import LOCAL_ADMIN_CLIENT, LOCAL_ADMIN_POOL, REGION
from tests.fixtures.database import make_settings
from tests.fixtures.factories import merchant_with_key

BO = "/api/backoffice/v1"


@pytest.fixture
def backoffice_settings(database_url, local_issuer):
    return make_settings(
        database_url,
        aws_region=REGION,
        cognito_admin_pool_id=LOCAL_ADMIN_POOL,
        cognito_admin_client_id=LOCAL_ADMIN_CLIENT,
        cognito_endpoint_url=local_issuer.endpoint_url,
    )


@pytest.fixture
async def client(backoffice_settings):
    async with app_client(api.create_app, unthrottled(backoffice_settings)) as (_, client):
        yield client


@pytest.fixture
async def woken_client(backoffice_settings, wake_ups):
    async with woken_app(backoffice_settings, wake_ups) as client:
        yield client


@pytest.fixture
def admin(local_issuer):
    """Headers of an admin-pool token in `group`."""

    def headers(group="support", sub="a1b2c3d4-0000-4000-8000-000000000001"):
        claims = local_issuer.claims("admin", sub=sub, **{"cognito:groups": [group]})
        return {"authorization": f"Bearer {local_issuer.mint(claims)}"}

    return headers


async def test_support_lists_every_merchants_events_and_filters_them(client, database, admin):
    one, two = await merchant_with_key(database), await merchant_with_key(database)
    mine = await emit_event(database, one.merchant_id, "invoice.paid", "inv_shared")
    theirs = await emit_event(database, two.merchant_id, "invoice.expired", "inv_other")
    everything = await client.get(f"{BO}/events", headers=admin(), params={"limit": 100})
    assert everything.status_code == 200, everything.text
    assert {mine, theirs} <= {e["id"] for e in everything.json()["data"]}
    by_merchant = await client.get(
        f"{BO}/events", headers=admin(), params={"merchant_id": two.merchant_id}
    )
    assert [e["id"] for e in by_merchant.json()["data"]] == [theirs]
    assert by_merchant.json()["data"][0]["merchant_id"] == two.merchant_id
    assert by_merchant.json()["data"][0]["published_at"] is None
    filtered = await client.get(
        f"{BO}/events", headers=admin(), params={"type": "invoice.paid", "subject_id": "inv_shared"}
    )
    assert [e["id"] for e in filtered.json()["data"]] == [mine]


async def test_an_admin_reads_any_event_and_its_deliveries(client, database, admin):
    owner = await merchant_with_key(database)
    endpoint = await register(client, owner)
    event_id = await emit_event(database, owner.merchant_id)
    await add_delivery(database, event_id, endpoint["id"], status="failed", attempts=[500])
    event = await client.get(f"{BO}/events/{event_id}", headers=admin("admin"))
    assert event.status_code == 200, event.text
    assert event.json()["merchant_id"] == owner.merchant_id
    assert event.json()["deliveries"] == {"total": 1, "pending": 0, "succeeded": 0, "failed": 1}
    deliveries = await client.get(f"{BO}/events/{event_id}/deliveries", headers=admin("admin"))
    [delivery] = deliveries.json()["data"]
    assert delivery["endpoint_id"] == endpoint["id"] and delivery["status"] == "failed"
    assert delivery["attempt_log"][0]["status_code"] == 500


async def test_support_redelivers_and_the_redelivery_is_audited_as_theirs(
    woken_client, database, admin, wake_ups
):
    owner = await merchant_with_key(database)
    endpoint = await register(woken_client, owner, events=["*"])
    event_id = await emit_event(database, owner.merchant_id)
    sub = "a1b2c3d4-0000-4000-8000-00000000beef"
    response = await woken_client.post(f"{BO}/events/{event_id}/redeliver", headers=admin(sub=sub))
    assert response.status_code == 202, response.text
    [delivery] = response.json()["data"]
    assert delivery["endpoint_id"] == endpoint["id"] and delivery["status"] == "pending"
    assert await wake_ups.taken() == [[delivery["id"]]]
    async with database.engine.connect() as conn:
        entry = (
            await conn.execute(
                text(
                    "SELECT * FROM audit_logs WHERE action = 'event.redelivered' AND target_id = :e"
                ),
                {"e": event_id},
            )
        ).one()
    assert (entry.actor_type, entry.actor_id) == ("admin", sub)
    assert entry.merchant_id == owner.merchant_id


async def test_backoffice_redelivery_to_an_endpoint_of_another_merchant_is_404(
    client, database, admin
):
    owner, other = await merchant_with_key(database), await merchant_with_key(database)
    foreign = await register(client, other, events=["*"])
    event_id = await emit_event(database, owner.merchant_id)
    response = await client.post(
        f"{BO}/events/{event_id}/redeliver", headers=admin(), json={"endpoint_id": foreign["id"]}
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "webhook_endpoint_not_found"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/events"),
        ("GET", "/events/{id}"),
        ("GET", "/events/{id}/deliveries"),
        ("POST", "/events/{id}/redeliver"),
    ],
)
async def test_finance_and_merchant_keys_are_refused(client, database, admin, method, path):
    owner = await merchant_with_key(database)
    url = BO + path.replace("{id}", await emit_event(database, owner.merchant_id))
    finance = await client.request(method, url, headers=admin("finance"))
    assert finance.status_code == 403
    assert finance.json()["error"]["code"] == "admin_role_missing"
    merchant = await client.request(method, url, headers=owner.headers)
    assert merchant.status_code == 401


async def test_an_unknown_event_is_404_in_the_backoffice(client, admin):
    for path in ("/events/evt_unknown", "/events/evt_unknown/deliveries"):
        response = await client.get(BO + path, headers=admin())
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "event_not_found"
    response = await client.post(f"{BO}/events/evt_unknown/redeliver", headers=admin())
    assert response.status_code == 404
