import subprocess
import sys

import pytest
from pydantic import ValidationError

from nespay.config import Settings, describe_errors, parse_nat_map

GOOD_KEY = "ab" * 64


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
    result = run_config({"NODE_ENV": "staging", "ENCRYPTION_MASTER_KEY": GOOD_KEY})
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
    result = run_config(
        {
            "APP_ENV": "production",
            "ENCRYPTION_MASTER_KEY": GOOD_KEY,
            "RABBITMQ_URL": "amqp://nespay:s3cret-real@mq:5672",
            "DATABASE_URL": "postgresql://nespay:Xq8-real@db:5432/nespay?schema=public",
        }
    )
    assert result.returncode == 0, result.stderr
    assert "loaded" in result.stdout


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
        ({"APP_ENV": "staging", "ENCRYPTION_MASTER_KEY": GOOD_KEY}, False),
        ({"APP_ENV": "development", "SWAGGER_ENABLE": "false"}, False),
        ({"APP_ENV": "staging", "ENCRYPTION_MASTER_KEY": GOOD_KEY, "SWAGGER_ENABLE": "1"}, True),
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
