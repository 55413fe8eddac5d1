"""The ledger's invariants, checked on the whole ledger (the `ledger.invariants` job):

1. `balance`: per currency, Σ debits = Σ credits, for the pending and for the posted counters;
2. `projection`: every account's four counters equal the projection of its transfers in
   `ledger_transfers` (pending, post, void, posted: see `repository._ACCOUNTS_OFF`);
3. `shortfall`: no limited account is short (debits, posted and pending, beyond its posted
   credits) unless a transfer flagged `overdrew` debited it (a recorded deficit);
4. `resolution`: no pending transfer is resolved twice, by more than it held, or by a
   transfer naming other accounts.

`check` runs three statements, each one pass over the ledger, on the caller's connection: run
it in one read-only REPEATABLE READ transaction, so that all three see one snapshot (a
transfer and its counters are committed together, by `service.record`), and writers are never
blocked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nespay.db import Sql
from nespay.ledger import repository

CHECKS = ("balance", "projection", "shortfall", "resolution")
LISTED = 100  # offenders read per check; the totals are counted in full


@dataclass
class Violation:
    check: str
    total: int  # currencies (balance), accounts (projection, shortfall), pending transfers
    items: list[dict[str, Any]] = field(default_factory=list)  # the first LISTED of them

    def names(self, limit: int | None = None) -> list[str]:
        """What is concerned: currency ids, account ids, or pending transfer keys."""
        return [item["name"] for item in self.items[:limit]]

    def labels(self, limit: int) -> list[str]:
        """The names, a pending transfer's with its accounts."""
        return [
            f"{item['name']} on {' -> '.join(item['accounts'])}" if "accounts" in item
            else item["name"]
            for item in self.items[:limit]
        ]  # fmt: skip


@dataclass
class Findings:
    accounts: int
    currencies: int
    violations: dict[str, Violation] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def counts(self) -> dict[str, int]:
        found = {name: v.total for name, v in self.violations.items()}
        return {name: found.get(name, 0) for name in CHECKS}

    def summary(self, named: int = 5) -> str:
        """One line: each violated check, how many, and the first few it concerns."""
        if self.ok:
            return f"ok: {self.accounts} accounts in {self.currencies} currencies"
        parts = []
        for v in self.violations.values():
            more = f" and {v.total - named} more" if v.total > named else ""
            parts.append(f"{v.check} {v.total} ({', '.join(v.labels(named))}{more})")
        return "; ".join(parts)


def _counters(row: Any, prefix: str = "") -> list[str]:
    return [
        str(row[prefix + name])
        for name in ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
    ]


async def check(db: Sql) -> Findings:
    """The four invariants on the whole ledger, as of the caller's snapshot."""
    size = await repository.ledger_size(db)
    findings = Findings(int(size["accounts"]), int(size["currencies"]))
    found: dict[str, Violation] = {name: Violation(name, 0) for name in CHECKS}
    for row in await repository.unbalanced_currencies(db):
        pending, posted = str(row["pending"]), str(row["posted"])
        found["balance"].items.append(
            {"name": row["currency_id"], "pending": pending, "posted": posted}
        )
    found["balance"].total = len(found["balance"].items)
    for row in await repository.accounts_off(db, LISTED):
        found["projection"].total = int(row["off_total"])
        found["shortfall"].total = int(row["short_total"])
        if row["off"]:
            found["projection"].items.append(
                {"name": row["id"], "counters": _counters(row), "projected": _counters(row, "p_")}
            )
        if row["short"]:
            found["shortfall"].items.append({"name": row["id"], "counters": _counters(row)})
    for row in await repository.resolutions_off(db, LISTED):
        found["resolution"].total = int(row["total"])
        found["resolution"].items.append(
            {
                "name": row["key"],
                "accounts": [row["debit_account_id"], row["credit_account_id"]],
                "held": str(row["held"]),
                "resolved_by": list(row["resolved_by"]),
                "twice": row["resolutions"] > 1,
                "beyond": row["beyond"],
                "mismatched": row["mismatched"],
            }
        )
    findings.violations = {name: v for name, v in found.items() if v.total}
    return findings
