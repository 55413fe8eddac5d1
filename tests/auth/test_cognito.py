"""Cognito token verification against real moto tokens and a local issuer we hold keys for."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from nespay.auth.cognito import (
    CognitoClaims,
    CognitoUnavailable,
    CognitoVerifier,
    TokenInvalid,
    bearer_token,
)
from nespay.config import Settings
from tests.fixtures.processes import free_port

if TYPE_CHECKING:
    from tests.fixtures.cognito import CognitoStack, LocalIssuer

# The `cognito` (moto, session) and `local_issuer` fixtures come from tests/conftest.py's
# plugins; only types are imported from there (above).
USER_CLIENT, ADMIN_CLIENT = "<user-client>", "<admin-client>"  # placeholders, see `resolve`

MakeVerifier = Callable[..., CognitoVerifier]


class FakeClock:
    """Monotonic time the test moves by hand, to cross refresh intervals without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
async def make_verifier() -> AsyncIterator[MakeVerifier]:
    made: list[CognitoVerifier] = []

    def make(settings: Settings, **options: Any) -> CognitoVerifier:
        verifier = CognitoVerifier(settings, **options)
        made.append(verifier)
        return verifier

    yield make
    for verifier in made:
        await verifier.aclose()


async def refused(verifier: CognitoVerifier, token: Any) -> TokenInvalid | CognitoUnavailable:
    """The error `verify` raises; anything other than our 401/503 errors fails the test."""
    with pytest.raises((TokenInvalid, CognitoUnavailable)) as caught:
        await verifier.verify(token)
    error = caught.value
    assert error.status_code in (401, 503)
    if isinstance(token, str) and len(token) > 8:
        assert token not in error.message
        assert all(part not in error.message for part in token.split(".") if len(part) > 8)
    return error


def b64url(data: bytes | dict[str, Any]) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def resolve(changes: dict[str, Any], issuer: LocalIssuer) -> dict[str, Any]:
    """Swap the client-id placeholders of a parametrized case for the local issuer's ids."""
    names = {USER_CLIENT: issuer.user_client_id, ADMIN_CLIENT: issuer.admin_client_id}

    def swap(value: Any) -> Any:
        if isinstance(value, list):
            return [swap(item) for item in value]
        return names.get(value, value) if isinstance(value, str) else value

    return {name: swap(value) for name, value in changes.items()}


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return f"{b64url(header)}.{b64url(claims)}.{b64url(signature)}"


def moto_claims(cognito: CognitoStack, pool: str = "user") -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": cognito.issuer(pool),
        "sub": "forged",
        "aud": cognito.client_id(pool),
        "token_use": "id",
        "iat": now,
        "exp": now + 3600,
    }


# --- real moto tokens ----------------------------------------------------------------------
async def test_user_pool_id_token_verifies(cognito: CognitoStack, make_verifier: MakeVerifier):
    verifier = make_verifier(cognito.settings())
    claims = await verifier.verify(cognito.tokens("user")["IdToken"])
    assert isinstance(claims, CognitoClaims)
    assert claims.pool == "user"
    assert claims.token_use == "id"
    assert claims.client_id == cognito.user_client_id
    assert claims.username == "merchant@example.com"
    assert claims.email == "merchant@example.com"
    assert claims.groups == ()
    assert claims.sub and claims.sub == claims.raw["sub"]
    assert claims.raw["iss"] == cognito.issuer("user")


async def test_user_pool_access_token_verifies(cognito: CognitoStack, make_verifier: MakeVerifier):
    verifier = make_verifier(cognito.settings())
    tokens = cognito.tokens("user")
    access = await verifier.verify(tokens["AccessToken"])
    identity = await verifier.verify(tokens["IdToken"])
    assert (access.pool, access.token_use) == ("user", "access")
    assert access.client_id == cognito.user_client_id
    assert access.username == "merchant@example.com"
    assert access.email is None  # access tokens carry no email
    assert access.sub == identity.sub


async def test_admin_tokens_verify_with_admin_pool_and_groups(
    cognito: CognitoStack, make_verifier: MakeVerifier
):
    verifier = make_verifier(cognito.settings())
    tokens = cognito.tokens("admin")
    for token, use in ((tokens["IdToken"], "id"), (tokens["AccessToken"], "access")):
        claims = await verifier.verify(token)
        assert (claims.pool, claims.token_use) == ("admin", use)
        assert claims.client_id == cognito.admin_client_id
        assert claims.groups == ("admin",)
        assert claims.username == "admin@example.com"


