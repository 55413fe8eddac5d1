"""Privy as a hot wallet's signer: `POST {PRIVY_API}/v1/wallets/{wallet_id}/rpc` with
`eth_sendTransaction`, which signs AND broadcasts; we get the hash, never the raw bytes.

Body (docs.privy.io, api-reference/wallets/ethereum/eth-send-transaction)::

    {"method": "eth_sendTransaction", "caip2": "eip155:<chain id>", "chain_type": "ethereum",
     "params": {"transaction": {"to", "value", "data", "chain_id", "nonce", "gas_limit",
                                "max_fee_per_gas", "max_priority_fee_per_gas", "type": 2}}}

answered `{"method": "eth_sendTransaction", "data": {"hash", "caip2", …}}`. Basic auth
app id:secret and `privy-app-id`, as for wallet creation. We pass the nonce, gas and fees
ourselves (our nonce sequence, our replacement rules); `privy-idempotency-key` is
`<outgoing tx id>:<candidate number>`, so asking again after a crash (or a lost answer) gets
the same transaction instead of a second one — within Privy's 24 hours.
"""

from __future__ import annotations

import base64
import re

import httpx
import structlog

from nespay.config import Settings
from nespay.wallets.evmtx import Call, Fees

log = structlog.get_logger("nespay.wallets.privy")
_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
TIMEOUT_S = 20.0


class PrivySendFailed(Exception):
    """Privy did not send: `retry` says whether asking again (same key) may work."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


class PrivySender:
    def __init__(self, settings: Settings, http: httpx.AsyncClient | None = None) -> None:
        self._settings = settings
        self._http = http or httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False)

    def _headers(self, idempotency_key: str) -> dict[str, str]:
        app_id = self._settings.privy_app_id
        secret = self._settings.privy_app_secret
        if not app_id or secret is None or not secret.get_secret_value():
            raise PrivySendFailed(
                "PRIVY_APP_ID and PRIVY_APP_SECRET must be set for a privy hot wallet", retry=True
            )
        basic = base64.b64encode(f"{app_id}:{secret.get_secret_value()}".encode()).decode()
        return {
            "Authorization": f"Basic {basic}",
            "privy-app-id": app_id,
            "privy-idempotency-key": idempotency_key,
            "Content-Type": "application/json",
        }

    async def send(
        self,
        wallet_id: str,
        *,
        chain_id: int,
        call: Call,
        nonce: int,
        gas: int,
        fees: Fees,
        idempotency_key: str,
    ) -> str:
        """The hash of the transaction Privy signed and broadcast."""
        caip2 = f"eip155:{chain_id}"
        body = {
            "method": "eth_sendTransaction",
            "caip2": caip2,
            "chain_type": "ethereum",
            "params": {
                "transaction": {
                    "to": call.to,
                    "value": hex(call.value),
                    "data": call.data,
                    "chain_id": chain_id,
                    "nonce": nonce,
                    "gas_limit": gas,
                    "max_fee_per_gas": hex(fees.max_fee_per_gas),
                    "max_priority_fee_per_gas": hex(fees.max_priority_fee_per_gas),
                    "type": 2,
                }
            },
        }
        url = f"{self._settings.privy_api.rstrip('/')}/v1/wallets/{wallet_id}/rpc"
        try:
            response = await self._http.post(url, json=body, headers=self._headers(idempotency_key))
        except httpx.HTTPError as error:
            raise PrivySendFailed(
                f"Privy unreachable ({type(error).__name__})", retry=True
            ) from None
        status = response.status_code
        if status in (409, 429) or status >= 500:
            raise PrivySendFailed(f"Privy answered HTTP {status}", retry=True)
        if status >= 400:
            log.error("privy_send_rejected", status=status, body=response.text[:500])
            raise PrivySendFailed(
                f"Privy refused the transaction (HTTP {status}): {response.text[:200]}",
                retry=status in (401, 403),
            )
        try:
            answer = response.json()
            tx_hash = answer["data"]["hash"]
        except (ValueError, KeyError, TypeError):
            tx_hash = None
        if not isinstance(tx_hash, str) or not _HASH.fullmatch(tx_hash):
            raise PrivySendFailed("Privy answered without a transaction hash", retry=True)
        return tx_hash.lower()

    async def aclose(self) -> None:
        await self._http.aclose()
