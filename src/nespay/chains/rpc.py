"""Talking to nodes: raw JSON-RPC over httpx (EVM) and Tron's HTTP API.

Probes answer "is this endpoint usable for this network": it answers, on the right chain, with
a head block. The scanner's failover client (issue #4) builds on the same calls.
"""

from __future__ import annotations

import time

import httpx

from nespay.chains.repository import EndpointProbeTarget, ProbeResult


class RpcError(Exception):
    pass


def _rpc(method: str, request_id: int) -> dict[str, object]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": []}


async def _probe_evm(client: httpx.AsyncClient, target: EndpointProbeTarget) -> int:
    response = await client.post(
        target.url, json=[_rpc("eth_chainId", 1), _rpc("eth_blockNumber", 2)]
    )
    if response.status_code == 429:
        raise RpcError("rate limited (HTTP 429)")
    response.raise_for_status()
    try:
        answers = {item["id"]: item for item in response.json()}
        chain_id = int(answers[1]["result"], 16)
        head = int(answers[2]["result"], 16)
    except (ValueError, KeyError, TypeError) as error:
        raise RpcError(f"malformed JSON-RPC answer ({type(error).__name__})") from None
    if target.chain_id is not None and chain_id != target.chain_id:
        raise RpcError(f"wrong chain: chain id {chain_id}, expected {target.chain_id}")
    return head


async def _probe_tron(client: httpx.AsyncClient, target: EndpointProbeTarget) -> int:
    headers = {"TRON-PRO-API-KEY": target.api_key} if target.api_key else {}
    response = await client.post(
        target.url.rstrip("/") + "/wallet/getnowblock", json={}, headers=headers
    )
    if response.status_code == 429:
        raise RpcError("rate limited (HTTP 429)")
    response.raise_for_status()
    try:
        return int(response.json()["block_header"]["raw_data"].get("number", 0))
    except (ValueError, KeyError, TypeError) as error:
        raise RpcError(f"malformed Tron answer ({type(error).__name__})") from None


async def probe(client: httpx.AsyncClient, target: EndpointProbeTarget) -> ProbeResult:
    started = time.perf_counter()
    check = _probe_tron if target.chain_family == "tron" else _probe_evm
    try:
        head = await check(client, target)
    except RpcError as error:
        return ProbeResult(False, _elapsed_ms(started), error=str(error))
    except httpx.HTTPStatusError as error:
        return ProbeResult(False, _elapsed_ms(started), error=f"HTTP {error.response.status_code}")
    except httpx.HTTPError as error:
        return ProbeResult(
            False, _elapsed_ms(started), error=f"unreachable ({type(error).__name__})"
        )
    return ProbeResult(True, _elapsed_ms(started), head_block=head)


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
