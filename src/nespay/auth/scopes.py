"""Scopes name what a caller may do; roles of merchant users are sets of scopes."""

from __future__ import annotations

INVOICES_READ = "invoices:read"
INVOICES_WRITE = "invoices:write"
WEBHOOKS_READ = "webhooks:read"
WEBHOOKS_WRITE = "webhooks:write"
EVENTS_READ = "events:read"
BALANCES_READ = "balances:read"
WITHDRAWALS_READ = "withdrawals:read"
WITHDRAWALS_WRITE = "withdrawals:write"
CARDS_READ = "cards:read"
CARDS_WRITE = "cards:write"
API_KEYS_READ = "api_keys:read"
API_KEYS_WRITE = "api_keys:write"
MERCHANT_READ = "merchant:read"
MERCHANT_WRITE = "merchant:write"

ALL_SCOPES: frozenset[str] = frozenset(
    {
        INVOICES_READ,
        INVOICES_WRITE,
        WEBHOOKS_READ,
        WEBHOOKS_WRITE,
        EVENTS_READ,
        BALANCES_READ,
        WITHDRAWALS_READ,
        WITHDRAWALS_WRITE,
        CARDS_READ,
        CARDS_WRITE,
        API_KEYS_READ,
        API_KEYS_WRITE,
        MERCHANT_READ,
        MERCHANT_WRITE,
    }
)
READ_SCOPES = frozenset(scope for scope in ALL_SCOPES if scope.endswith(":read"))

ROLE_SCOPES: dict[str, frozenset[str]] = {
    "owner": ALL_SCOPES,
    "admin": ALL_SCOPES,
    # Developers integrate: everything but moving money out and managing the merchant.
    "developer": ALL_SCOPES - {WITHDRAWALS_WRITE, MERCHANT_WRITE},
    "viewer": READ_SCOPES,
}

# Backoffice roles come from the admin pool's `cognito:groups`.
ADMIN = "admin"
FINANCE = "finance"
SUPPORT = "support"
ADMIN_GROUPS = frozenset({ADMIN, FINANCE, SUPPORT})
