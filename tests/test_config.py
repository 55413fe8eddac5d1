import subprocess
import sys

import pytest
from pydantic import ValidationError

from nespay.config import Settings, describe_errors, parse_nat_map

GOOD_KEY = "ab" * 64
# An account key (m/44'/60'/0') of a throw-away seed, bytes 0..63: not the development one.
REAL_XPUB = "xpub6Cd2ZDPnwVQcBXGVBTVCLRc3VG6FMUBTowdD4YRgVtAeitwH6iTYD17rDmNGUooLcWaNwAQVD42PAyEiexa9AsKFBE4VpBFE48y5njRsNFF"  # noqa: E501
# What staging and production need besides the case under test.
PRODUCTION = {
    "APP_ENV": "production",
    "ENCRYPTION_MASTER_KEY": GOOD_KEY,
    "RABBITMQ_URL": "amqp://nespay:s3cret-real@mq:5672",
    "DATABASE_URL": "postgresql://nespay:Xq8-real@db:5432/nespay?schema=public",
    "HD_WALLET_XPUB": REAL_XPUB,
}


def run_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    code = "from nespay.config import load_settings; load_settings(); print('loaded')"
    return subprocess.run(
        [sys.executable, "-c", code], env=base | env, capture_output=True, text=True, cwd="/tmp"
    )


def test_guide_database_url_with_schema_parameter_selects_search_path():
    settings = Settings(_env_file=None, database_url="postgresql://u:p@db:5432/nespay?schema=shop")
    assert settings.database_schema == "shop"


def test_node_env_is_accepted_as_alias_of_app_env():
    result = run_config(
        {"NODE_ENV": "staging", "ENCRYPTION_MASTER_KEY": GOOD_KEY, "HD_WALLET_XPUB": REAL_XPUB}
    )
    assert result.returncode == 0, result.stderr
    assert Settings(_env_file=None, NODE_ENV="test").app_env == "test"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DATABASE_URL": "mysql://root@localhost/nespay"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://u:p@host:99999/db"}, "DATABASE_URL"),
        ({"ENCRYPTION_MASTER_KEY": "abc123"}, "ENCRYPTION_MASTER_KEY"),
        ({"ENCRYPTION_MASTER_KEY": "zz" * 64}, "ENCRYPTION_MASTER_KEY"),
        ({"REDIS_CLUSTER_NAT_MAP": "redis-node-1:7001->localhost:7001"}, "REDIS_CLUSTER_NAT_MAP"),
        ({"REDIS_SENTINEL_NAT_MAP": "redis-master=>localhost"}, "REDIS_SENTINEL_NAT_MAP"),
        ({"API_PORT": "70000"}, "API_PORT"),
        ({"JOB_PORT": "http"}, "JOB_PORT"),
        ({"CONSOLIDATION_JOB_SCHEDULE": "every five minutes"}, "CONSOLIDATION_JOB_SCHEDULE"),
        ({"CONSOLIDATION_JOB_SCHEDULE": "61 * * * *"}, "CONSOLIDATION_JOB_SCHEDULE"),
        ({"LEDGER_INVARIANTS_JOB_SCHEDULE": "*/61 * * *"}, "LEDGER_INVARIANTS_JOB_SCHEDULE"),
        ({"TRUSTED_PROXIES": "10.0.0.0/8,not-an-ip"}, "TRUSTED_PROXIES"),
        ({"RABBITMQ_URL": "http://guest:guest@localhost:5672"}, "RABBITMQ_URL"),
    ],
)
def test_malformed_value_stops_with_one_line_naming_the_variable(env, variable):
    result = run_config(env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"config error: {variable}: expected") or lines[0].startswith(
        f"config error: {variable}: Input"
    ), lines[0]
    assert "Traceback" not in result.stderr
    for value in env.values():
        if len(value) > 5:
            assert value not in result.stderr, "the bad value must never be echoed"


