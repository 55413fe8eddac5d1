"""Privy server wallets: one wallet per invoice and chain family, created with
`POST {PRIVY_API}/v1/wallets` (Basic auth app id:secret, `privy-app-id`).

Wallets are reserved before invoice creation's single statement, with no transaction open and
no connection held (`reserve`). `privy-idempotency-key` makes a retry get the wallet Privy
already made instead of a second one (Privy keeps a key 24 hours): for a request with an
Idempotency-Key it is derived from (merchant, that key, chain family), so the merchant's retry
of a failed request, and a concurrent duplicate, get the same wallet; without one it is
`<invoice_id>:<chain_family>`, which covers our own retries of one request. 409 (a duplicate
still in progress at Privy), 429, 5xx and transport errors are retried twice with backoff;
anything else, or a third failure, is a 503 (`wallet_provider_unavailable`). The app secret
never appears in a message or a log line.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import structlog
from bip_utils import TrxAddrDecoder

from nespay.config import Settings
from nespay.kit.ids import new_id
from nespay.wallets.provider import (
    AddressRequest,
    ReservedAddress,
    WalletNotConfigured,
    WalletProviderUnavailable,
    require_chain_family,
)

if TYPE_CHECKING:
    from nespay.db import Database

log = structlog.get_logger("nespay.wallets.privy")

CHAIN_TYPES = {"evm": "ethereum", "tron": "tron"}
TIMEOUT_S = 10.0
RETRY_DELAYS_S = (0.25, 1.0)  # two retries
MAX_RETRY_AFTER_S = 2.0  # a longer Retry-After is not worth holding an invoice creation for
_EVM_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def check_privy_configuration(settings: Settings) -> str | None:
    missing = [
        name
        for name, value in (
            ("PRIVY_APP_ID", settings.privy_app_id),
            ("PRIVY_APP_SECRET", settings.privy_app_secret),
        )
        if not value
    ]
    if missing:
        return (
            f"{' and '.join(missing)} not set: WALLET_PROVIDER=privy cannot create deposit wallets"
        )
    parts = urlsplit(settings.privy_api)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return "PRIVY_API: expected a URL such as https://api.privy.io"
    if parts.scheme != "https" and not settings.is_development:
        return f"PRIVY_API: expected https when APP_ENV={settings.app_env} (the app secret is sent)"
    return None


def wallet_idempotency_key(request: AddressRequest, chain_family: str) -> str:
    """Privy's idempotency key for one deposit wallet (see the module docstring). A digest, so
    the merchant's key is not sent to Privy and any key fits Privy's 256 characters."""
    if request.idempotency_key is None:
        return f"{request.invoice_id}:{chain_family}"
    # "\n" is in neither an id nor an Idempotency-Key: the parts cannot run into each other.
    material = f"{request.merchant_id}\n{request.idempotency_key}\n{chain_family}".encode()
    return "idem-" + hashlib.sha256(material).hexdigest()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class PrivyWalletProvider:
    """Deposit addresses from Privy server wallets; see the module docstring."""

    name = "privy"
    calls_out = True

    def __init__(
        self,
        settings: Settings,
        *,
        http: httpx.AsyncClient | None = None,
        retry_delays: tuple[float, ...] = RETRY_DELAYS_S,
    ) -> None:
        self._settings = settings
        self._url = settings.privy_api.rstrip("/") + "/v1/wallets"
        self._http = http or httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False)
        self._retry_delays = retry_delays

    def _headers(self, idempotency_key: str) -> dict[str, str]:
        app_id = self._settings.privy_app_id
        secret = self._settings.privy_app_secret
        if not app_id or secret is None or not secret.get_secret_value():
            raise WalletNotConfigured(
                "PRIVY_APP_ID and PRIVY_APP_SECRET must be set when WALLET_PROVIDER=privy."
            )
        basic = base64.b64encode(f"{app_id}:{secret.get_secret_value()}".encode()).decode()
        return {
            "Authorization": f"Basic {basic}",
            "privy-app-id": app_id,
            "privy-idempotency-key": idempotency_key,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    async def create_wallet(self, chain_family: str, idempotency_key: str) -> tuple[str, str]:
        """(wallet id, address) of a new — or, for a repeated key, the same — Privy wallet."""
        chain_type = CHAIN_TYPES[require_chain_family(chain_family)]
        headers = self._headers(idempotency_key)
        body = {"chain_type": chain_type}
        attempts = len(self._retry_delays) + 1
        failure = ""
        for attempt in range(attempts):
            retry_after: float | None = None
            try:
                response = await self._http.post(self._url, json=body, headers=headers)
            except httpx.HTTPError as error:
                failure = f"{type(error).__name__} reaching {urlsplit(self._url).netloc}"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return self._parse(response, chain_family)
                if status in (401, 403):
                    log.error("privy_auth_refused", status=status)
                    raise WalletProviderUnavailable(
                        f"Privy refused our credentials (HTTP {status}); check PRIVY_APP_ID and "
                        "PRIVY_APP_SECRET."
                    )
                if status not in (409, 429) and status < 500:
                    log.error("privy_request_rejected", status=status, body=response.text[:500])
                    raise WalletProviderUnavailable(
                        f"Privy rejected the wallet request (HTTP {status})."
                    )
                failure = f"HTTP {status}"
                retry_after = _retry_after(response) if status == 429 else None
            if attempt + 1 < attempts:
                delay = self._retry_delays[attempt]
                if retry_after is not None:
                    delay = max(delay, min(retry_after, MAX_RETRY_AFTER_S))
                log.warning(
                    "privy_retry", attempt=attempt + 1, failure=failure, delay_s=round(delay, 3)
                )
                await asyncio.sleep(delay)
        log.error("privy_unavailable", attempts=attempts, failure=failure)
        raise WalletProviderUnavailable(
            f"Privy did not create a wallet after {attempts} attempts ({failure}); "
            "try again shortly."
        )

    @staticmethod
    def _parse(response: httpx.Response, chain_family: str) -> tuple[str, str]:
        try:
            data = response.json()
        except ValueError:
            data = None
        wallet_id = data.get("id") if isinstance(data, dict) else None
        address = data.get("address") if isinstance(data, dict) else None
        if isinstance(wallet_id, str) and 0 < len(wallet_id) <= 100 and isinstance(address, str):
            if chain_family == "evm" and _EVM_ADDRESS.fullmatch(address):
                return wallet_id, address.lower()
            if chain_family == "tron":
                try:
                    TrxAddrDecoder.DecodeAddr(address)
                except ValueError:
                    pass
                else:
                    return wallet_id, address
        log.error("privy_bad_answer", status=response.status_code, body=response.text[:500])
        raise WalletProviderUnavailable("Privy answered without a usable wallet id and address.")

    async def reserve(self, db: Database, request: AddressRequest) -> list[ReservedAddress]:
        """A Privy wallet per family; `db` is not used (nothing is held across the call)."""
        rows = []
        for family in request.chain_families:
            key = wallet_idempotency_key(request, family)
            wallet_id, address = await self.create_wallet(family, key)
            rows.append(ReservedAddress(new_id("dep"), family, address, self.name, None, wallet_id))
        return rows

    async def aclose(self) -> None:
        await self._http.aclose()
