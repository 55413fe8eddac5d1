"""Which accounts exist, by name. An account's id says what it is, so a posting names its
accounts without reading them first, and a missing one is created on first use.

Per (network, currency) — `currency_id` already names both:

- `m:{merchant}:available:{currency}` — what the merchant holds (credit normal, limited:
  debits, posted and pending, may not exceed posted credits). Pending credits there are
  payments still confirming: shown, never spendable.
- `p:custody:{currency}` — funds on the deposit addresses (debit normal: it mirrors the chain).
- `p:treasury:{currency}` — funds swept into the treasury.
- `p:hot_wallet:{currency}` — funds in the hot wallet that sends withdrawals.
- `p:payouts:{currency}` — withdrawals held and sent, until confirmed (credit normal).
- `p:fees:{currency}` — the platform's revenue (credit normal).
- `p:network_fees:{currency}` — gas the platform spent (debit normal).
- `p:capital:{currency}` — what operators put in from outside (a hot wallet's top-up, recorded
  with `nespay wallets record-funding`; credit normal).
- `c:{card_user}:available:{currency}` — what a merchant's card user may spend with its cards
  (credit normal, limited like a merchant's: funded from the merchant's available balance,
  authorisations are held on it).
- `c:{card_user}:spend:{currency}` — what the card user's cards spent, owed to the card
  issuer (credit normal; authorisations are held into it and posted when Rain completes them).
"""

from __future__ import annotations

from typing import NamedTuple

PLATFORM_KINDS = frozenset(
    {"custody", "treasury", "hot_wallet", "payouts", "fees", "network_fees", "capital"}
)
MERCHANT_KINDS = frozenset({"available"})
CARD_KINDS = frozenset({"card_available", "card_spend"})
LIMITED_KINDS = frozenset({"available", "card_available"})


class Account(NamedTuple):
    id: str
    merchant_id: str | None
    kind: str
    currency_id: str

    @property
    def limited(self) -> bool:
        return self.kind in LIMITED_KINDS


def merchant(merchant_id: str, currency_id: str, kind: str = "available") -> Account:
    if kind not in MERCHANT_KINDS:
        raise ValueError(f"not a merchant account kind: {kind}")
    return Account(f"m:{merchant_id}:{kind}:{currency_id}", merchant_id, kind, currency_id)


def platform(kind: str, currency_id: str) -> Account:
    if kind not in PLATFORM_KINDS:
        raise ValueError(f"not a platform account kind: {kind}")
    return Account(f"p:{kind}:{currency_id}", None, kind, currency_id)


def card_user(merchant_id: str, card_user_id: str, currency_id: str) -> Account:
    """What the card user may spend (limited)."""
    return Account(
        f"c:{card_user_id}:available:{currency_id}", merchant_id, "card_available", currency_id
    )


def card_spend(merchant_id: str, card_user_id: str, currency_id: str) -> Account:
    """What the card user's cards spent (held while pending, posted once completed)."""
    return Account(f"c:{card_user_id}:spend:{currency_id}", merchant_id, "card_spend", currency_id)
