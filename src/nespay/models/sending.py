"""Money out on EVM chains: hot wallets (encrypted keys or Privy wallets), one nonce sequence
per sending address, outgoing transactions and every signed candidate of each (see
docs/sending.md)."""

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
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from nespay.models.base import Base
from nespay.security.encryption import register

WEI = Numeric(78, 0)


class HotWallet(Base):
    """A key that sends: `local` (the private key encrypted here, opened only by the jobs
    process) or `privy` (a Privy server wallet that signs and broadcasts). One active wallet
    per (network, role); a replaced one is kept, deactivated, for its transactions' sake."""

    __tablename__ = "hot_wallets"
    __table_args__ = (
        CheckConstraint("role IN ('payouts', 'gas')", name="role"),
        CheckConstraint("signer IN ('local', 'privy')", name="signer"),
        CheckConstraint(
            "(signer = 'local' AND private_key_encrypted IS NOT NULL) OR "
            "(signer = 'privy' AND privy_wallet_id IS NOT NULL)",
            name="signer_material",
        ),
        Index(
            "uq_hot_wallets_network_code_role",
            "network_code",
            "role",
            unique=True,
            postgresql_where=text("active"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    network_code: Mapped[str] = mapped_column(ForeignKey("networks.code", ondelete="RESTRICT"))
    role: Mapped[str] = mapped_column(String(16))
    signer: Mapped[str] = mapped_column(String(8))
    address: Mapped[str] = mapped_column(String(64))  # lower case
    private_key_encrypted: Mapped[str | None] = mapped_column(Text)
    privy_wallet_id: Mapped[str | None] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    deactivated_at: Mapped[datetime | None]


class WalletNonce(Base):
    """The next nonce of one sending address on one network. Claimed with one
    `UPDATE … RETURNING` in the transaction that stores the signed transaction."""

    __tablename__ = "wallet_nonces"

    network_code: Mapped[str] = mapped_column(
        ForeignKey("networks.code", ondelete="RESTRICT"), primary_key=True
    )
    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_nonce: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(server_default=text("now()"))


class OutgoingTransaction(Base):
    """One transfer to make (a withdrawal, a refund, a sweep: `purpose` + `source_id`), from
    queued to confirmed or failed. Its nonce, once claimed, never changes: replacements are
    candidates at the same nonce, so at most one of them is ever mined."""

    __tablename__ = "outgoing_transactions"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'signed', 'broadcast', 'mined', 'confirmed', 'failed')",
            name="status",
        ),
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        # Sent by a hot wallet, or (a sweep) by the deposit address itself.
        CheckConstraint(
            "(hot_wallet_id IS NULL) <> (deposit_address_id IS NULL)", name="one_sender"
        ),
        Index(
            "ix_outgoing_transactions_deposit_address_id",
            "deposit_address_id",
            postgresql_where=text("deposit_address_id IS NOT NULL"),
        ),
        Index("uq_outgoing_transactions_purpose_source_id", "purpose", "source_id", unique=True),
        Index(
            "uq_outgoing_transactions_network_code_from_address_nonce",
            "network_code",
            "from_address",
            "nonce",
            unique=True,
            postgresql_where=text("nonce IS NOT NULL"),
        ),
        Index(
            "ix_outgoing_transactions_network_code_status",
            "network_code",
            "status",
            postgresql_where=text("status NOT IN ('confirmed', 'failed')"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(40))
    source_id: Mapped[str] = mapped_column(String(100))
    network_code: Mapped[str] = mapped_column(ForeignKey("networks.code", ondelete="RESTRICT"))
    hot_wallet_id: Mapped[str | None] = mapped_column(
        ForeignKey("hot_wallets.id", ondelete="RESTRICT")
    )
    deposit_address_id: Mapped[str | None] = mapped_column(
        ForeignKey("deposit_addresses.id", ondelete="RESTRICT")
    )
    from_address: Mapped[str] = mapped_column(String(64))
    to_address: Mapped[str] = mapped_column(String(64))
    token_contract: Mapped[str | None] = mapped_column(String(64))  # NULL: the native coin
    amount: Mapped[Decimal] = mapped_column(WEI)
    status: Mapped[str] = mapped_column(String(16), server_default=text("'queued'"))
    nonce: Mapped[int | None] = mapped_column(BigInteger)
    gas_limit: Mapped[int | None] = mapped_column(BigInteger)
    max_fee_per_gas: Mapped[Decimal | None] = mapped_column(WEI)  # the newest candidate's
    max_priority_fee_per_gas: Mapped[Decimal | None] = mapped_column(WEI)
    gas_used: Mapped[int | None] = mapped_column(BigInteger)
    effective_gas_price: Mapped[Decimal | None] = mapped_column(WEI)
    # What it burnt in the native coin (Tron's receipt `fee`: energy + bandwidth + account
    # creation); NULL on EVM, where the fee is gas_used × effective_gas_price.
    fee_paid: Mapped[Decimal | None] = mapped_column(WEI)
    mined_hash: Mapped[str | None] = mapped_column(String(80))
    mined_block_number: Mapped[int | None] = mapped_column(BigInteger)
    mined_block_hash: Mapped[str | None] = mapped_column(String(80))
    receipt_status: Mapped[int | None]  # 1 success, 0 reverted
    confirmations: Mapped[int] = mapped_column(server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    updated_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    signed_at: Mapped[datetime | None]
    broadcast_at: Mapped[datetime | None]  # the newest candidate's broadcast
    mined_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]  # confirmed or failed


class OutgoingTransactionCandidate(Base):
    """A signed version of an outgoing transaction (the first, then each replacement at the
    same nonce), stored before it is broadcast. Privy candidates have no raw bytes, and their
    hash only once Privy answered."""

    __tablename__ = "outgoing_transaction_candidates"

    outgoing_transaction_id: Mapped[str] = mapped_column(
        ForeignKey(
            "outgoing_transactions.id",
            ondelete="CASCADE",
            name="fk_outgoing_transaction_candidates_outgoing_transactions",
        ),
        primary_key=True,
    )
    number: Mapped[int] = mapped_column(primary_key=True)  # 1, 2, … in signing order
    tx_hash: Mapped[str | None] = mapped_column(String(80), index=True)
    raw_transaction: Mapped[str | None] = mapped_column(Text)  # 0x-hex of the signed bytes
    max_fee_per_gas: Mapped[Decimal] = mapped_column(WEI)
    max_priority_fee_per_gas: Mapped[Decimal] = mapped_column(WEI)
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    broadcast_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(1000))
    expiration_ms: Mapped[int | None] = mapped_column(BigInteger)  # Tron: raw_data.expiration


class HdAccountKey(Base):
    """The account extended PRIVATE key of a chain family's deposit addresses (the one whose
    public key is HD_WALLET_XPUB), encrypted; imported with `nespay wallets import-xprv` and
    opened only by the jobs process, to sign sweeps. The api host derives addresses from the
    xpub alone."""

    __tablename__ = "hd_account_keys"
    __table_args__ = (CheckConstraint("chain_family IN ('evm', 'tron')", name="chain_family"),)

    chain_family: Mapped[str] = mapped_column(String(8), primary_key=True)
    xpub: Mapped[str] = mapped_column(String(200))  # its public key, to match the setting
    xprv_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))


