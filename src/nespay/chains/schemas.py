"""Request and response models of the reference-data routes: networks, currencies, RPC endpoints.

Backoffice models show everything but secrets: an RPC URL is shown with its provider key,
password or token hidden (`nespay.kit.urls.mask_url`; the stored URL stays whole for the
scanner); merchant-facing models show only what an integration needs.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from nespay.kit.money import from_base_units
from nespay.kit.urls import mask_url, mask_urls_in

ChainFamily = Literal["evm", "tron"]
NetworkCode = Annotated[
    str,
    Field(
        min_length=1,
        max_length=32,
        pattern=r"^[a-z0-9][a-z0-9-]*$",
        description="Lower-case letters, digits and dashes, e.g. polygon-amoy",
    ),
]
CurrencyCode = Annotated[
    str,
    Field(
        min_length=1,
        max_length=16,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9.]*$",
        description="Letters, digits and dots, e.g. USDT or USDC.e",
    ),
]
DustThreshold = Annotated[
    str,
    Field(
        pattern=r"^(0|[1-9][0-9]{0,35})(\.[0-9]{1,36})?$",
        description='Whole units (a decimal string, e.g. "0.01"): transfers below it are '
        "not payments; a transfer of 0 never is. Default 0.",
        examples=["0.01"],
    ),
]
MAX_CHAIN_ID = 2**63 - 1
RPC_SCHEMES = ("http", "https", "ws", "wss")
_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")


def _url(value: str, schemes: tuple[str, ...], max_length: int) -> str:
    # Messages never repeat the value: RPC URLs carry provider keys.
    value = value.strip()
    if len(value) > max_length:
        raise ValueError(f"must be at most {max_length} characters")
    if _CONTROL.search(value):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises on a non-numeric port
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme.lower() not in schemes:
        *first, last = [f"{scheme}://" for scheme in schemes]
        raise ValueError(f"must start with {', '.join(first)} or {last}")
    if not parts.hostname:
        raise ValueError("must name a host")
    return value


def rpc_url(value: str) -> str:
    return _url(value, RPC_SCHEMES, 500)


def web_url(value: str) -> str:
    return _url(value, ("http", "https"), 200)


RpcUrl = Annotated[str, AfterValidator(rpc_url)]
WebUrl = Annotated[str, AfterValidator(web_url)]
Name = Annotated[str, Field(min_length=1, max_length=100)]
Confirmations = Annotated[int, Field(ge=1, le=10_000)]
BlockTime = Annotated[int, Field(ge=1, le=600_000, description="Milliseconds")]
ChainId = Annotated[int, Field(ge=1, le=MAX_CHAIN_ID)]
Decimals = Annotated[int, Field(ge=0, le=36)]
Contract = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        description="EVM: 0x + 40 hex digits; Tron: base58 T… (34 characters)",
    ),
]
Priority = Annotated[int, Field(ge=0, le=1_000_000, description="Lower is tried first")]
ApiKey = Annotated[
    str,
    Field(
        min_length=8,
        max_length=200,
        pattern=r"^[!-~]+$",
        description="Write-only: the provider's API key, sent as `TRON-PRO-API-KEY` to a Tron "
        "endpoint (TronGrid); stored encrypted, never shown (answers say `has_api_key`)",
    ),
]


class _Patch(BaseModel):
    """A partial update: fields left out stay as they are; `null` only where it means something."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _not_null(cls, value: object, info: ValidationInfo) -> object:
        if value is None and info.field_name not in cls._nullable():
            raise ValueError("cannot be null")
        return value

    @classmethod
    def _nullable(cls) -> frozenset[str]:
        return frozenset()

    def changes(self) -> dict[str, object]:
        return self.model_dump(exclude_unset=True)


# --- networks ----------------------------------------------------------------------------------


class NetworkCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: NetworkCode
    name: Name
    chain_family: ChainFamily
    chain_id: ChainId | None = Field(None, description="Required for EVM networks")
    confirmations: Confirmations = 12
    block_time_ms: BlockTime = 12_000
    enabled: bool = False
    is_testnet: bool = False
    explorer_url: WebUrl | None = None


class NetworkUpdate(_Patch):
    code: NetworkCode | None = Field(None, description="Cannot change; if sent, must match")
    name: Name | None = None
    chain_family: ChainFamily | None = None
    chain_id: ChainId | None = None
    confirmations: Confirmations | None = None
    block_time_ms: BlockTime | None = None
    enabled: bool | None = None
    is_testnet: bool | None = None
    explorer_url: WebUrl | None = None

    @classmethod
    def _nullable(cls) -> frozenset[str]:
        return frozenset({"chain_id", "explorer_url"})


