"""Where a callback may go: never to private, loopback, link-local, reserved or cloud-metadata
addresses (unless `CALLBACK_ALLOW_PRIVATE_URLS`, for development and tests), and only https
in production. Checked when an endpoint is registered and again at delivery."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import SplitResult, urlsplit

from nespay.config import Settings
from nespay.errors import NespayError

METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data"})


class CallbackUrlRefused(NespayError):
    status_code = 422
    code = "callback_url_refused"
    message = "The callback URL is not allowed."


def forbidden_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def any_forbidden(addresses: Iterable[str]) -> bool:
    """Whether one of these textual addresses (scope ids allowed) may not receive callbacks."""
    return any(forbidden_address(ipaddress.ip_address(a.split("%")[0])) for a in addresses)


def check_form(url: str, settings: Settings) -> SplitResult:
    """What is checked without DNS, at registration and at every delivery: an absolute
    http(s) URL without credentials, https in production."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise CallbackUrlRefused("The callback URL must be an absolute http(s) URL.")
    if parts.username or parts.password:
        raise CallbackUrlRefused("The callback URL must not carry credentials.")
    if settings.app_env == "production" and parts.scheme != "https":
        raise CallbackUrlRefused("Callback URLs must use https.")
    return parts


async def resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return sorted({info[4][0] for info in infos})


async def check_callback_url(url: str, settings: Settings) -> str:
    """The URL, normalised, if a callback may be sent there; else `CallbackUrlRefused`."""
    parts = check_form(url, settings)
    if settings.callback_allow_private_urls:
        return url
    host = (parts.hostname or "").lower().rstrip(".")
    if host in METADATA_HOSTS:
        raise CallbackUrlRefused("The callback URL points at a cloud metadata service.")
    try:
        addresses = await resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
    except (OSError, UnicodeError):
        raise CallbackUrlRefused("The callback URL's host does not resolve.") from None
    if not addresses or any_forbidden(addresses):
        raise CallbackUrlRefused(
            "The callback URL resolves to a private, loopback, link-local or reserved address."
        )
    return url