SWEEP_STATUSES = ("dust", "funding", "sending", "confirmed", "failed")


class Sweep(Base):
    """Consolidation of one (deposit address, currency) into the network's treasury: `dust`
    (gas would cost more than the allowed share of the value: listed, not sent), `funding`
    (the gas top-up from the gas wallet is on its way), `sending` (the transfer from the
    deposit address), then `confirmed` or `failed`. At most one live sweep per address and
    currency (a unique index)."""

    __tablename__ = "sweeps"
    __table_args__ = (
        CheckConstraint(
            "status IN ('dust', 'funding', 'sending', 'confirmed', 'failed')", name="status"
        ),
        CheckConstraint("amount > 0", name="positive_amount"),
        Index(
            "uq_sweeps_deposit_address_id_currency_id",
            "deposit_address_id",
            "currency_id",
            unique=True,
            postgresql_where=text("status IN ('dust', 'funding', 'sending')"),
        ),
        Index("ix_sweeps_network_code_status", "network_code", "status"),
        Index("ix_sweeps_status_id", "status", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    network_code: Mapped[str] = mapped_column(ForeignKey("networks.code", ondelete="RESTRICT"))
    currency_id: Mapped[str] = mapped_column(ForeignKey("currencies.id", ondelete="RESTRICT"))
    deposit_address_id: Mapped[str] = mapped_column(
        ForeignKey("deposit_addresses.id", ondelete="RESTRICT")
    )
    address: Mapped[str] = mapped_column(String(64))  # the deposit address
    treasury_address: Mapped[str] = mapped_column(String(64))
    amount: Mapped[Decimal] = mapped_column(WEI)  # base units to move
    status: Mapped[str] = mapped_column(String(16))
    gas_limit: Mapped[int | None] = mapped_column(BigInteger)
    gas_cost_wei: Mapped[Decimal | None] = mapped_column(WEI)  # the estimate it was judged by
    topup_wei: Mapped[Decimal | None] = mapped_column(WEI)
    topup_tx_id: Mapped[str | None] = mapped_column(String(40))
    sweep_tx_id: Mapped[str | None] = mapped_column(String(40))
    reason: Mapped[str | None] = mapped_column(String(500))  # why dust, why failed
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    updated_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    finished_at: Mapped[datetime | None]


# Opened only by the jobs process (nespay.wallets.hotkeys); rotated by `nespay keys rotate`.
HOT_WALLET_KEY = register("hot_wallets", "private_key_encrypted")
# Opened only by the jobs process (nespay.wallets.hdkeys), to sign sweeps.
HD_ACCOUNT_KEY = register("hd_account_keys", "xprv_encrypted", "chain_family")
