"""`GET /whoami`: which credential a request carries and what it may do — for a merchant
checking a new API key's scopes or a deployment's configuration, without touching any of the
merchant's objects. Authentication only: it reads nothing the request's sign-in did not."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from nespay.auth.deps import SignedIn

router = APIRouter(tags=["auth"])


class Whoami(BaseModel):
    kind: str = Field(description="api_key, or merchant_user / user for a Cognito sign-in")
    id: str = Field(description="the API key's id, or the user's Cognito subject")
    merchant_id: str | None = Field(description="null for a user who has no merchant yet")
    role: str | None
    scopes: list[str]


@router.get("/whoami", response_model=Whoami, summary="The caller's credential and scopes")
async def whoami(principal: SignedIn) -> Whoami:
    return Whoami(
        kind=principal.kind,
        id=principal.id,
        merchant_id=principal.merchant_id,
        role=principal.role,
        scopes=sorted(principal.scopes),
    )
