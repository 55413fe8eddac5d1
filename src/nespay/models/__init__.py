"""All tables; importing this module registers every model on `Base.metadata`."""

from nespay.models.base import Base
from nespay.models.platform import AppLock, JobSchedule, RateCounter
from nespay.models.reference import Currency, Network, RpcEndpoint

__all__ = ["AppLock", "Base", "Currency", "JobSchedule", "Network", "RateCounter", "RpcEndpoint"]