async def test_pools_are_never_confused(cognito: CognitoStack, make_verifier: MakeVerifier):
    both = make_verifier(cognito.settings())
    user_token = cognito.tokens("user")["IdToken"]
    admin_token = cognito.tokens("admin")["AccessToken"]
    assert (await both.verify(user_token)).pool == "user"
    assert (await both.verify(admin_token)).pool == "admin"

    users_only = make_verifier(cognito.settings(admin_pool_id=None, admin_client_id=None))
    assert users_only.pools == ("user",)
    assert (await refused(users_only, admin_token)).code == "token_issuer_unknown"
    assert (await users_only.verify(user_token)).pool == "user"

    admins_only = make_verifier(cognito.settings(user_pool_id=None, user_client_id=None))
    assert (await refused(admins_only, user_token)).code == "token_issuer_unknown"

    # a pool id without its client id is not trusted either
    no_admin_client = make_verifier(cognito.settings(admin_client_id=None))
    assert (await refused(no_admin_client, admin_token)).code == "token_issuer_unknown"


async def test_swapped_pool_ids_reject_by_client(
    cognito: CognitoStack, make_verifier: MakeVerifier
):
    """moto signs every pool with one key, so the client id check must catch a mixed-up config."""
    swapped = make_verifier(
        cognito.settings(
            user_client_id=cognito.admin_client_id, admin_client_id=cognito.user_client_id
        )
    )
    error = await refused(swapped, cognito.tokens("user")["IdToken"])
    assert error.code == "token_audience_invalid"


async def test_other_app_client_of_the_pool_is_refused(
    cognito: CognitoStack, make_verifier: MakeVerifier
):
    verifier = make_verifier(cognito.settings())
    other_client = cognito.add_client("user", "someone-elses-app")
    tokens = cognito.tokens("user", client_id=other_client)
    assert (await refused(verifier, tokens["IdToken"])).code == "token_audience_invalid"
    assert (await refused(verifier, tokens["AccessToken"])).code == "token_audience_invalid"


async def test_moto_jwks_serves_the_moto_pool(cognito: CognitoStack):
    """Pins what the verifier relies on from moto: JWKS path and the RS256 key moto signs with."""
    async with httpx.AsyncClient() as http:
        answer = await http.get(cognito.jwks_url("user"))
    assert answer.status_code == 200
    [key] = answer.json()["keys"]
    token = cognito.tokens("user")["IdToken"]
    assert jwt.get_unverified_header(token) == {"typ": "JWT", "kid": key["kid"], "alg": "RS256"}


# --- bad input: each its own code, never a 500 ---------------------------------------------
GARBAGE = [
    "",
    "a.b.c",
    ".",
    "..",
    "not a token",
    "Bearer x.y.z",
    base64.urlsafe_b64encode(os.urandom(300)).decode(),
    ".".join(base64.urlsafe_b64encode(os.urandom(60)).decode().rstrip("=") for _ in range(3)),
    "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln",  # payload is not JSON
    "W10.e30.c2ln",  # header is a JSON array
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ.W10.c2ln",  # payload is a JSON array
    "\u00e9\u00e9.\u00e9.\u00e9",
    "x" * 1_000_000,
    "eyJ" * 10_000,
]


@pytest.mark.parametrize("token", GARBAGE, ids=lambda t: repr(t[:12]) + f"/{len(t)}")
async def test_garbage_is_malformed(token: str, cognito: CognitoStack, make_verifier: MakeVerifier):
    verifier = make_verifier(cognito.settings())
    error = await refused(verifier, token)
    assert (error.code, error.status_code) == ("token_malformed", 401)
    assert error.headers == {"WWW-Authenticate": 'Bearer error="invalid_token"'}


async def test_non_string_and_kidless_tokens_are_malformed(
    cognito: CognitoStack, make_verifier: MakeVerifier
):
    verifier = make_verifier(cognito.settings())
    for token in (None, b"a.b.c", 42):
        assert (await refused(verifier, token)).code == "token_malformed"
    for kid in (None, 7, ["dummy"]):
        header = {"alg": "RS256", "kid": kid} if kid is not None else {"alg": "RS256"}
        token = unsigned(header, moto_claims(cognito), b"sig")
        assert (await refused(verifier, token)).code == "token_malformed"


