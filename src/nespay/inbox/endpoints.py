"""The provider routes of the webhook process: verify (a dependency), store, answer.

Handling happens later (`nespay.inbox.worker`); the answer only says the webhook is stored."""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Request

from nespay.cards import authorisations
from nespay.cards.redaction import redacted_webhook
from nespay.inbox import service
from nespay.inbox.schemas import WebhookReceipt
from nespay.inbox.verify import Received, verified_intrajasa, verified_privy, verified_rain
from nespay.kit.responses import JsonResponse

log = structlog.get_logger("nespay.inbox")
router = APIRouter(tags=["provider webhooks"])


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {
                "example": {"error": {"code": "…", "message": "…", "request_id": "…"}}
            }
        },
    }


COMMON: dict[int | str, dict[str, Any]] = {
    200: {"description": "Stored (or already stored: `duplicate` true); handled asynchronously."},
    400: _error("`webhook_malformed_json`: the body is not a JSON object. Nothing is stored."),
    403: _error(
        "`webhook_source_not_allowed`: the client address is not allowed (with "
        "`WEBHOOK_ENABLE_IP_VALIDATION`). Nothing is stored."
    ),
    413: _error("`webhook_body_too_large`: the body is over 256 KiB. Nothing is stored."),
    503: _error(
        "`webhook_not_configured`: this provider's secret is not set while signature "
        "validation is on (the provider retries later). Nothing is stored."
    ),
}


async def _store(request: Request, received: Received) -> WebhookReceipt:
    runtime = request.app.state.runtime
    webhook_id, duplicate = await service.ingest(runtime, request.app.state.inbox.worker, received)
    return WebhookReceipt(id=webhook_id, duplicate=duplicate)


@router.post(
    "/rain",
    response_model=WebhookReceipt,
    responses={
        **COMMON,
        401: _error(
            "`webhook_signature_invalid`: the `signature` header is not the lowercase hex "
            "HMAC-SHA256 of the raw body under `RAIN_API_KEY`. Nothing is stored."
        ),
        402: {
            "description": "`transaction.requested` (a card authorisation): stored, and "
            "declined with a `rejectionCode` (INSUFFICIENT_FUNDS, NOT_PERMITTED, UNKNOWN); "
            'approved it is answered 200 `{"code": "ok"}` (docs/cards.md).',
            "content": {
                "application/json": {
                    "example": {
                        "code": "declined",
                        "rejectionCode": "INSUFFICIENT_FUNDS",
                        "reason": "insufficient_funds",
                        "id": "pwh_…",
                    }
                }
            },
        },
    },
)
async def rain(request: Request, received: Annotated[Received, Depends(verified_rain)]) -> Any:
    """Rain card-issuing webhooks (`{id, resource, action, body}`); the external id is the
    event `id`, the event type `resource.action`."""
    # A card number or CVC never reaches the table (docs/cards.md "Card data").
    received = redacted_webhook(received)
    if received.event_type == "transaction.requested":
        # A card authorisation: stored and decided at once, in one statement (nespay.cards).
        status, answer = (await authorisations.decide(request.app.state.runtime, received)).answer()
        return JsonResponse(answer, status_code=status)
    return await _store(request, received)


@router.post(
    "/intrajasa",
    response_model=WebhookReceipt,
    responses={
        **COMMON,
        401: _error(
            "`webhook_token_invalid`: the `X-Callback-Token` header (or `Authorization: "
            "Bearer …`) is not `WEBHOOK_INTRAJASA_TOKEN`. Nothing is stored."
        ),
    },
)
async def intrajasa(
    request: Request, received: Annotated[Received, Depends(verified_intrajasa)]
) -> WebhookReceipt:
    """Intrajasa virtual-account callbacks; the external id is the transaction reference
    (`transactionId`, `transactionReference`, `merchantRefCode` or `vaNumber`)."""
    return await _store(request, received)


@router.post(
    "/privy",
    response_model=WebhookReceipt,
    responses={
        **COMMON,
        401: _error(
            "`webhook_signature_invalid`: the Svix headers (`svix-id`, `svix-timestamp`, "
            "`svix-signature`) do not verify under `PRIVY_WEBHOOK_SECRET`, or the timestamp "
            "is more than 5 minutes away. Nothing is stored."
        ),
    },
)
async def privy(
    request: Request, received: Annotated[Received, Depends(verified_privy)]
) -> WebhookReceipt:
    """Privy webhooks, delivered by Svix; the external id is `svix-id`, the event type the
    body's `type`."""
    return await _store(request, received)
