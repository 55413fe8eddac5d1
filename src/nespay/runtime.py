"""What a process holds for its lifetime: settings, database, Redis, broker.

Built once in each app's lifespan (and by CLI commands that need it); closed in reverse order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nespay.auth.cache import GENERATION_KEY, PrincipalCache
from nespay.auth.cognito import CognitoVerifier
from nespay.broker import Broker
from nespay.chains.catalog import CatalogCache
from nespay.config import Settings
from nespay.db import Database, ensure_schema_current
from nespay.redis import RedisService

if TYPE_CHECKING:
    from nespay.callbacks.sender import CallbackSender
    from nespay.integrations.intrajasa.client import IntrajasaClient
    from nespay.wallets.provider import WalletProvider


@dataclass
class Runtime:
    settings: Settings
    process: str
    db: Database = field(init=False)
    redis: RedisService = field(init=False)
    broker: Broker | None = field(init=False, default=None)
    cognito: CognitoVerifier = field(init=False)
    catalog: CatalogCache = field(init=False)
    principals: PrincipalCache = field(init=False)

    def __post_init__(self) -> None:
        self.db = Database(self.settings)
        self.redis = RedisService(self.settings, self.db)
        # Who a credential is, cached in this process (see nespay.auth.cache).
        self.principals = PrincipalCache()
        self.db.credentials_changed = self.credentials_changed
        self.cognito = CognitoVerifier(self.settings)
        self.catalog = CatalogCache(self.db.side_engine)
        self._wallets: WalletProvider | None = None
        self._callback_sender: CallbackSender | None = None
        self._intrajasa: IntrajasaClient | None = None
        if self.settings.rabbitmq_url is not None:
            self.broker = Broker(self.settings)

    async def credentials_changed(self) -> None:
        """Who a credential is changed (and is committed): this process forgets at once, every
        other replica before its next request (the generation it reads with each one)."""
        self.principals.clear()
        await self.redis.bump(GENERATION_KEY)

    @property
    def wallets(self) -> WalletProvider:
        """The deposit-address provider (`WALLET_PROVIDER`), made on first use."""
        if self._wallets is None:
            from nespay.wallets.provider import provider_for

            self._wallets = provider_for(self.settings)
        return self._wallets

    @property
    def callback_sender(self) -> CallbackSender:
        """The HTTP client for merchant callbacks (deliveries, test pings), made on first use."""
        if self._callback_sender is None:
            from nespay.callbacks.sender import CallbackSender

            self._callback_sender = CallbackSender(self.settings)
        return self._callback_sender

    @property
    def intrajasa(self) -> IntrajasaClient:
        """Intrajasa's VA API client (docs/intrajasa.md), made on first use."""
        if self._intrajasa is None:
            from nespay.integrations.intrajasa.client import IntrajasaClient

            self._intrajasa = IntrajasaClient(self.settings)
        return self._intrajasa

    async def start(self, *, check_schema: bool = True) -> None:
        if check_schema:
            await ensure_schema_current(self.db)
        await self.redis.start()
        if self.broker is not None:
            await self.broker.start()

    async def close(self) -> None:
        if self.broker is not None:
            await self.broker.close()
        await self.redis.close()
        await self.cognito.aclose()
        if self._wallets is not None:
            await self._wallets.aclose()
        if self._callback_sender is not None:
            await self._callback_sender.aclose()
        if self._intrajasa is not None:
            await self._intrajasa.aclose()
        await self.db.dispose()
