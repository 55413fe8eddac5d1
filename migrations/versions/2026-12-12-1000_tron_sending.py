"""Tron sending: a fee limit per network, the fee a transaction burnt, each candidate's
expiration (Tron transactions have no nonce; they expire)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-12 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The fee_limit (sun) every Tron transaction of the network is signed with, and the most
    # its energy may cost; NULL: the default (docs/sending.md, "Tron").
    op.add_column("networks", sa.Column("tron_fee_limit_sun", sa.BigInteger(), nullable=True))
    # What the transaction burnt, in the native coin's base units (Tron: energy + bandwidth +
    # account creation, the receipt's `fee`); NULL on EVM, where it is gas_used × price.
    op.add_column(
        "outgoing_transactions",
        sa.Column("fee_paid", sa.Numeric(precision=78, scale=0), nullable=True),
    )
    # A Tron candidate's raw_data.expiration (ms); NULL for EVM candidates.
    op.add_column(
        "outgoing_transaction_candidates",
        sa.Column("expiration_ms", sa.BigInteger(), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("outgoing_transaction_candidates", "expiration_ms")
    op.drop_column("outgoing_transactions", "fee_paid")
    op.drop_column("networks", "tron_fee_limit_sun")
