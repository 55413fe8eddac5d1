"""The webhook process: provider callbacks (Rain, Intrajasa, Privy) under /api/v1/webhooks,
and the handling of what they store (docs/webhooks.md)."""

from __future__ import annotations

from fastapi import FastAPI

from nespay.apps.common import build_app
from nespay.cards.handlers import register as register_card_handlers
from nespay.config import Settings, get_settings
from nespay.inbox.endpoints import router as inbox_router
from nespay.inbox.shortcut import ProviderRouteShortcut
from nespay.inbox.worker import InboxPipeline
from nespay.integrations.intrajasa import ingest as intrajasa_ingest
from nespay.runtime import Runtime

# The handlers of what the inbox stores, registered on import.
HANDLERS = (intrajasa_ingest.handle_va_payment,)


async def start_inbox(app: FastAPI, runtime: Runtime) -> None:
    register_card_handlers()
    app.state.inbox = InboxPipeline(runtime)
    await app.state.inbox.start()


async def stop_inbox(app: FastAPI, runtime: Runtime) -> None:
    inbox = getattr(app.state, "inbox", None)
    if inbox is not None:
        await inbox.stop()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    # The provider routes are not covered by the refusal of unstorable text: they keep a
    # payload as received (bytes, so NUL is stored too); see docs/security.md "Text input".
    routers = [("/" + settings.public_api_prefix + "/webhooks", inbox_router)]
    return build_app(
        "webhook",
        settings,
        routers=routers,
        on_start=start_inbox,
        on_stop=stop_inbox,
        refuse_unstorable=False,
        # Their POSTs skip FastAPI's per-request dispatch (the intake's hot path).
        middleware=[(ProviderRouteShortcut, {"routers": routers})],
    )
