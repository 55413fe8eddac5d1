"""Calls to Intrajasa's VA API (`/vaonline/rest/json/…`), with httpx.

Every call is two requests: `gettoken` for the merchant reference it is about (Intrajasa's
tokens are single-use), then the call itself with `?t=sha256hex(token)` and a `secureCode`
over the fields. A call is retried as a whole (a fresh token each time) on a transport error
or a 5xx only; any other answer is final. JSON numbers in answers are read as exact decimals
(Intrajasa sends amounts as `25000.00` strings or numbers: never a float here). The secret
word, tokens and secure codes are never logged.

`getstatus` (the status inquiry) is not in the public contract we know: its shape is the
narrowest one consistent with `generateva` (docs/intrajasa.md, "Assumed").
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import structlog

from nespay.config import Settings
from nespay.errors import NespayError

log = structlog.get_logger("nespay.intrajasa")

TOKEN_PATH = "/vaonline/rest/json/gettoken"  # noqa: S105 - a path
GENERATE_VA_PATH = "/vaonline/rest/json/generateva"
STATUS_PATH = "/vaonline/rest/json/getstatus"
ONE_TIME_VA = 1  # vaType: 1 one-time, 2 continuous, 3 phone number
PAID = 1  # getstatus `paymentStatus` of a paid VA
DECIMALS = 2  # "25000.00": amounts travel with two decimals
RETRY_DELAYS_S = (0.25, 1.0)  # two retries
_WIRE_AMOUNT = re.compile(r"[0-9]{1,15}(\.[0-9]{1,2})?")
_VA_NUMBER = re.compile(r"[0-9]{6,32}")


class IntrajasaError(NespayError):
    status_code = 503
    code = "intrajasa_unavailable"
    message = "Intrajasa cannot be reached right now; try again shortly."


class IntrajasaNotConfigured(IntrajasaError):
    code = "intrajasa_not_configured"
    message = (
        "Intrajasa virtual accounts are not configured on this Nespay "
        "(INTRAJASA_MERCHANT_ID, INTRAJASA_SECRET_WORD)."
    )


class IntrajasaRejected(IntrajasaError):
    """Intrajasa answered, and refused (a 4xx, or a `responseCode` other than 200)."""

    status_code = 502
    code = "intrajasa_rejected"
    message = "Intrajasa refused the request."


def sha256hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def sha1hex(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - Intrajasa's scheme


def token_secure_code(merchant_id: str, ref: str, secret_word: str) -> str:
    return sha256hex(merchant_id + ref + sha1hex(secret_word))


def va_secure_code(merchant_id: str, token: str, ref: str, cust_name: str, amount: str) -> str:
    return sha256hex(merchant_id + token + ref + cust_name + amount)


def status_secure_code(merchant_id: str, token: str, ref: str, va_number: str, amount: str) -> str:
    """Assumed: generateva's pattern with the VA number in the customer name's place."""
    return sha256hex(merchant_id + token + ref + va_number + amount)


def wire_amount(base_units: int) -> str:
    """Base units (sen) → Intrajasa's `"25000.00"`."""
    return f"{Decimal(base_units).scaleb(-DECIMALS):.{DECIMALS}f}"