def test_production_refuses_example_secrets_without_echoing_them():
    result = run_config(
        {
            "APP_ENV": "production",
            "RABBITMQ_URL": "amqp://nespay:s3cret-real@mq:5672",
            "DATABASE_URL": "postgresql://nespay:yourpassword@db:5432/nespay?schema=public",
            "ENCRYPTION_MASTER_KEY": GOOD_KEY,
        }
    )
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr and "example or default secret" in result.stderr
    assert "yourpassword" not in result.stderr


def test_production_refuses_the_development_master_key():
    result = run_config(
        {"APP_ENV": "production", "RABBITMQ_URL": "amqp://nespay:s3cret-real@mq:5672"}
    )
    assert result.returncode != 0
    assert "ENCRYPTION_MASTER_KEY" in result.stderr


def test_production_requires_rabbitmq():
    result = run_config({"APP_ENV": "production", "ENCRYPTION_MASTER_KEY": GOOD_KEY})
    assert result.returncode != 0
    assert "RABBITMQ_URL" in result.stderr


def test_production_with_real_secrets_loads():
    result = run_config(PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "loaded" in result.stdout


DEV_EVM_XPUB = "xpub6Ce9NcJvTk372KjsGfWqbcex5DumjpNquQLApoeQUavSCjEc823BV1tb4rXUuPuht8h2hSxkg2EXUaKUJmniJvRZAELxypsCzBFdtosmV76"  # noqa: E501
DEV_TRON_XPUB = "xpub6BuRy7ZmkGfP4LfiwbWSuu7pRCfSbjyB59BHNudeJgwsJUu23Dzmz4fRKh7Bsfo1EgmmCxtCLsat66A3Fe28PGEzwkmiTChdjv5PDhyqh2Q"  # noqa: E501
PRIVATE_URLS = "CALLBACK_ALLOW_PRIVATE_URLS"
IP_CHECK = "WEBHOOK_ENABLE_IP_VALIDATION"
SIGNATURE_CHECK = "WEBHOOK_ENABLE_SIGNATURE_VALIDATION"
PRIVY = {"WALLET_PROVIDER": "privy", "PRIVY_APP_ID": "app-real", "PRIVY_APP_SECRET": "Zr9-real"}


@pytest.mark.parametrize(
    ("app_env", "change", "variable", "says"),
    [
        ("production", {"HD_WALLET_XPUB": DEV_EVM_XPUB}, "HD_WALLET_XPUB", "development key"),
        ("staging", {"HD_WALLET_XPUB": DEV_EVM_XPUB}, "HD_WALLET_XPUB", "development key"),
        (
            "production",
            {"TRON_HD_WALLET_XPUB": DEV_TRON_XPUB},
            "TRON_HD_WALLET_XPUB",
            "development key",
        ),
        ("production", {"HD_WALLET_XPUB": None}, "HD_WALLET_XPUB", "required when APP_ENV="),
        ("staging", {"HD_WALLET_XPUB": ""}, "HD_WALLET_XPUB", "required when APP_ENV="),
        ("production", {PRIVATE_URLS: "true"}, PRIVATE_URLS, "refused"),
        ("staging", {PRIVATE_URLS: "true"}, PRIVATE_URLS, "refused"),
        ("production", {**PRIVY, "PRIVY_APP_ID": None}, "PRIVY_APP_ID", "WALLET_PROVIDER=privy"),
        ("staging", {**PRIVY, "PRIVY_APP_SECRET": None}, "PRIVY_APP_SECRET", "=privy"),
        ("production", {**PRIVY, "PRIVY_API": ""}, "PRIVY_API", "WALLET_PROVIDER=privy"),
        ("production", {**PRIVY, "PRIVY_API": "http://privy.internal"}, "PRIVY_API", "https"),
        ("production", {IP_CHECK: "false"}, IP_CHECK, "refused as false"),
        ("staging", {IP_CHECK: "false"}, IP_CHECK, "refused as false"),
        ("production", {SIGNATURE_CHECK: "false"}, SIGNATURE_CHECK, "refused as false"),
        ("staging", {SIGNATURE_CHECK: "false"}, SIGNATURE_CHECK, "refused as false"),
    ],
    ids=[
        "dev-evm-xpub",
        "dev-evm-xpub-staging",
        "dev-tron-xpub",
        "hd-without-xpub",
        "hd-with-empty-xpub-staging",
        "private-callback-urls",
        "private-callback-urls-staging",
        "privy-without-app-id",
        "privy-without-secret-staging",
        "privy-without-api",
        "privy-over-http",
        "webhook-ip-validation-off",
        "webhook-ip-validation-off-staging",
        "webhook-signature-validation-off",
        "webhook-signature-validation-off-staging",
    ],
)  # fmt: skip
def test_outside_development_an_unsafe_or_incomplete_wallet_or_callback_setting_stops_start_up(
    app_env, change, variable, says
):
    env = {key: value for key, value in (PRODUCTION | {"APP_ENV": app_env} | change).items()}
    result = run_config({key: value for key, value in env.items() if value is not None})
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"config error: {variable}") and says in lines[0], lines[0]
    for value in change.values():
        if value and len(value) > 5 and value not in ("privy", "true", "false"):
            assert value not in result.stderr, "the value must never be echoed"


