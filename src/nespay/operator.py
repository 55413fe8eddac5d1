"""The operator token (`HEALTH_TOKEN`): when set, health detail, `/metrics` and the jobs
status need it (`Authorization: Bearer …` or `X-Health-Token`); liveness stays public."""

from __future__ import annotations

import hmac

from fastapi import Request

from nespay.errors import NespayError
from nespay.kit.openapi import accepts, answers


class OperatorTokenRequired(NespayError):
    status_code = 401
    code = "token_required"
    message = "This endpoint needs the HEALTH_TOKEN as `Authorization: Bearer …`."


def operator_allowed(request: Request) -> bool:
    token = request.app.state.runtime.settings.health_token
    if token is None:
        return True
    presented = request.headers.get("x-health-token", "")
    auth = request.headers.get("authorization", "")
    if not presented and auth[:7].lower() == "bearer ":
        presented = auth[7:]
    return hmac.compare_digest(presented.encode(), token.get_secret_value().encode())


@answers(401)
@accepts("OperatorToken")
async def require_operator(request: Request) -> None:
    """Dependency for operator-only routes."""
    if not operator_allowed(request):
        raise OperatorTokenRequired()
