"""Merchant routes: `POST /merchants`, `GET|PATCH /merchants/me`, the merchant's users."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status

from nespay.auth.deps import MerchantActor, SignedIn, require_scopes
from nespay.auth.principals import Principal
from nespay.auth.scopes import MERCHANT_READ, MERCHANT_WRITE
from nespay.deps import RuntimeDep, SessionDep
from nespay.kit.openapi import errors
from nespay.kit.pagination import PageDep, fetch_size, split_page
from nespay.kit.responses import JsonResponse
from nespay.merchants import repository, service
from nespay.merchants.schemas import (
    Merchant,
    MerchantCreate,
    MerchantSettingsUpdate,
    MerchantUser,
    MerchantUserCreate,
    MerchantUserList,
)

router = APIRouter(tags=["merchants"])
Reader = Annotated[Principal, Depends(require_scopes(MERCHANT_READ))]
Writer = Annotated[Principal, Depends(require_scopes(MERCHANT_WRITE))]


@router.post(
    "/merchants",
    status_code=status.HTTP_201_CREATED,
    response_model=Merchant,
    responses=errors(409, e409="`merchant_exists`: this user already belongs to a merchant."),
)
async def create_merchant(
    body: MerchantCreate, principal: SignedIn, actor: MerchantActor, session: SessionDep
) -> Merchant:
    """The signed-in user creates its merchant and becomes its owner."""
    return Merchant.model_validate(await service.create(session, principal, actor, body))


@router.get("/merchants/me", response_model=Merchant)
async def get_my_merchant(principal: Reader, runtime: RuntimeDep) -> JsonResponse:
    """A read: one statement, no transaction; rendered without a second validation pass."""
    merchant = Merchant.model_validate(await service.read(runtime.db, principal.merchant_id))  # type: ignore[arg-type]
    return JsonResponse(merchant.model_dump(mode="json"))


@router.patch("/merchants/me", response_model=Merchant)
async def update_my_merchant(
    body: MerchantSettingsUpdate, principal: Writer, actor: MerchantActor, session: SessionDep
) -> Merchant:
    merchant = await service.update_settings(session, principal.merchant_id, actor, body)  # type: ignore[arg-type]
    return Merchant.model_validate(merchant)


@router.get("/merchants/me/users", response_model=MerchantUserList)
async def list_users(principal: Reader, page: PageDep, session: SessionDep) -> MerchantUserList:
    rows = await repository.users(
        session,
        principal.merchant_id,  # type: ignore[arg-type]
        limit=fetch_size(page.limit),
        starting_after=page.starting_after,
    )
    rows, has_more = split_page(rows, page.limit)
    return MerchantUserList(
        data=[MerchantUser.model_validate(row) for row in rows], has_more=has_more
    )


@router.post(
    "/merchants/me/users",
    status_code=status.HTTP_201_CREATED,
    response_model=MerchantUser,
    responses=errors(
        409, e409="`user_belongs_to_a_merchant`: that Cognito user already belongs to a merchant."
    ),
)
async def add_user(
    body: MerchantUserCreate, principal: Writer, actor: MerchantActor, session: SessionDep
) -> MerchantUser:
    user = await service.add_user(session, principal.merchant_id, actor, body)  # type: ignore[arg-type]
    return MerchantUser.model_validate(user)


@router.delete("/merchants/me/users/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_user(
    user_id: str, principal: Writer, actor: MerchantActor, session: SessionDep
) -> None:
    await service.remove_user(session, principal.merchant_id, actor, user_id)  # type: ignore[arg-type]
