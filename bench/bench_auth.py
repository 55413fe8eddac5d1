"""What authentication costs a request, on one `nespay serve api` process.

Routes loaded in turn:

- unauthenticated baseline: `GET /api/v1/health` (its database ping, one round trip; with
  Redis configured it pings Redis too);
- the authenticated no-op the goal is about: `GET /api/v1/whoami` (answers from the request's
  sign-in alone), with `X-Api-Key` (key lookup by prefix, constant-time hash compare,
  `last_used_at` at most once a minute, rate-limit counters per IP and per key) and with
  `Authorization: Bearer <IdToken>` (RS256 verification against the pool's cached JWKS, the
  merchant-user lookup by `sub`, the same counters);
- informational: `GET /api/v1/merchants/me` with each credential (the same authentication plus
  a read of the merchant row).

The JWT comes from a real `moto_server` (user pool, app client, user; signed in with
ADMIN_USER_PASSWORD_AUTH), started on a free port; the user is added to the merchant made by
`nespay merchants create` through `POST /api/v1/merchants/me/users`. Rate limits are raised far
above what a run sends; Nespay gets a redis-server of its own for the counters (`--no-redis`:
counters in PostgreSQL, degraded mode). Goal: each authenticated route at least 0.8x the
unauthenticated one.

`.venv/bin/python -m bench.bench_auth [--duration 10 --rounds 2 ...]`
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import harness
from bench.bench_invoices import UNLIMITED
from bench.harness import Load, Row, ScratchDatabase, Server, Target

HEALTH = "/api/v1/health"
ME = "/api/v1/merchants/me"
WHOAMI = "/api/v1/whoami"
UNAUTH = "no auth: GET /api/v1/health"
KEY_NOOP = "API key: GET /api/v1/whoami"
JWT_NOOP = "Cognito JWT: GET /api/v1/whoami"
KEY = "API key: GET /api/v1/merchants/me"
JWT = "Cognito JWT: GET /api/v1/merchants/me"
MOTO_SERVER = Path(sys.executable).with_name("moto_server")
REGION = "us-east-1"
PASSWORD = "Corr3ct-Horse-Battery!"


@dataclass(frozen=True)
class Cognito:
    endpoint_url: str
    pool_id: str
    client_id: str
    sub: str
    id_token: str

    def env(self) -> dict[str, str]:
        return {
            "COGNITO_USER_POOL_ID": self.pool_id,
            "COGNITO_USER_CLIENT_ID": self.client_id,
            "COGNITO_ENDPOINT_URL": self.endpoint_url,
            "AWS_REGION": REGION,
        }

    def admin_env(self) -> dict[str, str]:
        """The same pool configured as the admin pool (`moto_cognito(groups=…)`)."""
        return {
            "COGNITO_ADMIN_POOL_ID": self.pool_id,
            "COGNITO_ADMIN_CLIENT_ID": self.client_id,
            "COGNITO_ENDPOINT_URL": self.endpoint_url,
            "AWS_REGION": REGION,
        }


@contextlib.contextmanager
def moto_cognito(groups: tuple[str, ...] = ()) -> Iterator[Cognito]:
    """moto_server on a free loopback port with a user pool, an app client and a signed-in
    user (as tests/fixtures/cognito.py sets them up), in `groups` (made in the pool: an
    admin pool's `cognito:groups`); stopped afterwards."""
    import boto3  # a dev dependency, as moto is

    if not MOTO_SERVER.exists():
        sys.exit(f"{MOTO_SERVER} not found: install the dev dependencies (moto[server])")
    port = harness.free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(  # noqa: S603 - our own arguments
            [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
        )
        try:
            _wait_for(process, f"{url}/moto-api/")
            client = boto3.client(
                "cognito-idp",
                endpoint_url=url,
                region_name=REGION,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",  # noqa: S106 - moto's
            )
            pool = client.create_user_pool(PoolName="nespay-bench")["UserPool"]["Id"]
            app_client = client.create_user_pool_client(
                UserPoolId=pool,
                ClientName="nespay-bench-web",
                ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
                ReadAttributes=["email", "email_verified"],
            )["UserPoolClient"]["ClientId"]
            username = "bench@example.com"
            client.admin_create_user(
                UserPoolId=pool,
                Username=username,
                UserAttributes=[
                    {"Name": "email", "Value": username},
                    {"Name": "email_verified", "Value": "true"},
                ],
                MessageAction="SUPPRESS",
            )
            client.admin_set_user_password(
                UserPoolId=pool, Username=username, Password=PASSWORD, Permanent=True
            )
            for group in groups:
                client.create_group(GroupName=group, UserPoolId=pool)
                client.admin_add_user_to_group(UserPoolId=pool, Username=username, GroupName=group)
            user = client.admin_get_user(UserPoolId=pool, Username=username)
            sub = next(a["Value"] for a in user["UserAttributes"] if a["Name"] == "sub")
            tokens = client.admin_initiate_auth(
                UserPoolId=pool,
                ClientId=app_client,
                AuthFlow="ADMIN_USER_PASSWORD_AUTH",
                AuthParameters={"USERNAME": username, "PASSWORD": PASSWORD},
            )["AuthenticationResult"]
            yield Cognito(url, pool, app_client, sub, tokens["IdToken"])
        finally:
            process.terminate()
            process.wait(timeout=10)


def _wait_for(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit("moto_server exited while starting")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    sys.exit("moto_server did not answer within 30 s")


def lua(headers: dict[str, str]) -> str:
    return "".join(f'wrk.headers["{name}"] = "{value}"\n' for name, value in headers.items())


def link_user(server: Server, key: str, cognito: Cognito) -> None:
    """The Cognito user joins the API key's merchant; both credentials then read the same
    merchant (checked)."""
    base = f"http://127.0.0.1:{server.port}"
    added = httpx.post(
        f"{base}/api/v1/merchants/me/users",
        json={"cognito_sub": cognito.sub, "role": "viewer"},
        headers={"X-Api-Key": key},
        timeout=10,
    )
    if added.status_code != 201:
        sys.exit(f"adding the Cognito user failed: {added.status_code} {added.text[:300]}")
    by_key = httpx.get(f"{base}{ME}", headers={"X-Api-Key": key}, timeout=10)
    by_jwt = httpx.get(
        f"{base}{ME}", headers={"Authorization": f"Bearer {cognito.id_token}"}, timeout=10
    )
    if by_key.status_code != 200 or by_jwt.status_code != 200 or by_key.json() != by_jwt.json():
        sys.exit(
            f"merchant reads differ: key {by_key.status_code} {by_key.text[:200]} / "
            f"JWT {by_jwt.status_code} {by_jwt.text[:200]}"
        )


def run(db: ScratchDatabase, load: Load) -> list[Row]:
    print(f"auth: {KEY_NOOP}, {JWT_NOOP} (and {KEY}, {JWT}) vs {UNAUTH}")
    key = harness.create_merchant(db, "Bench Auth")
    with (
        moto_cognito() as cognito,
        harness.redis_env(load.redis) as redis,
        harness.running(
            [
                harness.nespay_server(
                    "nespay api", "api", HEALTH, db, {**UNLIMITED, **redis, **cognito.env()}
                )
            ]  # fmt: skip
        ) as (api,),
    ):
        link_user(api, key, cognito)
        by_key = lua({"X-Api-Key": key})
        by_jwt = lua({"Authorization": f"Bearer {cognito.id_token}"})
        targets = [
            Target(UNAUTH, api, HEALTH),
            Target(KEY_NOOP, api, WHOAMI, by_key),
            Target(JWT_NOOP, api, WHOAMI, by_jwt),
            Target(KEY, api, ME, by_key),
            Target(JWT, api, ME, by_jwt),
        ]
        measured = harness.measure_targets(targets, load)
    return rows(measured)


def rows(measured: dict[str, harness.Measured]) -> Sequence[Row]:
    return [
        Row("auth no-op: API key vs none (goal ≥ 0.8×)", measured[KEY_NOOP], measured[UNAUTH]),
        Row("auth no-op: Cognito JWT vs none (goal ≥ 0.8×)", measured[JWT_NOOP], measured[UNAUTH]),
        Row("auth + merchant read: API key (informational)", measured[KEY], measured[UNAUTH]),
        Row("auth + merchant read: Cognito JWT (informational)", measured[JWT], measured[UNAUTH]),
    ]


def main() -> None:
    args = harness.argument_parser(__doc__.splitlines()[0]).parse_args()
    harness.require_wrk()
    load = harness.load_from(args)
    with harness.scratch_database() as db:
        harness.print_results("authentication overhead", load, run(db, load))


if __name__ == "__main__":
    main()
