"""The one error shape in the OpenAPI documents: `responses=errors(401, 403, 404)` on a route
declares those answers with the `ErrorResponse` schema (what `nespay.errors` renders)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorField(BaseModel):
    field: str
    message: str
    type: str


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable: `invoice_not_found`, …")
    message: str
    request_id: str | None = Field(description="Also in the `x-request-id` header")
    fields: list[ErrorField] | None = Field(
        None, description="Validation errors only: every offending field"
    )


class ErrorResponse(BaseModel):
    error: ErrorDetail


_DESCRIPTIONS = {
    400: "Bad request.",
    401: "No valid credentials (`authentication_required`, `token_expired`, …).",
    403: "Valid credentials without the right (`admin_role_missing`, …).",
    404: "No such object.",
    409: "The object's state does not allow it.",
    422: "Invalid input (`validation_error` with `fields`, or a code of the route's).",
    429: "Rate limited (`rate_limited`, with `Retry-After`).",
    503: "A dependency is unavailable (`auth_unavailable`, …).",
}


def errors(*statuses: int, **described: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses; `described` (`e404="…"`) overrides a
    status's description."""
    answers: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        text = described.get(f"e{status}", _DESCRIPTIONS.get(status, "Error."))
        answers[status] = {"model": ErrorResponse, "description": text}
    return answers


# What every backoffice route may answer besides its own errors.
BACKOFFICE = (401, 403, 422, 429)
