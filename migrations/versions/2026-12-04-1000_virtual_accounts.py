"""Virtual accounts: networks of the `va` family (Intrajasa's rupiah virtual accounts), whose
payments a provider reports instead of a chain

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(op.f("ck_networks_chain_family"), "networks", type_="check")
    op.create_check_constraint(
        op.f("ck_networks_chain_family"), "networks", "chain_family IN ('evm', 'tron', 'va')"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_networks_chain_family"), "networks", type_="check")
    op.create_check_constraint(
        op.f("ck_networks_chain_family"), "networks", "chain_family IN ('evm', 'tron')"
    )
