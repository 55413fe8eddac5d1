"""All tables; importing this module registers every model on `Base.metadata`."""

from nespay.models.base import Base
from nespay.models.identity import ApiKey, AuditLog, Merchant, MerchantUser, WebhookEndpoint
from nespay.models.platform import AppLock, JobSchedule, RateCounter
from nespay.models.reference import Currency, Network, RpcEndpoint

__all__ = [
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
    "WebhookEndpoint",
]
