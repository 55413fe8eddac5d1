"""Reference data: networks, their currencies (tokens and native coins), RPC endpoints."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Numeric,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from nespay.models.base import Base, TimestampMixin
from nespay.security.encryption import register


class Network(TimestampMixin, Base):
    __tablename__ = "networks"
    # `va`: virtual accounts (Intrajasa), paid by bank transfer and reported by the provider.
    __table_args__ = (
        CheckConstraint("chain_family IN ('evm', 'tron', 'va')", name="chain_family"),
    )

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    chain_family: Mapped[str] = mapped_column(String(8))
    chain_id: Mapped[int | None] = mapped_column(BigInteger)
    confirmations: Mapped[int] = mapped_column(server_default=text("12"))
    block_time_ms: Mapped[int] = mapped_column(server_default=text("12000"))
    is_testnet: Mapped[bool] = mapped_column(server_default=text("false"))
    enabled: Mapped[bool] = mapped_column(server_default=text("false"))
    explorer_url: Mapped[str | None] = mapped_column(String(200))
    # Switched off while invoices could still be paid on it: scanned until its scanner has
    # read past this time (see nespay.chains.watch).
    watch_until: Mapped[datetime | None]
    # Outgoing transactions are neither sent nor replaced with a maxFeePerGas above this
    # (wei per gas); NULL: no cap (see docs/sending.md).
    max_fee_per_gas_cap: Mapped[Decimal | None] = mapped_column(Numeric(78, 0))
    # Tron: the fee_limit (sun) every transaction is signed with, and the most its energy
    # may cost (docs/sending.md, "Tron"); NULL: the default.
    tron_fee_limit_sun: Mapped[int | None] = mapped_column(BigInteger)
    # Where consolidation sweeps deposit addresses (`nespay networks set-treasury`); no key
    # of it is held here. Lower case for EVM.
    treasury_address: Mapped[str | None] = mapped_column(String(64))

    currencies: Mapped[list[Currency]] = relationship(back_populates="network", lazy="raise")
    rpc_endpoints: Mapped[list[RpcEndpoint]] = relationship(back_populates="network", lazy="raise")


class Currency(TimestampMixin, Base):
    __tablename__ = "currencies"
    __table_args__ = (
        CheckConstraint("decimals BETWEEN 0 AND 36", name="decimals_range"),
        CheckConstraint("dust_threshold >= 0", name="dust_threshold_not_negative"),
        Index("uq_currencies_network_code_code", "network_code", "code", unique=True),
        Index(
            "uq_currencies_network_code_contract",
            "network_code",
            func.lower(text("contract")),
            unique=True,
            postgresql_where=text("contract IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    network_code: Mapped[str] = mapped_column(ForeignKey("networks.code", ondelete="RESTRICT"))
    code: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100))
    contract: Mapped[str | None] = mapped_column(String(64))  # NULL for the native coin
    decimals: Mapped[int]
    enabled: Mapped[bool] = mapped_column(server_default=text("true"))
    # Transfers below this many base units are not payments (address-poisoning dust); a
    # transfer of 0 never is.
    dust_threshold: Mapped[Decimal] = mapped_column(Numeric(78, 0), server_default=text("0"))
    # Switched off while invoices could still be paid in it: scanned until then.
    watch_until: Mapped[datetime | None]

    network: Mapped[Network] = relationship(back_populates="currencies", lazy="raise")


class RpcEndpoint(TimestampMixin, Base):
    __tablename__ = "rpc_endpoints"
    __table_args__ = (
        Index("uq_rpc_endpoints_network_code_url", "network_code", "url", unique=True),
        CheckConstraint("status IN ('unknown', 'up', 'down')", name="status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    network_code: Mapped[str] = mapped_column(ForeignKey("networks.code", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(500))
    priority: Mapped[int] = mapped_column(server_default=text("100"))  # lower is tried first
    enabled: Mapped[bool] = mapped_column(server_default=text("true"))
    status: Mapped[str] = mapped_column(String(8), server_default=text("'unknown'"))
    last_checked_at: Mapped[datetime | None]
    latency_ms: Mapped[int | None]
    head_block: Mapped[int | None] = mapped_column(BigInteger)
    consecutive_failures: Mapped[int] = mapped_column(server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(String(500))
    # The provider's API key, sent in the family's header (Tron: TRON-PRO-API-KEY); encrypted.
    api_key_encrypted: Mapped[str | None] = mapped_column(Text)

    network: Mapped[Network] = relationship(back_populates="rpc_endpoints", lazy="raise")


RPC_API_KEY = register("rpc_endpoints", "api_key_encrypted")
