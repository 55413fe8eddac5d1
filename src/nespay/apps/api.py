"""The api process: merchant API under PUBLIC_API_PREFIX, backoffice under INTERNAL_API_PREFIX,
and the payer-facing public invoice view."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from nespay.apikeys.endpoints import router as apikeys_router
from nespay.apps.common import build_app
from nespay.auth.endpoints import router as auth_router
from nespay.auth.ratelimit import limit_ip
from nespay.backoffice.endpoints import router as backoffice_router
from nespay.backoffice.events import router as backoffice_events_router
from nespay.backoffice.invoices import router as backoffice_invoices_router
from nespay.backoffice.payments import router as backoffice_payments_router
from nespay.backoffice.provider_webhooks import router as provider_webhooks_router
from nespay.backoffice.reconciliation import router as reconciliation_router
from nespay.backoffice.reference import router as reference_router
from nespay.backoffice.stats import router as backoffice_stats_router
from nespay.backoffice.sweeps import router as backoffice_sweeps_router
from nespay.backoffice.withdrawals import router as backoffice_withdrawals_router
from nespay.callbacks.endpoints import router as callbacks_router
from nespay.cards.endpoints import close_rain_client
from nespay.cards.endpoints import router as cards_router
from nespay.chains.endpoints import router as chains_router
from nespay.checkout.endpoints import STATIC as CHECKOUT_STATIC
from nespay.checkout.endpoints import router as checkout_router
from nespay.config import Settings, get_settings
from nespay.events.endpoints import router as events_router
from nespay.invoices.endpoints import public_router as public_invoices_router
from nespay.invoices.endpoints import router as invoices_router
from nespay.kit.openapi import BACKOFFICE, errors
from nespay.ledger.endpoints import router as ledger_router
from nespay.merchants.endpoints import router as merchants_router
from nespay.rates.endpoints import rates_router
from nespay.runtime import Runtime
from nespay.withdrawals.endpoints import router as withdrawals_router


def merchant_api() -> APIRouter:
    router = APIRouter(dependencies=[Depends(limit_ip("default"))])
    for domain in (
        auth_router,
        merchants_router,
        apikeys_router,
        callbacks_router,
        events_router,
        invoices_router,
        chains_router,
        ledger_router,
        withdrawals_router,
        cards_router,
    ):
        router.include_router(domain)
    return router


def public_api() -> APIRouter:
    router = APIRouter(dependencies=[Depends(limit_ip("public"))])
    router.include_router(public_invoices_router)
    return router


def backoffice_api() -> APIRouter:
    # Every backoffice route may answer these, in the one error shape (routes add their own).
    router = APIRouter(
        dependencies=[Depends(limit_ip("backoffice"))], responses=errors(*BACKOFFICE)
    )
    router.include_router(backoffice_router)
    router.include_router(rates_router)
    router.include_router(reference_router)
    router.include_router(backoffice_events_router)
    router.include_router(provider_webhooks_router)
    router.include_router(backoffice_invoices_router)
    router.include_router(backoffice_withdrawals_router)
    router.include_router(reconciliation_router)
    router.include_router(backoffice_sweeps_router)
    router.include_router(backoffice_payments_router)
    router.include_router(backoffice_stats_router)
    return router


async def _stop(app: FastAPI, runtime: Runtime) -> None:
    watcher = getattr(app.state, "checkout_watcher", None)
    if watcher is not None:
        await watcher.close()
    await close_rain_client(app, runtime)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = build_app(
        "api",
        settings,
        routers=[
            ("/" + settings.public_api_prefix, merchant_api()),
            ("/" + settings.public_api_prefix, public_api()),
            ("/" + settings.internal_api_prefix, backoffice_api()),
            ("", checkout_router),
        ],
        on_stop=_stop,
    )
    # The hosted checkout's styles and script (no external assets; see nespay.checkout).
    app.mount("/pay/assets", StaticFiles(directory=CHECKOUT_STATIC), name="checkout-assets")
    return app