async def test_alg_none_is_refused(cognito: CognitoStack, make_verifier: MakeVerifier):
    verifier = make_verifier(cognito.settings())
    for alg in ("none", "None", "NONE", ""):
        token = unsigned({"alg": alg, "typ": "JWT", "kid": "dummy"}, moto_claims(cognito))
        assert (await refused(verifier, token)).code == "token_algorithm_not_allowed"
    no_alg = unsigned({"typ": "JWT", "kid": "dummy"}, moto_claims(cognito))
    assert (await refused(verifier, no_alg)).code == "token_algorithm_not_allowed"


async def test_hs256_signed_with_the_pool_public_key_is_refused(
    cognito: CognitoStack, make_verifier: MakeVerifier
):
    """The classic key-confusion forgery: HMAC keyed with the RSA public key's PEM."""
    async with httpx.AsyncClient() as http:
        [jwk] = (await http.get(cognito.jwks_url("user"))).json()["keys"]
    pem = jwt.PyJWK(jwk).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{b64url({'alg': 'HS256', 'typ': 'JWT', 'kid': jwk['kid']})}." + b64url(
        moto_claims(cognito)
    )
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{b64url(mac)}"
    verifier = make_verifier(cognito.settings())
    assert (await refused(verifier, forged)).code == "token_algorithm_not_allowed"


async def test_other_asymmetric_algorithms_are_refused(
    local_issuer: LocalIssuer, make_verifier: MakeVerifier
):
    verifier = make_verifier(local_issuer.settings())
    claims = local_issuer.claims()
    rsa_key = local_issuer.server.keys[local_issuer.kid]
    for alg in ("RS512", "PS256"):
        token = jwt.encode(claims, rsa_key, algorithm=alg, headers={"kid": local_issuer.kid})
        assert (await refused(verifier, token)).code == "token_algorithm_not_allowed"
    es256 = jwt.encode(
        claims,
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": local_issuer.kid},
    )
    assert (await refused(verifier, es256)).code == "token_algorithm_not_allowed"
    assert local_issuer.requests == 0  # refused before any key was fetched


# --- minted tokens: every claim check ------------------------------------------------------
async def test_local_issuer_tokens_verify(local_issuer: LocalIssuer, make_verifier: MakeVerifier):
    verifier = make_verifier(local_issuer.settings())
    user = await verifier.verify(local_issuer.mint())
    admin = await verifier.verify(
        local_issuer.mint(local_issuer.claims("admin", "access", **{"cognito:groups": ["finance"]}))
    )
    assert (user.pool, user.token_use) == ("user", "id")
    assert user.client_id == local_issuer.user_client_id
    assert (user.username, user.email) == ("local-user", "l@example.com")
    assert (admin.pool, admin.token_use) == ("admin", "access")
    assert admin.client_id == local_issuer.admin_client_id
    assert admin.groups == ("finance",)
    assert local_issuer.server.paths == [
        "/us-east-1_LocalUsers/.well-known/jwks.json",
        "/us-east-1_LocalAdmins/.well-known/jwks.json",
    ]


async def test_a_verified_token_is_checked_once_until_it_expires(
    local_issuer: LocalIssuer, make_verifier: MakeVerifier, monkeypatch: pytest.MonkeyPatch
):
    verifier = make_verifier(local_issuer.settings(), leeway=0)
    decoded: list[str] = []
    full_check = verifier._decode
    monkeypatch.setattr(
        verifier, "_decode", lambda token, *rest: decoded.append(token) or full_check(token, *rest)
    )
    token = local_issuer.mint()
    first, second = await verifier.verify(token), await verifier.verify(token)
    assert first == second and len(decoded) == 1
    # A remembered token is still judged by its own expiry.
    expires = int(time.time()) + 1
    soon = local_issuer.mint(local_issuer.claims(exp=expires))
    assert (await verifier.verify(soon)).sub
    await asyncio.sleep(max(0.0, expires - time.time()) + 0.1)
    assert (await refused(verifier, soon)).code == "token_expired"


async def test_expiry_and_not_before_use_the_leeway(
    local_issuer: LocalIssuer, make_verifier: MakeVerifier
):
    verifier = make_verifier(local_issuer.settings(), leeway=30)
    now = int(time.time())
    expired = local_issuer.mint(local_issuer.claims(iat=now - 7200, exp=now - 60))
    assert (await refused(verifier, expired)).code == "token_expired"
    just_expired = local_issuer.mint(local_issuer.claims(exp=now - 10))
    assert (await verifier.verify(just_expired)).sub  # inside the 30 s leeway
    not_before = local_issuer.mint(local_issuer.claims(nbf=now + 600))
    assert (await refused(verifier, not_before)).code == "token_not_yet_valid"
    issued_later = local_issuer.mint(local_issuer.claims(iat=now + 600))
    assert (await refused(verifier, issued_later)).code == "token_not_yet_valid"
    strict = make_verifier(local_issuer.settings(), leeway=0)
    assert (await refused(strict, just_expired)).code == "token_expired"


