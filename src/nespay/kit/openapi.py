"""The one error shape in the OpenAPI documents: `responses=errors(401, 403, 404)` on a route
declares those answers with the `ErrorResponse` schema (what `nespay.errors` renders)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI, routing
from fastapi.openapi.utils import _get_api_route_for_openapi
from pydantic import BaseModel, Field

T = TypeVar("T")


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
    413: "The body is too large.",
    422: "Invalid input (`validation_error` with `fields`, or a code of the route's).",
    429: "Rate limited (`rate_limited`, with `Retry-After`).",
    502: "The provider answered with an error.",
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


# --- what a route's dependencies can answer -----------------------------------------------------

ANSWERS = "__nespay_answers__"


def answers(*statuses: int) -> Callable[[T], T]:
    """Mark a dependency with the error statuses it can answer (an auth dependency 401, 403,
    429, 503): every route that depends on it documents them (`document_answers`)."""

    def mark(dependency: T) -> T:
        setattr(dependency, ANSWERS, statuses)
        return dependency

    return mark


def route_answers(route: Any) -> set[int]:
    """The error statuses `route` can answer through its dependencies and parameters: what its
    dependencies are marked with (`answers`), 404 for an unknown object in the path, 422 for
    any parameter or body (and the app-wide refusal of unstorable text)."""
    found, pending = {422}, [route.dependant]
    while pending:
        dependant = pending.pop()
        found.update(getattr(dependant.call, ANSWERS, ()))
        pending.extend(dependant.dependencies)
    if route.dependant.path_params:
        found.add(404)
    return found


def document_answers(app: FastAPI) -> None:
    """Add to every operation of `app`'s OpenAPI document, in the one error shape, each error
    status its route can answer (`route_answers`) that the route does not describe itself, and
    the credentials it takes (`securitySchemes`)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        error = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, model in error.pop("$defs", {}).items():
            schemas.setdefault(name, model)
        schemas.setdefault("ErrorResponse", error)
        security: set[str] = set()
        for context in routing.iter_route_contexts(app.routes):
            route = _get_api_route_for_openapi(context)
            if route is None or not route.include_in_schema:
                continue
            statuses = route_answers(route)
            schemes = _schemes(route)
            security.update(schemes)
            for method in route.methods:
                operation = schema["paths"].get(route.path_format, {}).get(method.lower())
                if operation is None:
                    continue
                responses = operation.setdefault("responses", {})
                for status in sorted(statuses):
                    responses.setdefault(str(status), _answer(status))
                if schemes and "security" not in operation:
                    operation["security"] = [{name: []} for name in schemes]
        wanted = {name: SECURITY_SCHEMES[name] for name in sorted(security)}
        if wanted:
            components.setdefault("securitySchemes", {}).update(wanted)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


SCHEMES = "__nespay_schemes__"
SECURITY_SCHEMES = {
    "ApiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Api-Key",
        "description": "A merchant API key (`npk_…`), scoped.",
    },
    "CognitoToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A Cognito ID or access token of the merchant or the admin user pool.",
    },
    "OperatorToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The operator token (`HEALTH_TOKEN`).",
    },
}


def accepts(*schemes: str) -> Callable[[T], T]:
    """Mark a dependency with the credentials (`SECURITY_SCHEMES` names) it takes."""

    def mark(dependency: T) -> T:
        setattr(dependency, SCHEMES, schemes)
        return dependency

    return mark


def _schemes(route: Any) -> list[str]:
    found: list[str] = []
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        found.extend(s for s in getattr(dependant.call, SCHEMES, ()) if s not in found)
        pending.extend(dependant.dependencies)
    return found


def _answer(status: int) -> dict[str, Any]:
    return {
        "description": _DESCRIPTIONS.get(status, "Error."),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }
