"""Response models of the backoffice's search and stats routes."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

from nespay.invoices.schemas import Invoice, InvoicePayment


class BackofficeInvoice(Invoice):
    """The merchant's view of the invoice, plus whose it is and how it got its status."""

    merchant_id: str
    status_reason: str | None = Field(description="An admin's reason, when it was marked")
    marked_at: datetime | None = Field(description="Set when an admin marked it paid or invalid")
    invalid_at: datetime | None


class BackofficeInvoiceList(BaseModel):
    data: list[BackofficeInvoice]
    has_more: bool


class BackofficePayment(InvoicePayment):
    """The payment as an invoice shows it, plus whose it is and where it went."""

    invoice_id: str
    merchant_id: str
    currency_id: str
    to_address: str
    orphaned_at: datetime | None


class BackofficePaymentList(BaseModel):
    data: list[BackofficePayment]
    has_more: bool


class DepositAddress(BaseModel):
    id: str
    chain_family: str
    address: str
    provider: str = Field(description="`hd` or `privy`")
    derivation_index: int | None
    provider_wallet_id: str | None
    invoice_id: str
    merchant_id: str
    created_at: datetime


class DepositAddressList(BaseModel):
    data: list[DepositAddress]
    has_more: bool


class DailyVolume(BaseModel):
    day: date = Field(description="UTC day the payments confirmed")
    network: str
    currency: str
    currency_id: str
    amount: str = Field(description="Sum of confirmed payments, whole units")
    payments: int


class InvoiceCounts(BaseModel):
    since: datetime = Field(description="Invoices created at or after this time are counted")
    by_status: dict[str, int] = Field(description="Every status, 0 included")
    open_now: int = Field(description="Pending or partially paid now, whenever created")


class CallbackHealth(BaseModel):
    since: datetime = Field(description="Deliveries created at or after this time")
    succeeded: int
    failed: int = Field(description="Gave up after the retry window")
    pending: int = Field(description="Still to be delivered in the window")
    pending_now: int = Field(description="Every delivery still to be delivered, however old")
    endpoints_enabled: int
    endpoints_failing: int = Field(description="Enabled, and failing since their last success")
    endpoints_disabled: int = Field(
        description="Disabled by the merchant, or after failing for days"
    )


class ScannerLag(BaseModel):
    network: str
    enabled: bool
    head: int | None
    cursor: int | None
    lag_blocks: int | None
    last_scan_at: datetime | None
    failing_since: datetime | None
    last_error: str | None


class Stats(BaseModel):
    days: int
    volume: list[DailyVolume] = Field(
        description="Per UTC day, network and currency, newest day first"
    )
    invoices: InvoiceCounts
    merchants: dict[str, int] = Field(description="Merchants by status")
    callbacks: CallbackHealth
    scanners: list[ScannerLag]
