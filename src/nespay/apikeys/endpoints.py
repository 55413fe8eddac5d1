"""API key routes: create (the key is shown once), list, revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status

from nespay.apikeys import service
from nespay.apikeys.schemas import ApiKey, ApiKeyCreate, ApiKeyCreated, ApiKeyList
from nespay.auth.deps import MerchantActor, require_scopes
from nespay.auth.principals import Principal
from nespay.auth.scopes import API_KEYS_READ, API_KEYS_WRITE
from nespay.deps import SessionDep
from nespay.kit.pagination import PageDep

router = APIRouter(tags=["api keys"])
Reader = Annotated[Principal, Depends(require_scopes(API_KEYS_READ))]
Writer = Annotated[Principal, Depends(require_scopes(API_KEYS_WRITE))]


@router.post("/api-keys", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated)
async def create_api_key(
    body: ApiKeyCreate, principal: Writer, actor: MerchantActor, session: SessionDep
) -> ApiKeyCreated:
    """Create a key with some of the caller's scopes. The `key` is in this answer only."""
    key, raw = await service.create(session, principal, actor, body)
    return ApiKeyCreated(**ApiKey.model_validate(key).model_dump(), key=raw)


@router.get("/api-keys", response_model=ApiKeyList)
async def list_api_keys(principal: Reader, page: PageDep, session: SessionDep) -> ApiKeyList:
    rows, has_more = await service.list_keys(
        session,
        principal.merchant_id,  # type: ignore[arg-type]
        limit=page.limit,
        starting_after=page.starting_after,
    )
    return ApiKeyList(data=[ApiKey.model_validate(row) for row in rows], has_more=has_more)


@router.delete("/api-keys/{key_id}", response_model=ApiKey)
async def revoke_api_key(
    key_id: str, principal: Writer, actor: MerchantActor, session: SessionDep
) -> ApiKey:
    """Revoke at once: the next request with this key, on any replica, is refused."""
    key = await service.revoke(session, principal.merchant_id, key_id, actor)  # type: ignore[arg-type]
    return ApiKey.model_validate(key)
