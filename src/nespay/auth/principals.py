"""Who is calling, once authenticated, and how that reads in the audit log."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["api_key", "merchant_user", "admin", "user"]


@dataclass(frozen=True)
class Principal:
    """`user` is a signed-in Cognito user who has no merchant yet (may only create one)."""

    kind: Kind
    id: str
    merchant_id: str | None
    scopes: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    email: str | None = None
    role: str | None = None


@dataclass(frozen=True)
class Actor:
    """The audit log's "who, from where" for one request or job."""

    type: str
    id: str | None
    merchant_id: str | None = None
    ip: str | None = None
    request_id: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, principal: Principal | None, ip: str | None, request_id: str | None) -> Actor:
        if principal is None:
            return cls("anonymous", None, None, ip, request_id)
        actor_type = "merchant_user" if principal.kind == "user" else principal.kind
        return cls(actor_type, principal.id, principal.merchant_id, ip, request_id)


SYSTEM = Actor("system", "nespay")
