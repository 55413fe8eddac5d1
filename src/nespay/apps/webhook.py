"""The webhook process: provider callbacks (Rain, Intrajasa, Privy) under /api/v1/webhooks."""

from __future__ import annotations

from fastapi import FastAPI

from nespay.apps.common import build_app
from nespay.config import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    # Provider routes (when they land) are not covered by the refusal of unstorable text:
    # they must keep a payload as received; see docs/security.md "Text input".
    return build_app("webhook", settings, routers=[], refuse_unstorable=False)
