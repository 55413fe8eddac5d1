"""Rate limits per API key and per client IP, with Retry-After; X-Forwarded-For believed only
from trusted proxies."""

from nespay.apps import api
from tests.fixtures.app import app_client
from tests.fixtures.factories import merchant_with_key


async def test_per_key_limit_answers_429_with_retry_after(settings, database):
    limited = settings.model_copy(update={"rate_limit_key": "default=3/60"})
    owner = await merchant_with_key(database)
    other = await merchant_with_key(database)
    async with app_client(api.create_app, limited) as (_, client):
        codes = [
            (await client.get("/api/v1/merchants/me", headers=owner.headers)).status_code
            for _ in range(4)
        ]
        refused = await client.get("/api/v1/merchants/me", headers=owner.headers)
        unaffected = await client.get("/api/v1/merchants/me", headers=other.headers)
    assert codes == [200, 200, 200, 429]
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert unaffected.status_code == 200


async def test_per_ip_limit_counts_the_forwarded_client_only_behind_a_trusted_proxy(
    settings, database
):
    owner = await merchant_with_key(database)
    trusting = settings.model_copy(
        update={"rate_limit_ip": "default=2/60", "trusted_proxies": ["127.0.0.1/32"]}
    )
    async with app_client(api.create_app, trusting) as (_, client):
        first = [
            (
                await client.get(
                    "/api/v1/merchants/me",
                    headers={**owner.headers, "x-forwarded-for": "198.51.100.1"},
                )
            ).status_code
            for _ in range(3)
        ]
        second_client = await client.get(
            "/api/v1/merchants/me", headers={**owner.headers, "x-forwarded-for": "198.51.100.2"}
        )
    assert first == [200, 200, 429]
    assert second_client.status_code == 200


async def test_forwarded_header_from_an_untrusted_peer_is_ignored(settings, database):
    owner = await merchant_with_key(database)
    untrusting = settings.model_copy(
        update={"rate_limit_ip": "default=2/60", "trusted_proxies": ["10.0.0.0/8"]}
    )
    async with app_client(api.create_app, untrusting) as (_, client):
        codes = [
            (
                await client.get(
                    "/api/v1/merchants/me",
                    headers={**owner.headers, "x-forwarded-for": f"198.51.100.{n}"},
                )
            ).status_code
            for n in range(3)
        ]
    # Spoofed X-Forwarded-For values did not buy fresh buckets: all three counted as one peer.
    assert codes[-1] == 429


async def test_requests_without_credentials_still_count_against_the_ip(settings, database):
    limited = settings.model_copy(
        update={"rate_limit_ip": "default=2/60", "trusted_proxies": ["127.0.0.1/32"]}
    )
    alone = {"x-forwarded-for": "198.51.100.77"}  # a bucket no other test uses
    async with app_client(api.create_app, limited) as (_, client):
        codes = [
            (await client.get("/api/v1/merchants/me", headers=alone)).status_code for _ in range(3)
        ]
    assert codes == [401, 401, 429]
