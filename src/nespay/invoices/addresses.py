"""HD deposit addresses for invoice creation's single statement: derivation indexes are taken
from the family's sequence a block at a time (one round trip per `BLOCK` invoices, not one per
invoice) and each address is derived from its index on the API host, as
`HdWalletProvider.allocate` does. Indexes a process never hands out (it stopped, a creation
failed) are gaps, never reuses; sweeping walks the indexes stored in `deposit_addresses`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any
from weakref import WeakKeyDictionary

from nespay.db import Database
from nespay.invoices import repository
from nespay.kit.ids import new_id
from nespay.wallets.hd import FAMILIES, HdWalletProvider
from nespay.wallets.provider import require_chain_family

BLOCK = 32


class IndexPool:
    """Reserved, not yet used derivation indexes of one provider, per chain family."""

    def __init__(self) -> None:
        self._free: dict[str, deque[int]] = {}
        self._lock = asyncio.Lock()

    async def take(self, db: Database, chain_family: str) -> int:
        free = self._free.setdefault(chain_family, deque())
        if not free:
            async with self._lock:
                if not free:
                    async with db.driver() as conn:
                        sequence = FAMILIES[chain_family].sequence  # the one `allocate` uses
                        free.extend(await repository.reserve_indexes(conn, sequence, BLOCK))
        return free.popleft()

    def give_back(self, chain_family: str, index: int) -> None:
        self._free[chain_family].appendleft(index)


_POOLS: WeakKeyDictionary[HdWalletProvider, IndexPool] = WeakKeyDictionary()


async def hd_addresses(
    db: Database, provider: HdWalletProvider, chain_families: list[str], merchant_id: str
) -> list[dict[str, Any]]:
    """One fresh `deposit_addresses` row (as values) per chain family."""
    pool = _POOLS.setdefault(provider, IndexPool())
    rows = []
    for family in chain_families:
        index = await pool.take(db, require_chain_family(family))
        try:
            address = provider.address_at(family, index)
        except Exception:
            pool.give_back(family, index)  # not configured: the index stays unused
            raise
        rows.append(
            {
                "id": new_id("dep"),
                "chain_family": family,
                "address": address,
                "derivation_index": index,
                "merchant_id": merchant_id,
            }
        )
    return rows
