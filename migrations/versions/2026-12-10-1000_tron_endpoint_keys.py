"""Tron: an API key per RPC endpoint (TronGrid's TRON-PRO-API-KEY header), stored encrypted

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-10 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A token of nespay.kit.crypto (AES-256-GCM, bound to this row), re-encrypted by
    # `nespay keys rotate`; NULL: the endpoint is asked without a key.
    op.add_column("rpc_endpoints", sa.Column("api_key_encrypted", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("rpc_endpoints", "api_key_encrypted")
