"""Where callbacks may go, range by range: every special-purpose range is judged explicitly,
at registration (through the API) and at delivery (the aiohttp resolver and the IP-literal
check), with the verdict Python 3.11 gives (the project's Python)."""

import socket

import pytest
from sqlalchemy import text

from nespay.apps import api
from nespay.callbacks.sender import GuardedResolver, static_check
from nespay.callbacks.ssrf import CallbackUrlRefused, address_rule, check_callback_url
from tests.fixtures.app import app_client, unthrottled
from tests.fixtures.factories import merchant_with_key

# (address, refused, why): one line per range, both verdicts where a range embeds another.
TABLE = [
    # IPv4
    ("8.8.8.8", False, "public"),
    ("1.1.1.1", False, "public"),
    ("100.100.100.200", True, "Alibaba Cloud metadata"),
    ("100.64.0.1", True, "shared address space (CGNAT) 100.64.0.0/10"),
    ("100.127.255.254", True, "shared address space, its last address"),
    ("169.254.169.254", True, "AWS/GCP/Azure metadata"),
    ("169.254.170.2", True, "AWS ECS task credentials"),
    ("169.254.0.23", True, "Tencent Cloud metadata"),
    ("168.63.129.16", True, "Azure WireServer (a public-looking address)"),
    ("127.0.0.1", True, "loopback"),
    ("127.1.2.3", True, "loopback /8"),
    ("10.1.2.3", True, "private"),
    ("172.16.0.1", True, "private"),
    ("192.168.1.1", True, "private"),
    ("0.0.0.0", True, "unspecified"),
    ("0.1.2.3", True, "this network 0.0.0.0/8"),
    ("169.254.1.1", True, "link-local"),
    ("192.0.0.8", True, "IETF protocol assignments (3.11: global)"),
    ("192.0.0.192", True, "Oracle Cloud classic metadata"),
    ("192.0.2.1", True, "documentation TEST-NET-1"),
    ("198.51.100.1", True, "documentation TEST-NET-2"),
    ("203.0.113.1", True, "documentation TEST-NET-3"),
    ("198.18.0.1", True, "benchmarking"),
    ("192.88.99.1", True, "deprecated 6to4 relay anycast"),
    ("224.0.0.1", True, "multicast (3.11: global)"),
    ("239.255.255.250", True, "multicast (SSDP)"),
    ("240.0.0.1", True, "reserved"),
    ("255.255.255.255", True, "broadcast"),
    # IPv6
    ("2001:4860:4860::8888", False, "public"),
    ("2606:4700:4700::1111", False, "public"),
    ("::1", True, "loopback"),
    ("::", True, "unspecified"),
    ("fe80::1", True, "link-local"),
    ("fc00::1", True, "unique local"),
    ("fd00:ec2::254", True, "AWS IMDS over IPv6"),
    ("fd20:ce::254", True, "GCP metadata over IPv6"),
    ("fec0::1", True, "deprecated site-local (every version: global)"),
    ("ff02::1", True, "multicast (3.11: global)"),
    ("ff0e::1", True, "global-scope multicast"),
    ("2001:db8::1", True, "documentation"),
    ("3fff::1", True, "documentation (2024)"),
    ("100::1", True, "discard-only"),
    ("5f00::1", True, "SRv6 SIDs"),
    ("2001:20::1", True, "ORCHIDv2 (3.13: global; 2001::/23 refused on every version)"),
    ("::8.8.8.8", True, "deprecated IPv4-compatible (3.11: global)"),
    ("::127.0.0.1", True, "IPv4-compatible loopback"),
    # IPv4-mapped ::ffff:0:0/96: the IPv4 host itself
    ("::ffff:8.8.8.8", False, "mapped public"),
    ("::ffff:127.0.0.1", True, "mapped loopback"),
    ("::ffff:169.254.169.254", True, "mapped metadata"),
    ("::ffff:100.100.100.200", True, "mapped Alibaba metadata"),
    ("::ffff:100.64.0.1", True, "mapped CGNAT"),
    # 6to4 2002::/16 (3.11, 3.12: global)
    ("2002:808:808::1", True, "6to4 of a public address"),
    ("2002:a9fe:a9fe::1", True, "6to4 of metadata"),
    ("2002:7f00:1::1", True, "6to4 of loopback"),
    ("2002:6464:64c8::1", True, "6to4 of Alibaba metadata"),
    # Teredo 2001::/32: server (bits 32-63) and obfuscated client (last 32 bits)
    ("2001:0:808:808:0:0:f7f7:f7f7", True, "Teredo, public server and client"),
    ("2001:0:a9fe:a9fe:0:0:f7f7:f7f7", True, "Teredo, metadata server"),
    ("2001:0:808:808:0:0:5601:5601", True, "Teredo, metadata client"),
    # NAT64 well-known prefix 64:ff9b::/96: the IPv4 host it translates to
    ("64:ff9b::808:808", False, "NAT64 of a public address"),
    ("64:ff9b::a9fe:a9fe", True, "NAT64 of metadata"),
    ("64:ff9b::7f00:1", True, "NAT64 of loopback"),
    ("64:ff9b::a00:1", True, "NAT64 of private"),
    ("64:ff9b::6464:64c8", True, "NAT64 of Alibaba metadata"),
    ("64:ff9b:1::808:808", True, "local-use NAT64 (3.11, 3.12: global)"),
]
IDS = [f"{address} {why}" for address, _, why in TABLE]


