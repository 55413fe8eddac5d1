"""All tables; importing this module registers every model on `Base.metadata`."""

from nespay.models.base import Base
from nespay.models.callbacks import WebhookAttempt, WebhookDelivery
from nespay.models.cards import Card, CardAuthorisation, CardUser
from nespay.models.events import Event
from nespay.models.identity import ApiKey, AuditLog, Merchant, MerchantUser, WebhookEndpoint
from nespay.models.inbox import ProviderWebhook
from nespay.models.invoices import DepositAddress, IdempotencyKey, Invoice, InvoiceOption, Payment
from nespay.models.ledger import LedgerAccount, LedgerTransfer, ReconciliationRun, Withdrawal
from nespay.models.platform import AppLock, JobSchedule, RateCounter
from nespay.models.reference import Currency, Network, RpcEndpoint
from nespay.models.scanning import ChainBlock, ChainCursor, Rate, ScannerStatus
from nespay.models.sending import (
    HotWallet,
    OutgoingTransaction,
    OutgoingTransactionCandidate,
    WalletNonce,
)

__all__ = [
    "Card",
    "CardAuthorisation",
    "CardUser",
    "ChainBlock",
    "ChainCursor",
    "ScannerStatus",
    "DepositAddress",
    "Event",
    "HotWallet",
    "OutgoingTransaction",
    "OutgoingTransactionCandidate",
    "WalletNonce",
    "IdempotencyKey",
    "Invoice",
    "LedgerAccount",
    "LedgerTransfer",
    "ReconciliationRun",
    "Withdrawal",
    "InvoiceOption",
    "Payment",
    "ProviderWebhook",
    "Rate",
    "ApiKey",
    "AppLock",
    "AuditLog",
    "Base",
    "Currency",
    "JobSchedule",
    "Merchant",
    "MerchantUser",
    "Network",
    "RateCounter",
    "RpcEndpoint",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
]
