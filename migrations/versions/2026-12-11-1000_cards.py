"""Card issuing (Rain): card users, their cards, and the authorisations Rain asked us to decide

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-11 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "card_users",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("rain_user_id", sa.String(length=100), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=True),
        sa.Column("first_name", sa.String(length=100), nullable=True),
        sa.Column("last_name", sa.String(length=100), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("application_status", sa.String(length=24), nullable=False),
        sa.Column("application_reason", sa.String(length=500), nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("currency_id", sa.String(length=40), nullable=True),
        sa.Column("cent_units", sa.Numeric(precision=78, scale=0), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "application_status IN ('approved', 'pending', 'needsInformation', 'needsVerification',"
            " 'manualReview', 'denied', 'locked', 'canceled')",
            name=op.f("ck_card_users_application_status"),
        ),
        sa.ForeignKeyConstraint(
            ["currency_id"], ["currencies.id"], name=op.f("fk_card_users_currency_id_currencies")
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_card_users_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_card_users")),
    )
    op.create_index(
        "ix_card_users_merchant_id_id", "card_users", ["merchant_id", "id"], unique=False
    )
    op.create_index(
        "uq_card_users_merchant_id_idempotency_key",
        "card_users",
        ["merchant_id", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_index("uq_card_users_rain_user_id", "card_users", ["rain_user_id"], unique=True)
    op.create_table(
        "cards",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("card_user_id", sa.String(length=40), nullable=False),
        sa.Column("rain_card_id", sa.String(length=100), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("last4", sa.String(length=4), nullable=True),
        sa.Column("expiration_month", sa.String(length=2), nullable=True),
        sa.Column("expiration_year", sa.String(length=4), nullable=True),
        sa.Column("limit_cents", sa.BigInteger(), nullable=True),
        sa.Column("limit_frequency", sa.String(length=24), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "limit_frequency IS NULL OR limit_frequency IN ('per24HourPeriod', 'per7DayPeriod',"
            " 'per30DayPeriod', 'perYearPeriod', 'allTime', 'perAuthorization')",
            name=op.f("ck_cards_limit_frequency"),
        ),
        sa.CheckConstraint(
            "status IN ('notActivated', 'active', 'locked', 'canceled')",
            name=op.f("ck_cards_status"),
        ),
        sa.CheckConstraint("type IN ('virtual', 'physical')", name=op.f("ck_cards_type")),
        sa.ForeignKeyConstraint(
            ["card_user_id"], ["card_users.id"], name=op.f("fk_cards_card_user_id_card_users")
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_cards_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cards")),
    )
    op.create_index("ix_cards_card_user_id", "cards", ["card_user_id"], unique=False)
    op.create_index("ix_cards_merchant_id_id", "cards", ["merchant_id", "id"], unique=False)
    op.create_index(
        "uq_cards_merchant_id_idempotency_key",
        "cards",
        ["merchant_id", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_index("uq_cards_rain_card_id", "cards", ["rain_card_id"], unique=True)
    op.create_table(
        "card_authorisations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("request_id", sa.String(length=200), nullable=True),
        sa.Column("rain_transaction_id", sa.String(length=100), nullable=True),
        sa.Column("rain_card_id", sa.String(length=100), nullable=True),
        sa.Column("merchant_id", sa.String(length=40), nullable=True),
        sa.Column("card_user_id", sa.String(length=40), nullable=True),
        sa.Column("card_id", sa.String(length=40), nullable=True),
        sa.Column("currency_id", sa.String(length=40), nullable=True),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column(
            "held", sa.Numeric(precision=78, scale=0), server_default=sa.text("0"), nullable=False
        ),
        sa.Column("settled_cents", sa.BigInteger(), nullable=True),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("decline_reason", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("merchant_name", sa.String(length=200), nullable=True),
        sa.Column("merchant_category", sa.String(length=100), nullable=True),
        sa.Column("merchant_country", sa.String(length=8), nullable=True),
        sa.Column("local_amount", sa.BigInteger(), nullable=True),
        sa.Column("local_currency", sa.String(length=8), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "decision IN ('approved', 'declined')", name=op.f("ck_card_authorisations_decision")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'declined', 'completed', 'reversed')",
            name=op.f("ck_card_authorisations_status"),
        ),
        sa.ForeignKeyConstraint(
            ["card_id"], ["cards.id"], name=op.f("fk_card_authorisations_card_id_cards")
        ),
        sa.ForeignKeyConstraint(
            ["card_user_id"],
            ["card_users.id"],
            name=op.f("fk_card_authorisations_card_user_id_card_users"),
        ),
        sa.ForeignKeyConstraint(
            ["currency_id"],
            ["currencies.id"],
            name=op.f("fk_card_authorisations_currency_id_currencies"),
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_card_authorisations_merchant_id_merchants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_card_authorisations")),
    )
    op.create_index(
        "ix_card_authorisations_card_id_id", "card_authorisations", ["card_id", "id"], unique=False
    )
    op.create_index(
        "ix_card_authorisations_rain_card_id", "card_authorisations", ["rain_card_id"], unique=False
    )
    op.create_index(
        "uq_card_authorisations_rain_transaction_id",
        "card_authorisations",
        ["rain_transaction_id"],
        unique=True,
        postgresql_where=sa.text("rain_transaction_id IS NOT NULL"),
    )
    op.create_index(
        "uq_card_authorisations_request_id",
        "card_authorisations",
        ["request_id"],
        unique=True,
        postgresql_where=sa.text("request_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_card_authorisations_request_id",
        table_name="card_authorisations",
        postgresql_where=sa.text("request_id IS NOT NULL"),
    )
    op.drop_index(
        "uq_card_authorisations_rain_transaction_id",
        table_name="card_authorisations",
        postgresql_where=sa.text("rain_transaction_id IS NOT NULL"),
    )
    op.drop_index("ix_card_authorisations_rain_card_id", table_name="card_authorisations")
    op.drop_index("ix_card_authorisations_card_id_id", table_name="card_authorisations")
    op.drop_table("card_authorisations")
    op.drop_index("uq_cards_rain_card_id", table_name="cards")
    op.drop_index(
        "uq_cards_merchant_id_idempotency_key",
        table_name="cards",
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.drop_index("ix_cards_merchant_id_id", table_name="cards")
    op.drop_index("ix_cards_card_user_id", table_name="cards")
    op.drop_table("cards")
    op.drop_index("uq_card_users_rain_user_id", table_name="card_users")
    op.drop_index(
        "uq_card_users_merchant_id_idempotency_key",
        table_name="card_users",
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.drop_index("ix_card_users_merchant_id_id", table_name="card_users")
    op.drop_table("card_users")