def url_of(address: str) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}/hook"


@pytest.fixture(scope="module")
def strict(shared_settings):
    return shared_settings.model_copy(update={"callback_allow_private_urls": False})


@pytest.fixture(scope="module")
async def strict_client(strict):
    async with app_client(api.create_app, unthrottled(strict)) as (_, client):
        yield client


@pytest.fixture(scope="module")
async def owner(shared_database):
    return await merchant_with_key(shared_database)


async def endpoints_of(database, merchant_id: str, url: str) -> int:
    async with database.engine.connect() as conn:
        return await conn.scalar(
            text("SELECT count(*) FROM webhook_endpoints WHERE merchant_id = :m AND url = :u"),
            {"m": merchant_id, "u": url},
        )


@pytest.mark.parametrize(("address", "refused", "why"), TABLE, ids=IDS)
async def test_registration_through_the_api_judges_each_range(
    strict_client, owner, database, address, refused, why
):
    url = url_of(address)
    response = await strict_client.post(
        "/api/v1/webhook-endpoints",
        headers=owner.headers,
        json={"url": url, "events": ["invoice.paid"]},
    )
    if refused:
        assert response.status_code == 422, (why, response.text)
        assert response.json()["error"]["code"] == "callback_url_refused"
        assert await endpoints_of(database, owner.merchant_id, url) == 0
    else:
        assert response.status_code == 201, (why, response.text)


@pytest.mark.parametrize(("address", "refused", "why"), TABLE, ids=IDS)
async def test_delivery_judges_each_range_in_the_resolver_and_for_literals(
    strict, address, refused, why
):
    resolver = GuardedResolver(address_rule(strict))
    try:
        if refused:
            with pytest.raises(CallbackUrlRefused):
                await resolver.resolve(address, 80, socket.AF_UNSPEC)
            with pytest.raises(CallbackUrlRefused):
                static_check(url_of(address), strict)
        else:
            results = await resolver.resolve(address, 80, socket.AF_UNSPEC)
            assert [result["host"] for result in results] == [address]
            static_check(url_of(address), strict)
    finally:
        await resolver.close()


METADATA = ["169.254.169.254", "100.100.100.200", "fd00:ec2::254", "169.254.170.2",
            "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1"]  # fmt: skip


@pytest.mark.parametrize("address", METADATA)
async def test_metadata_addresses_stay_refused_when_private_urls_are_allowed(settings, address):
    assert settings.callback_allow_private_urls
    with pytest.raises(CallbackUrlRefused, match="metadata"):
        await check_callback_url(url_of(address), settings)
    resolver = GuardedResolver(address_rule(settings))
    try:
        with pytest.raises(CallbackUrlRefused):
            await resolver.resolve(address, 80, socket.AF_UNSPEC)
    finally:
        await resolver.close()
    with pytest.raises(CallbackUrlRefused):
        static_check(url_of(address), settings)


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "10.1.2.3", "100.64.0.1"])
async def test_loopback_and_private_are_allowed_only_with_the_setting(settings, strict, address):
    url = url_of(address)
    assert await check_callback_url(url, settings) == url
    static_check(url, settings)
    with pytest.raises(CallbackUrlRefused):
        await check_callback_url(url, strict)
