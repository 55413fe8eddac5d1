"""Chain scanning state: a cursor per network (with the scanner's lease and fencing token),
recent block hashes for reorg detection, and exchange rates."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, ForeignKey, Numeric, String, text
from sqlalchemy.orm import Mapped, mapped_column

from nespay.models.base import Base


class ChainCursor(Base):
    """The last block a network's scanner has fully processed, and who may move it.

    Every write of a scan commits together with an update of this row guarded by
    `lease_token`, so a scanner that lost its lease cannot write anything."""

    __tablename__ = "chain_cursors"

    network_code: Mapped[str] = mapped_column(
        ForeignKey("networks.code", ondelete="CASCADE"), primary_key=True
    )
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(String(80))
    # The cursor block's timestamp (seconds): what the scanner has read up to, in chain time.
    block_timestamp: Mapped[int | None] = mapped_column(BigInteger)
    # Block 0's hash of the chain first scanned here: another chain behind the same network
    # (a wrong RPC URL, a fresh local node) is refused.
    genesis_hash: Mapped[str | None] = mapped_column(String(80))
    head_number: Mapped[int | None] = mapped_column(BigInteger)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_token: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    lease_expires_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(server_default=text("now()"))


class ScannerStatus(Base):
    """A network whose scanner is failing: since when and the newest error. Written when the
    error changes, deleted on the first step that succeeds after it."""

    __tablename__ = "scanner_status"

    network_code: Mapped[str] = mapped_column(
        ForeignKey("networks.code", ondelete="CASCADE"), primary_key=True
    )
    last_error: Mapped[str] = mapped_column(String(500))
    failing_since: Mapped[datetime]
    last_error_at: Mapped[datetime]


class ChainBlock(Base):
    """Hashes of recently scanned blocks: a new block whose parent hash differs from ours
    means a reorg; walking back through these finds the common ancestor."""

    __tablename__ = "chain_blocks"

    network_code: Mapped[str] = mapped_column(
        ForeignKey("networks.code", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hash: Mapped[str] = mapped_column(String(80))
    parent_hash: Mapped[str] = mapped_column(String(80))
    timestamp: Mapped[int] = mapped_column(BigInteger)


class Rate(Base):
    """One source's price of `base` in `quote` (e.g. USDT in IDR); admin-set rows have
    source `admin`."""

    __tablename__ = "rates"

    base: Mapped[str] = mapped_column(String(16), primary_key=True)
    quote: Mapped[str] = mapped_column(String(16), primary_key=True)
    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    rate: Mapped[Decimal] = mapped_column(Numeric(38, 18))
    fetched_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    updated_by: Mapped[str | None] = mapped_column(String(100))
