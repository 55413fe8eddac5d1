"""The payer's pages on the api process: `GET /pay/{invoice_id}` (HTML), its live status
(`/pay/{invoice_id}/events`, Server-Sent Events) and QR codes (`/pay/{invoice_id}/qr/{n}.svg`).

Unauthenticated like the public invoice view, and showing no more than it. An id that is not
an invoice's, well-formed or not, gets the same friendly 404 page, without a database read
for a malformed one. The routes are not in the OpenAPI documents: they are pages, not API
(the payer's API is `GET /api/v1/public/invoices/{id}`)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from nespay.auth.ratelimit import limit_ip
from nespay.checkout import i18n, page
from nespay.checkout.watch import StatusWatcher
from nespay.invoices import public
from nespay.invoices.service import InvoiceNotFound
from nespay.runtime import Runtime

STATIC = Path(__file__).parent / "static"
INVOICE_ID = re.compile(r"inv_[0-9a-z]{26}")
HEARTBEAT_S = 15.0
STREAM_LIFETIME_S = 600.0  # then the browser reconnects (EventSource does by itself)

router = APIRouter(include_in_schema=False, dependencies=[Depends(limit_ip("public"))])
templates = Environment(
    loader=PackageLoader("nespay.checkout", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

# Nothing from elsewhere, no inline script, no framing: a payment page is a phishing target.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

Lang = Annotated[str | None, Query(alias="lang", max_length=8)]


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def _translator(request: Request, lang: str | None) -> i18n.Translator:
    return i18n.Translator(
        i18n.negotiate(
            lang, request.cookies.get(i18n.COOKIE), request.headers.get("accept-language")
        )
    )


def _html(body: str, status_code: int, language: str, remember: bool) -> HTMLResponse:
    response = HTMLResponse(body, status_code=status_code, headers=SECURITY_HEADERS)
    response.headers["Content-Language"] = language
    response.headers["Vary"] = "Accept-Language, Cookie"
    if remember:
        response.set_cookie(i18n.COOKIE, language, max_age=365 * 86400, samesite="lax")
    return response


def _not_found(t: i18n.Translator, remember: bool) -> HTMLResponse:
    body = templates.get_template("not_found.html").render(t=t, languages=i18n.LANGUAGES)
    return _html(body, 404, t.language, remember)


async def _page(runtime: Runtime, invoice_id: str, t: i18n.Translator) -> page.Page | None:
    """The one read behind every route here: the invoice's public view (its payment options)
    with each option's network (name, chain family) from the catalog; None for no invoice."""
    if not INVOICE_ID.fullmatch(invoice_id):
        return None
    async with runtime.db.snapshot() as session:
        try:
            view = await public.view(session, runtime, invoice_id)
        except InvoiceNotFound:
            return None
    return page.build(view, await runtime.catalog.get(), t)


@router.get("/pay/{invoice_id}")
async def pay(request: Request, invoice_id: str, lang: Lang = None) -> HTMLResponse:
    t = _translator(request, lang)
    built = await _page(_runtime(request), invoice_id, t)
    if built is None:
        return _not_found(t, lang is not None)
    body = templates.get_template("pay.html").render(
        t=t,
        p=built,
        invoice=built.invoice,
        languages=i18n.LANGUAGES,
        strings=orjson.dumps(t.catalog("copy", "copied", "expires_in")).decode(),
    )
    return _html(body, 200, t.language, lang is not None)


@router.get("/pay/{invoice_id}/qr/{index}.svg")
async def qr(request: Request, invoice_id: str, index: int, lang: Lang = None) -> Response:
    t = _translator(request, lang)
    built = await _page(_runtime(request), invoice_id, t)
    if built is None or not 0 <= index < len(built.options):
        return Response(status_code=404, headers=SECURITY_HEADERS)
    if built.options[index].family == "va":  # a bank transfer: nothing for a wallet to scan
        return Response(status_code=404, headers=SECURITY_HEADERS)
    option = built.options[index]
    title = t("qr_label", amount=option.amount_due, currency=option.currency,
              network=option.network_name)  # fmt: skip
    return Response(
        page.qr_svg(option.uri, title), media_type="image/svg+xml", headers=SECURITY_HEADERS
    )


@router.get("/pay/{invoice_id}/events")
async def events(request: Request, invoice_id: str, lang: Lang = None) -> Response:
    """`event: invoice` with the page's changing parts whenever the invoice changes; the
    first one at once (the state may have moved since the page was built); a comment every
    15 s keeps proxies from closing the stream; it ends at a final state."""
    runtime = _runtime(request)
    t = _translator(request, lang)
    built = await _page(runtime, invoice_id, t)
    if built is None:
        return Response(status_code=404, headers=SECURITY_HEADERS)
    watcher = _watcher(request)

    async def stream() -> AsyncIterator[bytes]:
        current = built
        yield b"retry: 3000\n\n" + _event(current)
        if not current.live:
            return
        state = (current.invoice.status, -1)  # unknown paid share: the first poll tells
        deadline = asyncio.get_running_loop().time() + STREAM_LIFETIME_S
        async with watcher.subscribe(invoice_id, state) as queue:
            while current.live and asyncio.get_running_loop().time() < deadline:
                try:
                    await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield b": ping\n\n"
                    continue
                fresh = await _page(runtime, invoice_id, t)
                if fresh is None:
                    return
                current = fresh
                yield _event(current)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={**SECURITY_HEADERS, "X-Accel-Buffering": "no"},
    )


def _event(built: page.Page) -> bytes:
    invoice = built.invoice
    data = {
        "status": invoice.status,
        "amount_due": invoice.amount_due,
        "currency": invoice.currency,
        "message": built.message,
        "live": built.live,
        "payable": built.payable,
        "options": [{"amount_due": o.amount_due, "uri": o.uri} for o in built.options],
    }
    return b"event: invoice\ndata: " + orjson.dumps(data) + b"\n\n"


def _watcher(request: Request) -> StatusWatcher:
    state = request.app.state
    watcher = getattr(state, "checkout_watcher", None)
    if watcher is None:
        watcher = state.checkout_watcher = StatusWatcher(_runtime(request).db)
    return watcher
