"""Merchants: creation by a signed-in user (who becomes the owner), settings, users,
suspension by admins. Every change is audit-logged in the same transaction."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.audit.service import record
from nespay.auth.cache import MerchantSettings, mark_changed
from nespay.auth.principals import Actor, Principal
from nespay.db import Database
from nespay.errors import Conflict, NotFound
from nespay.kit.ids import new_id
from nespay.merchants import repository
from nespay.merchants.schemas import MerchantCreate, MerchantSettingsUpdate, MerchantUserCreate
from nespay.models import Merchant, MerchantUser

SETTINGS_FIELDS = (
    "name",
    "email",
    "underpayment_tolerance_bps",
    "default_expiry_s",
    "withdrawal_approval_threshold_usd",
)
# The settings the auth cache keeps beside a credential: changing one invalidates it.
CACHED_SETTINGS = frozenset(field.name for field in dataclasses.fields(MerchantSettings))


class MerchantExists(Conflict):
    code = "merchant_exists"
    message = "This user already belongs to a merchant."


class MerchantNotFound(NotFound):
    code = "merchant_not_found"
    message = "No such merchant."


class MerchantUserNotFound(NotFound):
    code = "merchant_user_not_found"
    message = "No such user in this merchant."


class UserTaken(Conflict):
    code = "user_belongs_to_a_merchant"
    message = "That Cognito user already belongs to a merchant."


class OwnerCannotBeRemoved(Conflict):
    code = "owner_cannot_be_removed"
    message = "The owner cannot be removed from the merchant."


def snapshot(merchant: Merchant, fields: Sequence[str] = SETTINGS_FIELDS) -> dict[str, Any]:
    return {field: _plain(getattr(merchant, field)) for field in fields}


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, bool, type(None))) else str(value)


async def create(
    session: AsyncSession, principal: Principal, actor: Actor, body: MerchantCreate
) -> Merchant:
    if principal.merchant_id is not None or await repository.user_by_sub(session, principal.id):
        raise MerchantExists()
    merchant = await create_merchant(session, actor, body.name, body.email, body.country)
    session.add(
        MerchantUser(
            id=new_id("mus"),
            merchant_id=merchant.id,
            cognito_sub=principal.id,
            email=principal.email,
            role="owner",
        )
    )
    try:
        await session.flush()
    except IntegrityError:  # the same user, twice at once
        raise MerchantExists() from None
    return merchant


async def create_merchant(
    session: AsyncSession, actor: Actor, name: str, email: str, country: str
) -> Merchant:
    merchant = Merchant(id=new_id("mer"), name=name, email=email, country=country)
    session.add(merchant)
    await session.flush()
    await session.refresh(merchant)
    await record(
        session,
        actor,
        "merchant.created",
        target_type="merchant",
        target_id=merchant.id,
        merchant_id=merchant.id,
        after=snapshot(merchant, ("name", "email")),
    )
    return merchant


async def search(
    session: AsyncSession,
    q: str | None,
    *,
    status: str | None,
    limit: int,
    starting_after: str | None,
) -> Sequence[Merchant]:
    """Merchants whose name, email or id holds the fragment `q` (trigram indexes)."""
    return await repository.search(
        session, q, status=status, limit=limit, starting_after=starting_after
    )


async def get(session: AsyncSession, merchant_id: str) -> Merchant:
    merchant = await repository.get(session, merchant_id)
    if merchant is None:
        raise MerchantNotFound()
    return merchant


async def read(db: Database, merchant_id: str) -> dict[str, Any]:
    """The merchant as the API shows it, in one statement outside any transaction."""
    async with db.driver() as conn:
        row = await repository.read(conn, merchant_id)
    if row is None:
        raise MerchantNotFound()
    return dict(row)


async def update_settings(
    session: AsyncSession, merchant_id: str, actor: Actor, body: MerchantSettingsUpdate
) -> Merchant:
    merchant = await repository.get(session, merchant_id, for_update=True)
    if merchant is None:
        raise MerchantNotFound()
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    before = snapshot(merchant, list(changes))
    for field, value in changes.items():
        setattr(merchant, field, value)
    await session.flush()
    if changes.keys() & CACHED_SETTINGS:
        mark_changed(session)  # invoice creation reads them from the auth cache
    if changes:
        await record(
            session,
            actor,
            "merchant.settings_updated",
            target_type="merchant",
            target_id=merchant.id,
            merchant_id=merchant.id,
            before=before,
            after=snapshot(merchant, list(changes)),
        )
    return merchant


async def set_status(
    session: AsyncSession, merchant_id: str, actor: Actor, status: str, reason: str | None
) -> Merchant:
    merchant = await repository.get(session, merchant_id, for_update=True)
    if merchant is None:
        raise MerchantNotFound()
    before = {"status": merchant.status, "suspended_reason": merchant.suspended_reason}
    merchant.status = status
    merchant.suspended_reason = reason if status == "suspended" else None
    await session.flush()
    mark_changed(session)
    action = "merchant.suspended" if status == "suspended" else "merchant.reactivated"
    await record(
        session,
        actor,
        action,
        target_type="merchant",
        target_id=merchant.id,
        merchant_id=merchant.id,
        before=before,
        after={"status": merchant.status, "suspended_reason": merchant.suspended_reason},
    )
    return merchant


async def add_user(
    session: AsyncSession, merchant_id: str, actor: Actor, body: MerchantUserCreate
) -> MerchantUser:
    if await repository.user_by_sub(session, body.cognito_sub):
        raise UserTaken()
    user = MerchantUser(
        id=new_id("mus"),
        merchant_id=merchant_id,
        cognito_sub=body.cognito_sub,
        email=body.email,
        role=body.role,
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError:
        raise UserTaken() from None
    await session.refresh(user)
    await record(
        session,
        actor,
        "merchant_user.added",
        target_type="merchant_user",
        target_id=user.id,
        merchant_id=merchant_id,
        after={"cognito_sub": user.cognito_sub, "role": user.role},
    )
    return user


async def remove_user(session: AsyncSession, merchant_id: str, actor: Actor, user_id: str) -> None:
    user = await repository.user(session, merchant_id, user_id)
    if user is None:
        raise MerchantUserNotFound()
    if user.role == "owner":
        raise OwnerCannotBeRemoved()
    await session.delete(user)
    mark_changed(session)
    await record(
        session,
        actor,
        "merchant_user.removed",
        target_type="merchant_user",
        target_id=user_id,
        merchant_id=merchant_id,
        before={"cognito_sub": user.cognito_sub, "role": user.role},
    )