@pytest.mark.parametrize(
    ("pool", "use", "changes", "code"),
    [
        ("user", "id", {"aud": "someone-else"}, "token_audience_invalid"),
        ("user", "id", {"aud": [USER_CLIENT]}, "token_audience_invalid"),
        ("user", "id", {"aud": None, "client_id": USER_CLIENT}, "token_audience_invalid"),
        ("user", "id", {"aud": ADMIN_CLIENT}, "token_audience_invalid"),
        ("user", "access", {"client_id": "someone-else"}, "token_audience_invalid"),
        ("user", "access", {"client_id": None, "aud": USER_CLIENT}, "token_audience_invalid"),
        ("admin", "access", {"client_id": USER_CLIENT}, "token_audience_invalid"),
        ("user", "id", {"token_use": "refresh"}, "token_use_invalid"),
        ("user", "id", {"token_use": None}, "token_use_invalid"),
        ("user", "id", {"token_use": ["id"]}, "token_use_invalid"),
        (
            "user",
            "id",
            {"iss": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Other"},
            "token_issuer_unknown",
        ),
        ("user", "id", {"iss": None}, "token_issuer_unknown"),
        ("user", "id", {"iss": ["x"]}, "token_issuer_unknown"),
        ("user", "id", {"exp": None}, "token_malformed"),
        ("user", "id", {"sub": None}, "token_malformed"),
        ("user", "id", {"sub": 12}, "token_malformed"),
        ("user", "id", {"exp": "tomorrow"}, "token_malformed"),
    ],
)
async def test_claim_checks(
    pool: str,
    use: str,
    changes: dict[str, Any],
    code: str,
    local_issuer: LocalIssuer,
    make_verifier: MakeVerifier,
):
    verifier = make_verifier(local_issuer.settings())
    token = local_issuer.mint(local_issuer.claims(pool, use, **resolve(changes, local_issuer)))
    assert (await refused(verifier, token)).code == code


async def test_tampered_and_foreign_signatures_are_refused(
    local_issuer: LocalIssuer, make_verifier: MakeVerifier
):
    verifier = make_verifier(local_issuer.settings())
    header, _, signature = local_issuer.mint().split(".")
    promoted = b64url(local_issuer.claims(**{"cognito:groups": ["admin"]}))
    assert (await refused(verifier, f"{header}.{promoted}.{signature}")).code == (
        "token_signature_invalid"
    )
    other_key = local_issuer.mint(key=new_rsa_key())  # right kid, wrong private key
    assert (await refused(verifier, other_key)).code == "token_signature_invalid"
    assert (await refused(verifier, f"{header}.{promoted}.")).code == "token_signature_invalid"


async def test_unknown_kid_is_refused(local_issuer: LocalIssuer, make_verifier: MakeVerifier):
    verifier = make_verifier(local_issuer.settings())
    token = local_issuer.mint(kid="not-published", key=new_rsa_key())
    error = await refused(verifier, token)
    assert (error.code, error.status_code) == ("token_key_unknown", 401)


async def test_a_moto_token_against_a_pool_with_another_key_is_refused(
    cognito: CognitoStack, local_issuer: LocalIssuer, make_verifier: MakeVerifier
):
    """Same issuer string, different JWKS: moto's `kid` is simply not there."""
    verifier = make_verifier(
        local_issuer.settings(
            user_pool_id=cognito.user_pool_id, user_client_id=cognito.user_client_id
        )
    )
    assert (await refused(verifier, cognito.tokens("user")["IdToken"])).code == (
        "token_key_unknown"
    )


# --- the JWKS cache ------------------------------------------------------------------------
async def test_unknown_kids_refetch_at_most_once_per_interval(
    local_issuer: LocalIssuer, make_verifier: MakeVerifier
):
    clock = FakeClock()
    verifier = make_verifier(local_issuer.settings(), min_refresh_interval=60, clock=clock)

    def bogus(i: int) -> str:
        return local_issuer.mint(kid=f"bogus-{i}")

    # cold cache: 50 concurrent bogus kids share one fetch
    results = await asyncio.gather(*(refused(verifier, bogus(i)) for i in range(50)))
    assert {error.code for error in results} == {"token_key_unknown"}
    assert local_issuer.requests == 1
    # warm cache: 50 more, one by one, within the interval → no fetch at all
    for i in range(50):
        assert (await refused(verifier, bogus(i))).code == "token_key_unknown"
    assert await verifier.verify(local_issuer.mint())
    assert local_issuer.requests == 1
    # after the interval: again exactly one refetch for 50 concurrent bogus kids
    clock.advance(61)
    await asyncio.gather(*(refused(verifier, bogus(i)) for i in range(50)))
    assert local_issuer.requests == 2


async def test_rotated_key_is_picked_up_after_the_interval(
    local_issuer: LocalIssuer, make_verifier: MakeVerifier
):
    clock = FakeClock()
    verifier = make_verifier(local_issuer.settings(), min_refresh_interval=60, clock=clock)
    await verifier.verify(local_issuer.mint())
    local_issuer.add_key("local-key-2")
    rotated = local_issuer.mint(kid="local-key-2")
    assert (await refused(verifier, rotated)).code == "token_key_unknown"  # too soon to refetch
    clock.advance(61)
    assert (await verifier.verify(rotated)).sub
    assert local_issuer.requests == 2


async def test_keys_are_refetched_after_the_ttl(
    local_issuer: LocalIssuer, make_verifier: MakeVerifier
):
    clock = FakeClock()
    verifier = make_verifier(local_issuer.settings(), jwks_ttl=3600, clock=clock)
    token = local_issuer.mint()
    await verifier.verify(token)
    clock.advance(3599)
    await verifier.verify(token)
    assert local_issuer.requests == 1
    clock.advance(2)
    await verifier.verify(token)
    assert local_issuer.requests == 2


# --- JWKS down: 503, not 401 ---------------------------------------------------------------
async def test_jwks_unreachable_is_auth_unavailable(
    local_issuer: LocalIssuer, make_verifier: MakeVerifier
):
    closed = f"http://127.0.0.1:{free_port()}"
    verifier = make_verifier(local_issuer.settings(endpoint_url=closed))
    error = await refused(verifier, local_issuer.mint())
    assert (error.code, error.status_code) == ("auth_unavailable", 503)
    assert error.headers == {"Retry-After": "5"}


@pytest.mark.parametrize("mode", ["error", "garbage"])
async def test_jwks_failing_is_auth_unavailable_then_recovers(
    mode: str, local_issuer: LocalIssuer, make_verifier: MakeVerifier
):
    clock = FakeClock()
    verifier = make_verifier(local_issuer.settings(), failure_backoff=5, clock=clock)
    token = local_issuer.mint()
    local_issuer.set_mode(mode)
    assert (await refused(verifier, token)).code == "auth_unavailable"
    assert (await refused(verifier, token)).code == "auth_unavailable"  # backing off
    assert local_issuer.requests == 1
    local_issuer.set_mode("ok")
    clock.advance(5)
    assert (await verifier.verify(token)).pool == "user"
    assert local_issuer.requests == 2


async def test_stale_keys_serve_known_kids_while_jwks_is_down(
    local_issuer: LocalIssuer, make_verifier: MakeVerifier
):
    clock = FakeClock()
    verifier = make_verifier(local_issuer.settings(), jwks_ttl=3600, clock=clock)
    token = local_issuer.mint()
    await verifier.verify(token)
    local_issuer.set_mode("error")
    clock.advance(4000)
    assert (await verifier.verify(token)).sub  # refetch failed; the cached key still verifies
    clock.advance(120)
    unknown = local_issuer.mint(kid="new-key", key=new_rsa_key())
    assert (await refused(verifier, unknown)).code == "auth_unavailable"  # cannot tell yet


# --- the Authorization header --------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer abc.def.ghi", "abc.def.ghi"),
        ("  BEARER   abc.def.ghi  ", "abc.def.ghi"),
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer a b", None),
        ("abc.def.ghi", None),
    ],
)
def test_bearer_token(header: str | None, token: str | None):
    assert bearer_token(header) == token


def test_errors_have_distinct_codes():
    import nespay.auth.cognito as module

    errors = [
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, TokenInvalid) and value is not TokenInvalid
    ]
    codes = [error.code for error in errors]
    assert len(set(codes)) == len(codes) == 9
    assert {error.status_code for error in errors} == {401}
    assert json.dumps(codes)  # plain strings, ready for the error body
