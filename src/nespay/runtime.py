"""What a process holds for its lifetime: settings, database, Redis, broker.

Built once in each app's lifespan (and by CLI commands that need it); closed in reverse order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nespay.auth.cognito import CognitoVerifier
from nespay.broker import Broker
from nespay.config import Settings
from nespay.db import Database, ensure_schema_current
from nespay.redis import RedisService


@dataclass
class Runtime:
    settings: Settings
    process: str
    db: Database = field(init=False)
    redis: RedisService = field(init=False)
    broker: Broker | None = field(init=False, default=None)
    cognito: CognitoVerifier = field(init=False)

    def __post_init__(self) -> None:
        self.db = Database(self.settings)
        self.redis = RedisService(self.settings, self.db)
        self.cognito = CognitoVerifier(self.settings)
        if self.settings.rabbitmq_url is not None:
            self.broker = Broker(self.settings)

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
        await self.db.dispose()
