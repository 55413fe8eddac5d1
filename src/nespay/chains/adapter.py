"""One interface for a chain family (`ChainAdapter`): what the scanner, and later the senders,
ask of a chain — its head, its blocks, the transfers in them, and sending — with one
implementation per family (`nespay.chains.evm_adapter`, `nespay.chains.tron_adapter`).

The scanner (`nespay.chains.scanner`) is family-blind: the lease, the cursor, reorg walk-back,
the one-transaction commit and the retry loop are written once; an adapter turns its node's
answers into `BlockRef`s and `Transfer`s (addresses in the family's stored form, so matching
is one lookup whatever the family) and raises `ChainInconsistent` when the answers do not fit
together. Adapters never touch the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

import httpx

from nespay.chains.catalog import CatalogCurrency
from nespay.chains.rpcclient import Endpoint, FailoverClient
from nespay.payments.service import Transfer

if TYPE_CHECKING:
    from collections.abc import Sequence


class ChainInconsistent(Exception):
    """The node's answers do not fit together (a reorg under our feet); retry the step."""


@dataclass(frozen=True, slots=True)
class BlockRef:
    """A block as the scanner keeps it (the `chain_blocks` row)."""

    number: int
    hash: str
    parent_hash: str
    timestamp: int  # seconds


@dataclass(frozen=True, slots=True)
class Head:
    """What a poll of the chain says. `final`: the newest block that can no longer be replaced
    (Tron's solidified block); None where finality is counted in confirmations (EVM).
    `cursor_hash`: the hash of the block at the height asked about (None: the node has no
    block there), when `cursor_known` — an adapter that learns it only from the next block's
    parent hash says it does not know, and the scanner checks that parent hash instead."""

    number: int
    final: int | None = None
    cursor_hash: str | None = None
    cursor_known: bool = True


@dataclass
class Watch:
    """What a scanner reads on its network now."""

    code: str
    chain_id: int | None
    confirmations: int
    block_time_ms: int
    tokens: dict[str, CatalogCurrency]  # contract (stored form) → currency
    native: CatalogCurrency | None


class ChainAdapter(Protocol):
    """A chain family's node access; see the module docstring. `rpc` is its failover client
    (endpoints, backoff, identity checks)."""

    family: ClassVar[str]
    rpc: FailoverClient

    def set_endpoints(self, endpoints: list[Endpoint]) -> None: ...

    async def identify(self, chain_id: int | None, genesis: str | None) -> str:
        """Expect this chain (None: not checked yet) on every endpoint; returns the genesis
        hash the endpoints serve (a network scanned for the first time records it)."""
        ...

    async def head(self, cursor: int) -> Head:
        """The chain's head (and finality), and what the node has at height `cursor`."""
        ...

    async def blocks(self, numbers: Sequence[int]) -> list[BlockRef | None]:
        """The node's blocks at these heights (None where it has none), for the reorg walk."""
        ...

    async def transfers(
        self, first: int, last: int, watch: Watch
    ) -> tuple[list[BlockRef], list[Transfer]]:
        """Blocks `first`…`last` (checked to chain onto each other) and the transfers of the
        watched currencies in them. ChainInconsistent when a block is missing, the blocks do
        not chain, or an answer is garbled (never read past: it may hold a payment)."""
        ...

    def confirming_tip(self, head: Head, tip: int, confirmations: int) -> int:
        """The height confirmations are counted at, for a batch ending at `tip`: a payment is
        confirmed when `confirming_tip - block + 1 >= confirmations`."""
        ...

    async def send(self, signed: bytes | str) -> tuple[str | None, str | None]:
        """Broadcast a signed transaction: (its hash, None), or (None, the node's refusal).
        Withdrawals and consolidation on Tron (part 2 of the Tron issue) come through here."""
        ...


def adapter_for(family: str, http: httpx.AsyncClient) -> ChainAdapter:
    """The adapter of a chain family (ValueError for one no adapter serves)."""
    if family == "evm":
        from nespay.chains.evm_adapter import EvmAdapter

        return EvmAdapter(http)
    if family == "tron":
        from nespay.chains.tron_adapter import TronAdapter

        return TronAdapter(http)
    raise ValueError(f"no chain adapter for family {family!r}")


def is_payment(currency: CatalogCurrency, amount: int) -> bool:
    """A transfer of 0, or below the currency's dust threshold, is never a payment: address
    poisoning sends such transfers to every address that receives anything."""
    return amount > 0 and amount >= currency.dust_threshold
