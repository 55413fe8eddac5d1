"""The api process: merchant API under PUBLIC_API_PREFIX, backoffice under INTERNAL_API_PREFIX,
and the payer-facing public invoice view."""

from __future__ import annotations

from fastapi import FastAPI

from nespay.apps.common import build_app
from nespay.config import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    return build_app("api", settings, routers=[])