class Network(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    chain_family: str
    chain_id: int | None
    confirmations: int
    block_time_ms: int
    enabled: bool
    is_testnet: bool
    explorer_url: str | None
    watch_until: datetime | None = Field(
        description="Switched off while invoices could still be paid on it: scanned until this "
        "chain time"
    )
    created_at: datetime
    updated_at: datetime


class NetworkList(BaseModel):
    data: list[Network]
    has_more: bool


# --- currencies --------------------------------------------------------------------------------


class CurrencyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    network: NetworkCode
    code: CurrencyCode
    contract: Contract | None = Field(None, description="null for the network's native coin")
    decimals: Decimals
    name: Name | None = Field(None, description="Defaults to the code")
    enabled: bool = True
    dust_threshold: DustThreshold = "0"


class CurrencyUpdate(_Patch):
    network: NetworkCode | None = None
    code: CurrencyCode | None = None
    contract: Contract | None = Field(None, description="null makes it the native coin")
    decimals: Decimals | None = None
    name: Name | None = None
    enabled: bool | None = None
    dust_threshold: DustThreshold | None = None

    @classmethod
    def _nullable(cls) -> frozenset[str]:
        return frozenset({"contract"})


class Currency(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    network: str = Field(validation_alias="network_code")
    code: str
    name: str
    contract: str | None = Field(description="null for the native coin")
    decimals: int
    enabled: bool = Field(description="Offered on new invoices")
    dust_threshold: str = Field(
        description="Whole units: transfers below it are not payments (a transfer of 0 never is)"
    )
    watch_until: datetime | None = Field(
        description="Switched off while invoices could still be paid in it: scanned until this "
        "chain time (the last expiry of its invoices plus SCANNER_WATCH_AFTER_EXPIRY_S)"
    )
    created_at: datetime
    updated_at: datetime

    @field_validator("dust_threshold", mode="before")
    @classmethod
    def _whole_units(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, int | Decimal):
            return from_base_units(value, info.data["decimals"])
        return value


class CurrencyList(BaseModel):
    data: list[Currency]
    has_more: bool


# --- RPC endpoints -----------------------------------------------------------------------------


class RpcEndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    network: NetworkCode
    url: RpcUrl = Field(description="http(s):// or ws(s)://; may embed a provider key")
    priority: Priority = 100
    enabled: bool = True
    api_key: ApiKey | None = None


class RpcEndpointUpdate(_Patch):
    network: NetworkCode | None = None
    url: RpcUrl | None = None
    priority: Priority | None = None
    enabled: bool | None = None
    api_key: ApiKey | None = Field(None, description="null removes the endpoint's key")

    @classmethod
    def _nullable(cls) -> frozenset[str]:
        return frozenset({"api_key"})


class RpcEndpoint(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    network: str = Field(validation_alias="network_code")
    url: str = Field(
        description="Any key, password or token in it shown as `***`; sending this form back "
        "in a PATCH keeps the stored URL"
    )
    priority: int
    enabled: bool
    status: Literal["unknown", "up", "down"]
    last_checked_at: datetime | None
    latency_ms: int | None
    head_block: int | None
    consecutive_failures: int
    last_error: str | None
    has_api_key: bool = Field(validation_alias="api_key_encrypted")
    created_at: datetime
    updated_at: datetime

    @field_validator("has_api_key", mode="before")
    @classmethod
    def _has_key(cls, value: object) -> bool:
        return value is not None and value is not False

    @field_validator("url")
    @classmethod
    def _masked_url(cls, value: str) -> str:
        return mask_url(value)

    @field_validator("last_error")
    @classmethod
    def _masked_error(cls, value: str | None) -> str | None:
        return None if value is None else mask_urls_in(value)


class RpcEndpointList(BaseModel):
    data: list[RpcEndpoint]
    has_more: bool


# --- merchant-facing ---------------------------------------------------------------------------


class PublicNetwork(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    chain_family: str
    chain_id: int | None
    confirmations: int
    block_time_ms: int
    is_testnet: bool
    explorer_url: str | None


class PublicNetworkList(BaseModel):
    data: list[PublicNetwork]
    has_more: bool


class PublicCurrency(BaseModel):
    id: str
    code: str
    name: str
    network: str
    chain_family: str
    contract: str | None = Field(description="null for the native coin")
    decimals: int
    confirmations: int = Field(description="Confirmations the network needs before confirmed")


class PublicCurrencyList(BaseModel):
    data: list[PublicCurrency]
    has_more: bool