@pytest.mark.parametrize("app_env", ["development", "test"])
def test_development_and_tests_may_use_the_dev_xpub_private_urls_and_a_bare_privy(app_env):
    for env in (
        {"HD_WALLET_XPUB": DEV_EVM_XPUB, "CALLBACK_ALLOW_PRIVATE_URLS": "true"},
        {"WALLET_PROVIDER": "privy"},
        {IP_CHECK: "false", SIGNATURE_CHECK: "false"},
        {},  # no xpub: the development key is used
    ):
        result = run_config({"APP_ENV": app_env, **env})
        assert result.returncode == 0, result.stderr


def test_a_fully_configured_privy_provider_loads_in_production():
    result = run_config(PRODUCTION | PRIVY | {"HD_WALLET_XPUB": ""})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("app_env", "xpub", "says"),
    [
        ("development", DEV_EVM_XPUB[:-1] + "A", "not a valid extended public key"),
        ("production", REAL_XPUB[:-6] + "111111", "not a valid extended public key"),
        (
            "test",
            "xpub6Eiwgz1qDkKuNx2TczPDT5T7pCBa3P9HHC9t4aMa92PE1VqSgVEMFRJt"
            "zxqXuQzdet7wehUSnn6TeZ2fZ78V1FRosdsptLgq6ahzykbmBte",
            "depth 4",
        ),  # the external chain key
    ],
    ids=["bad-checksum", "bad-tail", "wrong-depth"],
)
def test_an_xpub_that_does_not_parse_as_an_account_key_stops_start_up_everywhere(
    app_env, xpub, says
):
    env = PRODUCTION | {"APP_ENV": app_env, "HD_WALLET_XPUB": xpub}
    result = run_config(env)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("config error: HD_WALLET_XPUB: expected") and says in line, line
    assert xpub not in result.stderr


def test_nat_map_parses_the_guides_form():
    mapping = parse_nat_map("redis-node-1:7001=>localhost:7001,redis-node-2:7002=>localhost:7002")
    assert mapping[("redis-node-1", 7001)] == ("localhost", 7001)
    assert mapping[("redis-node-2", 7002)] == ("localhost", 7002)


def test_comma_lists_are_split():
    settings = Settings(
        _env_file=None,
        ENABLE_CORS_URLS="https://a.example, https://b.example",
        REDIS_CLUSTER_NODES="localhost:7001,localhost:7002",
    )
    assert settings.enable_cors_urls == ["https://a.example", "https://b.example"]
    assert settings.redis_cluster_nodes == ["localhost:7001", "localhost:7002"]


def test_dotenv_file_in_working_directory_is_read(tmp_path):
    (tmp_path / ".env").write_text("API_PORT=9100\nPUBLIC_API_PREFIX=/api/v9/\n")
    code = (
        "from nespay.config import load_settings; s = load_settings();"
        " print(s.api_port, s.public_api_prefix)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.stdout.split() == ["9100", "api/v9"], result.stderr


def test_describe_errors_never_includes_input():
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, ENCRYPTION_MASTER_KEY="short-secret-value")
    lines = describe_errors(caught.value)
    assert lines and all("short-secret-value" not in line for line in lines)


