"""Where a callback may go: only to globally reachable addresses (`ipaddress`'s `is_global`,
made to give the same answer on Python 3.11 to 3.13, see `forbidden_address`), never to a
cloud metadata service, and only over https in production. `CALLBACK_ALLOW_PRIVATE_URLS`
(development and tests) lifts the reachability rule, never the metadata one. Checked when an
endpoint is registered and again at delivery (`sender.GuardedResolver`)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterable
from urllib.parse import SplitResult, urlsplit

from nespay.config import Settings
from nespay.errors import NespayError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_net = ipaddress.ip_network

# Names and addresses of instance metadata services: instance credentials live there. Refused
# even with CALLBACK_ALLOW_PRIVATE_URLS (a development VM in a cloud has them too).
METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",  # GCP
        "metadata.goog",  # GCP
        "instance-data",  # AWS
        "instance-data.ec2.internal",  # AWS
        "metadata.tencentyun.com",  # Tencent Cloud
    }
)
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean, Hetzner, IBM
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "169.254.170.2",  # AWS ECS task metadata and credentials
        "169.254.170.23",  # AWS EKS Pod Identity agent
        "fd00:ec2::23",  # AWS EKS Pod Identity agent over IPv6
        "fd20:ce::254",  # GCP metadata over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "169.254.0.23",  # Tencent Cloud
        "192.0.0.192",  # Oracle Cloud (classic)
        "168.63.129.16",  # Azure WireServer: a public-looking address only the host answers
    )
)

# Not globally reachable by the IANA special-purpose registries, yet `is_global` on Python
# 3.11 (and some on 3.12/3.13) says they are, or versions disagree. Listed so the verdict is
# the same on every version (tests/callbacks/test_url_guard.py holds the table).
NOT_GLOBAL = tuple(
    _net(network)
    for network in (
        "192.0.0.0/24",  # IETF protocol assignments (3.11: partly global)
        "192.88.99.0/24",  # the deprecated 6to4 relay anycast
        "::/96",  # deprecated IPv4-compatible IPv6 (::a.b.c.d; 3.11: global)
        "64:ff9b:1::/48",  # local-use NAT64 (3.11, 3.12: global)
        "2001::/23",  # IETF protocol assignments, Teredo among them (3.13: partly global)
        "2002::/16",  # 6to4 (3.11, 3.12: global)
        "3fff::/20",  # documentation (2024; not yet known to 3.13.0)
        "5f00::/16",  # SRv6 SIDs
        "fec0::/10",  # deprecated site-local (every version: global)
    )
)
NAT64 = _net("64:ff9b::/96")  # well-known prefix: the IPv4 address in its last 32 bits


class CallbackUrlRefused(NespayError):
    status_code = 422
    code = "callback_url_refused"
    message = "The callback URL is not allowed."


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address leads to: IPv4-mapped, 6to4, Teredo (server and
    client) and NAT64 (well-known prefix)."""
    found = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    if address in NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [ipv4 for ipv4 in found if ipv4 is not None]


def is_metadata(address: IPAddress) -> bool:
    if address in METADATA_ADDRESSES:
        return True
    if isinstance(address, ipaddress.IPv6Address):
        return any(ipv4 in METADATA_ADDRESSES for ipv4 in embedded_ipv4(address))
    return False


def forbidden_address(address: IPAddress) -> bool:
    """Whether no callback may go to `address`: a metadata address, one that is not globally
    reachable, multicast (which 3.11's `is_global` lets through), or an IPv6 address that
    embeds a forbidden IPv4 one. An IPv4-mapped or NAT64 address is the IPv4 host it names,
    so it is judged as that host alone."""
    if address in METADATA_ADDRESSES:
        return True
    if isinstance(address, ipaddress.IPv6Address):
        embedded = embedded_ipv4(address)
        if any(forbidden_address(ipv4) for ipv4 in embedded):
            return True
        if address.ipv4_mapped is not None or address in NAT64:
            return False  # the embedded host was judged above, and allowed
    if address.is_multicast or any(address in network for network in NOT_GLOBAL):
        return True
    return not address.is_global


def _parse(text: str) -> IPAddress:
    return ipaddress.ip_address(text.split("%")[0])  # a scope id (fe80::1%eth0) is dropped


def any_forbidden(
    addresses: Iterable[str], rule: Callable[[IPAddress], bool] = forbidden_address
) -> bool:
    """Whether one of these textual addresses may not receive callbacks under `rule`."""
    return any(rule(_parse(address)) for address in addresses)


def address_rule(settings: Settings) -> Callable[[IPAddress], bool]:
    """What refuses an address: everything not globally reachable, or, with
    CALLBACK_ALLOW_PRIVATE_URLS, metadata services only."""
    return is_metadata if settings.callback_allow_private_urls else forbidden_address


def literal_address(host: str) -> IPAddress | None:
    try:
        return _parse(host)
    except ValueError:
        return None


def check_form(url: str, settings: Settings) -> SplitResult:
    """What is checked without DNS, at registration and at every delivery: an absolute
    http(s) URL without credentials, https in production, not a metadata service's name."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise CallbackUrlRefused("The callback URL must be an absolute http(s) URL.")
    if parts.username or parts.password:
        raise CallbackUrlRefused("The callback URL must not carry credentials.")
    if settings.app_env == "production" and parts.scheme != "https":
        raise CallbackUrlRefused("Callback URLs must use https.")
    if parts.hostname.rstrip(".") in METADATA_HOSTS:
        raise CallbackUrlRefused("The callback URL points at a cloud metadata service.")
    return parts


async def resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return sorted({info[4][0] for info in infos})


async def check_callback_url(url: str, settings: Settings) -> str:
    """The URL, normalised, if a callback may be sent there; else `CallbackUrlRefused`."""
    parts = check_form(url, settings)
    host = parts.hostname or ""
    literal = literal_address(host)
    if literal is not None and is_metadata(literal):
        raise CallbackUrlRefused("The callback URL points at a cloud metadata service.")
    if settings.callback_allow_private_urls:
        return url  # names are not resolved: delivery still refuses metadata addresses
    try:
        addresses = await resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
    except (OSError, UnicodeError):
        raise CallbackUrlRefused("The callback URL's host does not resolve.") from None
    if not addresses or any_forbidden(addresses):
        raise CallbackUrlRefused(
            "The callback URL resolves to a private, loopback, link-local, reserved or "
            "metadata address (callbacks go only to globally reachable ones)."
        )
    return url