def parse_wire_amount(value: Any) -> int | None:
    """Intrajasa's amount (a `"25000.00"` string, or a JSON number read as a Decimal) →
    base units; None when it is not a plain, positive amount with at most two decimals."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, Decimal):
        text = str(value)  # as written: an exponent (1E+3) or NaN is refused below
    elif isinstance(value, str):
        text = value
    else:
        return None
    if not _WIRE_AMOUNT.fullmatch(text):
        return None
    amount = int(Decimal(text).scaleb(DECIMALS))
    return amount if amount > 0 else None


def is_va_number(value: Any) -> bool:
    return isinstance(value, str) and _VA_NUMBER.fullmatch(value) is not None


def read_json(raw: bytes) -> Any:
    """JSON with exact decimals (never a float)."""
    return json.loads(raw, parse_float=Decimal, parse_constant=_no_constant)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


@dataclass(frozen=True)
class VirtualAccount:
    merchant_ref_code: str
    va_number: str
    amount: int  # base units


@dataclass(frozen=True)
class VaStatus:
    paid: bool
    amount: int | None  # what Intrajasa says the VA is for, in base units
    payment_status: Any


def _ok(data: Any) -> bool:
    return isinstance(data, dict) and str(data.get("responseCode")) == "200"


class IntrajasaClient:
    def __init__(
        self,
        settings: Settings,
        *,
        http: httpx.AsyncClient | None = None,
        retry_delays: tuple[float, ...] = RETRY_DELAYS_S,
    ) -> None:
        self._settings = settings
        self._base = settings.intrajasa_base_url.rstrip("/")
        self._http = http or httpx.AsyncClient(
            timeout=settings.intrajasa_timeout_s, follow_redirects=False
        )
        self._retry_delays = retry_delays

    @property
    def configured(self) -> bool:
        return self._settings.intrajasa_enabled

    def _credentials(self) -> tuple[str, str]:
        merchant = self._settings.intrajasa_merchant_id
        secret = self._settings.intrajasa_secret_word
        if not merchant or secret is None:
            raise IntrajasaNotConfigured()
        return merchant, secret.get_secret_value()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _post_once(self, path: str, body: dict[str, Any], token: str | None) -> Any:
        """One request; raises `_Retry` for what may pass on a retry."""
        params = {"t": sha256hex(token)} if token is not None else None
        try:
            response = await self._http.post(self._base + path, json=body, params=params)
        except httpx.HTTPError as error:
            raise _Retry(f"{type(error).__name__} reaching Intrajasa") from None
        if response.status_code >= 500:
            raise _Retry(f"HTTP {response.status_code}")
        try:
            data = read_json(response.content)
        except ValueError:
            data = None
        if response.status_code >= 400 or not _ok(data):
            code = data.get("responseCode") if isinstance(data, dict) else None
            text = data.get("responseMsg") if isinstance(data, dict) else None
            log.error(
                "intrajasa_rejected",
                path=path,
                status=response.status_code,
                response_code=str(code)[:20] if code is not None else None,
                response_msg=str(text)[:200] if text is not None else None,
            )
            raise IntrajasaRejected(
                f"Intrajasa refused {path.rsplit('/', 1)[-1]} (HTTP {response.status_code}"
                + (f", responseCode {str(code)[:20]}" if code is not None else "")
                + ")."
            )
        return data

    async def _call(self, ref: str, path: str, build: Any) -> dict[str, Any]:
        """`gettoken` for `ref`, then `path` with the body `build(merchant, token)` makes;
        retried as a whole on a transport error or a 5xx."""
        merchant, secret = self._credentials()
        attempts = len(self._retry_delays) + 1
        failure = ""
        for attempt in range(attempts):
            try:
                token = await self._token(merchant, ref, secret)
                return await self._post_once(path, build(merchant, token), token)
            except _Retry as retry:
                failure = str(retry)
            if attempt + 1 < attempts:
                delay = self._retry_delays[attempt]
                log.warning("intrajasa_retry", path=path, attempt=attempt + 1, failure=failure)
                await asyncio.sleep(delay)
        log.error("intrajasa_unavailable", path=path, attempts=attempts, failure=failure)
        raise IntrajasaError(
            f"Intrajasa did not answer after {attempts} attempts ({failure}); try again shortly."
        )

    async def _token(self, merchant: str, ref: str, secret: str) -> str:
        body = {
            "merchantId": merchant,
            "merchantRefCode": ref,
            "secureCode": token_secure_code(merchant, ref, secret),
        }
        data = await self._post_once(TOKEN_PATH, body, None)
        token = data.get("Token")
        if not isinstance(token, str) or not token:
            log.error("intrajasa_bad_answer", path=TOKEN_PATH, reason="no token")
            raise IntrajasaError("Intrajasa answered gettoken without a token.")
        return token

    async def generate_va(self, ref: str, cust_name: str, amount: int) -> VirtualAccount:
        """A one-time VA for `amount` base units under merchant reference `ref` (the same
        reference and amount again: the same VA, see docs/intrajasa.md)."""
        total = wire_amount(amount)

        def build(merchant: str, token: str) -> dict[str, Any]:
            return {
                "merchantId": merchant,
                "merchantRefCode": ref,
                "customerData": {"custName": cust_name},
                "totalAmount": total,
                "vaType": ONE_TIME_VA,
                "secureCode": va_secure_code(merchant, token, ref, cust_name, total),
            }

        data = await self._call(ref, GENERATE_VA_PATH, build)
        va_number = data.get("vaNumber")
        if not is_va_number(va_number):
            log.error("intrajasa_bad_answer", path=GENERATE_VA_PATH, reason="no vaNumber")
            raise IntrajasaError("Intrajasa answered generateva without a usable vaNumber.")
        return VirtualAccount(ref, va_number, amount)

    async def status(self, ref: str, va_number: str, amount: int) -> VaStatus:
        """Whether Intrajasa says the VA (`ref`, `va_number`, `amount`) is paid."""
        total = wire_amount(amount)

        def build(merchant: str, token: str) -> dict[str, Any]:
            return {
                "merchantId": merchant,
                "merchantRefCode": ref,
                "vaNumber": va_number,
                "totalAmount": total,
                "secureCode": status_secure_code(merchant, token, ref, va_number, total),
            }

        data = await self._call(ref, STATUS_PATH, build)
        status = data.get("paymentStatus")
        paid = str(status) == str(PAID) and data.get("vaNumber") in (None, va_number)
        return VaStatus(paid, parse_wire_amount(data.get("totalAmount")), status)


class _Retry(Exception):
    """A failure worth another try (transport, 5xx)."""
