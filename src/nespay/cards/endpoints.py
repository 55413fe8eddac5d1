"""Card issuing routes for merchants (Rain): card users, their cards, balances and fundings."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, status

from nespay.auth.deps import MerchantActor, require_scopes
from nespay.auth.principals import Principal
from nespay.auth.scopes import CARDS_READ, CARDS_WRITE
from nespay.cards import service
from nespay.cards.rain import RainClient
from nespay.cards.schemas import (
    Card,
    CardCreate,
    CardList,
    CardTransactionList,
    CardUpdate,
    CardUser,
    CardUserBalanceList,
    CardUserCreate,
    Funding,
    FundingCreate,
)
from nespay.deps import RuntimeDep, SessionDep
from nespay.kit.pagination import PageDep
from nespay.kit.responses import JsonResponse

router = APIRouter(tags=["cards"])
Reader = Annotated[Principal, Depends(require_scopes(CARDS_READ))]
Writer = Annotated[Principal, Depends(require_scopes(CARDS_WRITE))]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


async def rain_client(request: Request) -> RainClient:
    """The process's Rain client, made on first use."""
    client = getattr(request.app.state, "rain", None)
    if client is None:
        client = request.app.state.rain = RainClient(request.app.state.runtime.settings)
    return client


Rain = Annotated[RainClient, Depends(rain_client)]


async def close_rain_client(app: Any, runtime: Any) -> None:
    """The api process's stop hook: close the Rain client if one was made."""
    client = getattr(app.state, "rain", None)
    if client is not None:
        await client.close()


def _created(answer: service.Answer) -> JsonResponse:
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
    return JsonResponse(
        answer.value.model_dump(mode="json"), status_code=status.HTTP_201_CREATED, headers=headers
    )


@router.post("/card-users", status_code=status.HTTP_201_CREATED, response_model=CardUser)
async def create_card_user(
    body: CardUserCreate,
    principal: Writer,
    actor: MerchantActor,
    runtime: RuntimeDep,
    rain: Rain,
    idempotency_key: IdempotencyKey = None,
) -> JsonResponse:
    """Submit a user's KYC application to the card issuer. Its decision
    (`application_status`) follows by webhook (`card.application_updated`). 502
    `card_provider_unavailable` when the issuer does not answer; 422 `card_provider_rejected`
    when it refuses the application's fields."""
    return _created(
        await service.create_card_user(runtime, principal, actor, body, idempotency_key, rain)
    )


@router.get("/card-users/{card_user_id}", response_model=CardUser)
async def get_card_user(card_user_id: str, principal: Reader, session: SessionDep) -> CardUser:
    return await service.get_card_user(session, principal.merchant_id, card_user_id)


@router.get("/card-users/{card_user_id}/cards", response_model=CardList)
async def list_cards(card_user_id: str, principal: Reader, session: SessionDep) -> CardList:
    return CardList(data=await service.list_cards(session, principal.merchant_id, card_user_id))


@router.post(
    "/card-users/{card_user_id}/cards", status_code=status.HTTP_201_CREATED, response_model=Card
)
async def create_card(
    card_user_id: str,
    body: CardCreate,
    principal: Writer,
    actor: MerchantActor,
    runtime: RuntimeDep,
    rain: Rain,
    idempotency_key: IdempotencyKey = None,
) -> JsonResponse:
    """Issue a virtual or physical card to an approved card user (409
    `card_user_not_approved` before that), with a USD spending limit and its frequency."""
    return _created(
        await service.create_card(
            runtime, principal, actor, card_user_id, body, idempotency_key, rain
        )
    )


@router.get("/card-users/{card_user_id}/balances", response_model=CardUserBalanceList)
async def card_user_balances(
    card_user_id: str, principal: Reader, session: SessionDep
) -> CardUserBalanceList:
    """What the card user may spend (`available`), what approved authorisations hold, and what
    its cards spent; empty before the first funding."""
    return CardUserBalanceList(
        data=await service.balances(session, principal.merchant_id, card_user_id)
    )


async def _move(direction: str, *args: Any) -> JsonResponse:
    return _created(await service.move(*args, direction=direction))


@router.post(
    "/card-users/{card_user_id}/fundings",
    status_code=status.HTTP_201_CREATED,
    response_model=Funding,
)
async def fund_card_user(
    card_user_id: str,
    body: FundingCreate,
    principal: Writer,
    actor: MerchantActor,
    session: SessionDep,
    idempotency_key: IdempotencyKey = None,
) -> JsonResponse:
    """Move part of the merchant's available balance (a USD stablecoin) to the card user.
    The first funding fixes the card user's network and currency. 422
    `insufficient_balance` when the merchant's balance does not cover it."""
    return await _move("funding", session, principal, actor, card_user_id, body, idempotency_key)


@router.post(
    "/card-users/{card_user_id}/defundings",
    status_code=status.HTTP_201_CREATED,
    response_model=Funding,
)
async def defund_card_user(
    card_user_id: str,
    body: FundingCreate,
    principal: Writer,
    actor: MerchantActor,
    session: SessionDep,
    idempotency_key: IdempotencyKey = None,
) -> JsonResponse:
    """Return part of the card user's available balance (held authorisations excluded) to
    the merchant."""
    return await _move("defunding", session, principal, actor, card_user_id, body, idempotency_key)


@router.get("/cards/{card_id}", response_model=Card)
async def get_card(card_id: str, principal: Reader, session: SessionDep) -> Card:
    return await service.get_card(session, principal.merchant_id, card_id)


@router.patch("/cards/{card_id}", response_model=Card)
async def update_card(
    card_id: str,
    body: CardUpdate,
    principal: Writer,
    actor: MerchantActor,
    runtime: RuntimeDep,
    rain: Rain,
) -> Card:
    """Lock (`status: locked`: every authorisation declined), unlock (`active`), cancel
    (`canceled`, final), or change the limit."""
    return await service.update_card(runtime, principal, actor, card_id, body, rain)


@router.get("/cards/{card_id}/transactions", response_model=CardTransactionList)
async def card_transactions(
    card_id: str, principal: Reader, page: PageDep, session: SessionDep
) -> CardTransactionList:
    """The card's authorisations, newest first, each with its decision and what became of it."""
    data, has_more = await service.card_transactions(
        session,
        principal.merchant_id,
        card_id,
        starting_after=page.starting_after,
        limit=page.limit,
    )
    return CardTransactionList(data=data, has_more=has_more)