@pytest.mark.parametrize(
    ("env", "served"),
    [
        ({}, True),  # APP_ENV defaults to development: `nespay dev` shows its API at /api
        ({"APP_ENV": "test"}, False),
        (
            {"APP_ENV": "staging", "ENCRYPTION_MASTER_KEY": GOOD_KEY, "HD_WALLET_XPUB": REAL_XPUB},
            False,
        ),
        ({"APP_ENV": "development", "SWAGGER_ENABLE": "false"}, False),
        (
            {
                "APP_ENV": "staging",
                "ENCRYPTION_MASTER_KEY": GOOD_KEY,
                "HD_WALLET_XPUB": REAL_XPUB,
                "SWAGGER_ENABLE": "1",
            },
            True,
        ),
    ],
)
def test_swagger_is_on_by_default_in_development_only(env, served):
    code = "from nespay.config import load_settings; print(load_settings().swagger_enable)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"} | env,
        capture_output=True,
        text=True,
        cwd="/tmp",
    )
    assert result.stdout.strip() == str(served), result.stderr


INTRAJASA = {
    "INTRAJASA_MERCHANT_ID": "NESPAY01",
    "INTRAJASA_SECRET_WORD": "real-intrajasa-secret-8f2",
    "INTRAJASA_BASE_URL": "https://va.kliringindonesia.co.id",
    "WEBHOOK_INTRAJASA_TOKEN": "real-callback-token-77a",
}


@pytest.mark.parametrize(
    ("app_env", "change", "variable", "says"),
    [
        ("production", {"INTRAJASA_BASE_URL": None}, "INTRAJASA_BASE_URL", "sandbox"),
        ("production", {"INTRAJASA_BASE_URL": "https://sandbox-va.kliringindonesia.co.id"},
         "INTRAJASA_BASE_URL", "sandbox"),
        ("production", {"INTRAJASA_BASE_URL": "http://va.kliringindonesia.co.id"},
         "INTRAJASA_BASE_URL", "https"),
        ("production", {"INTRAJASA_SECRET_WORD": None}, "INTRAJASA_MERCHANT_ID", "set both"),
        ("development", {"INTRAJASA_MERCHANT_ID": None}, "INTRAJASA_MERCHANT_ID", "set both"),
        ("production", {"WEBHOOK_INTRAJASA_TOKEN": None}, "WEBHOOK_INTRAJASA_TOKEN", "required"),
        ("staging", {"INTRAJASA_SECRET_WORD": "changeme"}, "INTRAJASA_SECRET_WORD", "example"),
        ("development", {"INTRAJASA_BASE_URL": "ftp://x"}, "INTRAJASA_BASE_URL", "http"),
    ],
    ids=["default-sandbox", "sandbox", "http", "half", "half-dev", "no-callback-token",
         "example-secret", "not-a-url"],
)  # fmt: skip
def test_intrajasa_half_configured_or_on_the_sandbox_in_production_stops_start_up(
    app_env, change, variable, says
):
    env = PRODUCTION | INTRAJASA | {"APP_ENV": app_env} | change
    result = run_config({key: value for key, value in env.items() if value is not None})
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"config error: {variable}"), lines
    assert says in lines[0], lines[0]
    assert "real-intrajasa-secret" not in result.stderr and "changeme" not in result.stderr


@pytest.mark.parametrize("change", [{}, {"INTRAJASA_BASE_URL": None, "APP_ENV": "staging"}])
def test_intrajasa_configured_loads_and_off_needs_nothing(change):
    env = PRODUCTION | INTRAJASA | change
    result = run_config({key: value for key, value in env.items() if value is not None})
    assert result.returncode == 0, result.stderr
    off = Settings(_env_file=None, app_env="test")  # type: ignore[call-arg]
    assert not off.intrajasa_enabled
    assert off.intrajasa_base_url == "https://sandbox-va.kliringindonesia.co.id"
