"""JSON-RPC over httpx with failover: endpoints are tried in priority order; one that fails
(transport error, 5xx, 429, a JSON-RPC error, an answer that does not parse) is backed off
exponentially (429 honours `Retry-After`) and the next one is asked. Raw JSON-RPC, because
this is the scanner's hot path.

With an `identity` set (chain id, genesis hash), every endpoint is checked against it before
its first use: one that serves another chain (a wrong URL, a testnet behind a mainnet network,
a fresh local node) is never used, and says so."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import orjson
import structlog

from nespay.kit.urls import mask_urls_in

log = structlog.get_logger("nespay.rpc")
BASE_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
WRONG_CHAIN_BACKOFF_S = 300.0  # then it is checked again (an operator may have fixed it)


class RpcError(Exception):
    """Every endpoint failed (or none is configured); the message never holds a URL."""


@dataclass(frozen=True)
class Endpoint:
    id: str
    url: str
    priority: int
    api_key: str | None = field(default=None, repr=False)  # sent as the family's key header


@dataclass(frozen=True)
class ChainIdentity:
    chain_id: int | None  # None: not checked
    genesis: str | None  # block 0's hash; None: not checked


_IDENTIFY = orjson.dumps(
    [
        {"jsonrpc": "2.0", "id": 0, "method": "eth_chainId", "params": []},
        {"jsonrpc": "2.0", "id": 1, "method": "eth_getBlockByNumber", "params": ["0x0", False]},
    ]
)


@dataclass
class _Health:
    failures: int = 0
    until: float = 0.0


T = TypeVar("T")


@dataclass
class FailoverClient:
    """What every chain family's client shares: endpoints in priority order, each backed off
    when it fails and checked against the chain's identity before its first use. A family's
    client says how to ask one endpoint (`_attempt`) and what chain it serves
    (`_identity_of`)."""

    http: httpx.AsyncClient
    endpoints: list[Endpoint]
    health: dict[str, _Health] = field(default_factory=dict)
    identity: ChainIdentity | None = None
    # Endpoints checked against `identity` (by id and URL: an edited URL is checked again).
    verified: set[tuple[str, str]] = field(default_factory=set)
    last_endpoint: str | None = None  # the id of the endpoint that gave the last answer

    def set_endpoints(self, endpoints: list[Endpoint]) -> None:
        self.endpoints = sorted(endpoints, key=lambda e: (e.priority, e.id))

    def expect(self, identity: ChainIdentity) -> None:
        if identity != self.identity:
            self.identity = identity
            self.verified.clear()

    def _candidates(self, avoid: str | None) -> list[Endpoint]:
        now = time.monotonic()
        ready = [e for e in self.endpoints if self.health.get(e.id, _Health()).until <= now]
        # All backed off: try the one that comes back soonest rather than nobody.
        ready = ready or sorted(self.endpoints, key=lambda e: self.health[e.id].until)[:1]
        return sorted(ready, key=lambda e: e.id == avoid)  # stable: priority order otherwise

    def demote(self, endpoint_id: str) -> None:
        """An endpoint whose answer was wrong though well formed (e.g. logs missing): backed
        off like a failing one, so the next calls go to another."""
        endpoint = next((e for e in self.endpoints if e.id == endpoint_id), None)
        if endpoint is not None:
            self._fail(endpoint, None)

    async def _failover(
        self, attempt: Callable[[Endpoint], Awaitable[T]], avoid: str | None = None
    ) -> T:
        """`attempt` on each usable endpoint in turn until one answers; RpcError when none
        does (the last failure's message, never a URL)."""
        if not self.endpoints:
            raise RpcError("no enabled RPC endpoint for this network")
        last = "no endpoint answered"
        for endpoint in self._candidates(avoid):
            try:
                await self._verify(endpoint)
                result = await attempt(endpoint)
            except EndpointFailed as failure:
                self._fail(endpoint, failure.retry_after)
                last = str(failure)
                continue
            self.health.pop(endpoint.id, None)
            self.last_endpoint = endpoint.id
            return result
        raise RpcError(last)

    async def _identity_of(self, endpoint: Endpoint) -> tuple[int, str]:
        raise NotImplementedError

    async def _verify(self, endpoint: Endpoint) -> None:
        identity = self.identity
        if identity is None or (endpoint.id, endpoint.url) in self.verified:
            return
        chain_id, genesis_hash = await self._identity_of(endpoint)
        if identity.chain_id is not None and chain_id != identity.chain_id:
            raise EndpointFailed(
                f"{endpoint.id} serves chain id {chain_id}, not the network's "
                f"{identity.chain_id}: check the network's RPC endpoints",
                WRONG_CHAIN_BACKOFF_S,
            )
        if identity.genesis is not None and genesis_hash != identity.genesis:
            raise EndpointFailed(
                f"{endpoint.id} serves another chain than the one scanned here (block 0 is "
                f"{genesis_hash[:12]}…, not {identity.genesis[:12]}…): check the network's RPC "
                "endpoints, or, if the chain was replaced on purpose, run "
                "`nespay networks reset-cursor <network>`",
                WRONG_CHAIN_BACKOFF_S,
            )
        self.verified.add((endpoint.id, endpoint.url))

    def _fail(self, endpoint: Endpoint, retry_after: float | None) -> None:
        state = self.health.setdefault(endpoint.id, _Health())
        state.failures += 1
        backoff = retry_after or min(MAX_BACKOFF_S, BASE_BACKOFF_S * 2 ** (state.failures - 1))
        state.until = time.monotonic() + backoff
        log.warning("rpc_endpoint_failed", endpoint_id=endpoint.id, backoff_s=round(backoff, 1))


@dataclass
class RpcClient(FailoverClient):
    """EVM JSON-RPC, batched."""

    async def call(self, method: str, params: list[Any]) -> Any:
        return (await self.batch([(method, params)]))[0]

    async def identify(self) -> tuple[int, str]:
        """(chain id, genesis hash) of the chain the endpoints serve (checked against
        `identity` as every call is)."""
        chain_id, genesis = await self.batch(
            [("eth_chainId", []), ("eth_getBlockByNumber", ["0x0", False])]
        )
        return int(chain_id, 16), genesis["hash"]

    async def batch(
        self, calls: list[tuple[str, list[Any]]], *, avoid: str | None = None
    ) -> list[Any]:
        """Results in order; raises RpcError when no endpoint gives a complete answer.
        `avoid`: an endpoint id to ask only if no other is available (a cross-check)."""
        body = orjson.dumps(
            [
                {"jsonrpc": "2.0", "id": i, "method": m, "params": p}
                for i, (m, p) in enumerate(calls)
            ]
        )
        return await self._failover(lambda endpoint: self._post(endpoint, body, len(calls)), avoid)

    async def call_answered(self, method: str, params: list[Any]) -> tuple[Any, str | None]:
        """(result, None), or (None, the node's JSON-RPC error message) when a healthy
        endpoint refused the call itself (e.g. `eth_sendRawTransaction`: "nonce too low"):
        such an answer is the call's, not the endpoint's fault, so it is neither failed
        over nor backed off. Transport failures fail over as `batch` does."""
        body = orjson.dumps([{"jsonrpc": "2.0", "id": 0, "method": method, "params": params}])
        answer = await self._failover(lambda endpoint: self._post_answer(endpoint, body))
        if "error" in answer:
            error = answer["error"]
            message = error.get("message", "error") if isinstance(error, dict) else error
            return None, mask_urls_in(str(message))[:500]
        return answer.get("result"), None

    async def _post_answer(self, endpoint: Endpoint, body: bytes) -> dict[str, Any]:
        try:
            response = await self.http.post(
                endpoint.url, content=body, headers={"content-type": "application/json"}
            )
        except httpx.HTTPError as error:
            raise EndpointFailed(f"{endpoint.id}: {type(error).__name__}") from None
        if response.status_code == 429:
            raise EndpointFailed(f"{endpoint.id}: rate limited", retry_after_s(response))
        if response.status_code >= 500:
            raise EndpointFailed(f"{endpoint.id}: HTTP {response.status_code}")
        try:
            answers = orjson.loads(response.content)
            answer = answers[0] if isinstance(answers, list) else answers
            if not isinstance(answer, dict) or ("result" not in answer and "error" not in answer):
                raise TypeError
        except (orjson.JSONDecodeError, IndexError, TypeError, KeyError):
            raise EndpointFailed(f"{endpoint.id}: malformed JSON-RPC answer") from None
        return answer

    async def _identity_of(self, endpoint: Endpoint) -> tuple[int, str]:
        chain_hex, genesis = await self._post(endpoint, _IDENTIFY, 2)
        try:
            return int(chain_hex, 16), genesis["hash"]
        except (TypeError, ValueError, KeyError):
            raise EndpointFailed(f"{endpoint.id}: malformed JSON-RPC answer") from None

    async def _post(self, endpoint: Endpoint, body: bytes, count: int) -> list[Any]:
        try:
            response = await self.http.post(
                endpoint.url, content=body, headers={"content-type": "application/json"}
            )
        except httpx.HTTPError as error:
            raise EndpointFailed(f"{endpoint.id}: {type(error).__name__}") from None
        if response.status_code == 429:
            raise EndpointFailed(f"{endpoint.id}: rate limited", retry_after_s(response))
        if response.status_code >= 400:
            raise EndpointFailed(f"{endpoint.id}: HTTP {response.status_code}")
        return _results(endpoint, response.content, count)


class EndpointFailed(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.replace(".", "", 1).isdigit() else None


def _results(endpoint: Endpoint, content: bytes, count: int) -> list[Any]:
    try:
        answers = orjson.loads(content)
        if isinstance(answers, dict):
            answers = [answers]
        by_id = {answer["id"]: answer for answer in answers}
        results = []
        for i in range(count):
            answer = by_id[i]
            if "error" in answer:
                message = mask_urls_in(str(answer["error"].get("message", "error")))[:200]
                raise EndpointFailed(f"{endpoint.id}: JSON-RPC error: {message}")
            results.append(answer["result"])
        return results
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise EndpointFailed(f"{endpoint.id}: malformed JSON-RPC answer") from None
