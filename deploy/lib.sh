# shellcheck shell=bash
# Shared logic of deploy-dev.sh and deploy-staging.sh: sourced by them, not run on its own.
#
# The calling script sets these (each may be overridden from the environment):
#   NESPAY_STAGE        dev | staging: containers are nespay-{backend,webhook,jobs}-$NESPAY_STAGE
#   ENV_FILE            env file given to every container with --env-file (never baked in)
#   IMAGE               image tag to build and run
#   API_HOST_PORT       host port of the api process (container port 8000)
#   WEBHOOK_HOST_PORT   host port of the webhook process (container port 8001)
#   JOBS_HOST_PORT      host port of the jobs process (container port 8002)
# Optional:
#   DOCKER_NETWORK      docker network to attach the containers to (e.g. the one your
#                       PostgreSQL/Redis/RabbitMQ containers are on); default: docker's bridge.
#                       Host services are reachable from the containers as host.docker.internal.
#   HEALTH_TIMEOUT      seconds to wait for each process to report healthy (default 90)
#   SKIP_BUILD=1        run the existing $IMAGE instead of building it
#   SKIP_SEED=1         run `nespay db migrate` only (the seed is safe to repeat, so it runs by default)

nespay_die() {
    echo "error: $*" >&2
    exit 1
}

nespay_log() {
    echo "==> $*"
}

nespay_require_docker() {
    command -v docker > /dev/null 2>&1 \
        || nespay_die "docker is not installed (or not on PATH); install Docker 20.10+ and retry"
    docker info > /dev/null 2>&1 \
        || nespay_die "cannot reach the Docker daemon: is it running, and may $(id -un) use it?"
}

nespay_require_env_file() {
    [[ -f "$ENV_FILE" ]] \
        || nespay_die "$ENV_FILE not found: create it from the example (cp .env.example $ENV_FILE) and fill in real values"
}

# The last NAME=value of the env file, or the default.
nespay_env_value() {
    local name=$1 default=$2 line value=""
    while IFS= read -r line || [[ -n "$line" ]]; do
        [[ "$line" == "$name="* ]] && value=${line#"$name="}
    done < "$ENV_FILE"
    echo "${value:-$default}"
}

# Arguments every container of this deployment gets.
nespay_docker_args() {
    NESPAY_DOCKER_ARGS=(--env-file "$ENV_FILE" --add-host host.docker.internal:host-gateway)
    if [[ -n "${DOCKER_NETWORK:-}" ]]; then
        NESPAY_DOCKER_ARGS+=(--network "$DOCKER_NETWORK")
    fi
}

nespay_build() {
    if [[ "${SKIP_BUILD:-0}" == "1" ]]; then
        nespay_log "using the existing image $IMAGE (SKIP_BUILD=1)"
        return
    fi
    nespay_log "building $IMAGE"
    docker build -t "$IMAGE" "$NESPAY_ROOT"
}

nespay_migrate() {
    nespay_log "applying database migrations (nespay db migrate)"
    docker run --rm --name "nespay-migrate-$NESPAY_STAGE" "${NESPAY_DOCKER_ARGS[@]}" "$IMAGE" db migrate \
        || nespay_die "migrations failed; nothing was restarted"
    if [[ "${SKIP_SEED:-0}" != "1" ]]; then
        nespay_log "loading reference data (nespay db seed)"
        docker run --rm --name "nespay-seed-$NESPAY_STAGE" "${NESPAY_DOCKER_ARGS[@]}" "$IMAGE" db seed \
            || nespay_die "seeding failed; nothing was restarted"
    fi
}

# nespay_start NAME PROCESS HOST_PORT CONTAINER_PORT PORT_VARIABLE
nespay_start() {
    local name=$1 process=$2 host_port=$3 container_port=$4 port_variable=$5
    nespay_log "(re)starting $name: nespay serve $process on host port $host_port"
    docker rm -f "$name" > /dev/null 2>&1 || true
    docker run -d --name "$name" --restart unless-stopped \
        -p "$host_port:$container_port" \
        "${NESPAY_DOCKER_ARGS[@]}" \
        -e "NESPAY_PROCESS=$process" -e "$port_variable=$container_port" \
        "$IMAGE" serve "$process" > /dev/null
}

# Prints "<http status> <body>" for a GET; status 000 when nothing answered.
nespay_http_get() {
    local url=$1
    if command -v curl > /dev/null 2>&1; then
        local body_file status
        body_file=$(mktemp)
        status=$(curl -s --noproxy '*' -o "$body_file" -w '%{http_code}' --max-time 5 "$url" 2> /dev/null) || status=000
        echo "$status $(head -c 500 "$body_file")"
        rm -f "$body_file"
    else
        python3 - "$url" << 'PY' 2> /dev/null || echo "000 "
import sys, urllib.error, urllib.request
try:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(sys.argv[1], timeout=5) as response:
        print(response.status, response.read(500).decode(errors="replace"))
except urllib.error.HTTPError as error:
    print(error.code, error.read(500).decode(errors="replace"))
PY
    fi
}

# nespay_wait_healthy NAME URL: polls until 200, the container stops, or HEALTH_TIMEOUT.
nespay_wait_healthy() {
    local name=$1 url=$2 deadline=$((SECONDS + ${HEALTH_TIMEOUT:-90})) result status
    while true; do
        result=$(nespay_http_get "$url")
        status=${result%% *}
        if [[ "$status" == "200" ]]; then
            printf '%-28s %-42s healthy   %s\n' "$name" "$url" "${result#* }"
            return 0
        fi
        if [[ "$(docker inspect -f '{{.State.Running}}' "$name" 2> /dev/null || echo false)" != "true" ]]; then
            printf '%-28s %-42s STOPPED\n' "$name" "$url"
            docker logs --tail 50 "$name" >&2 || true
            return 1
        fi
        if ((SECONDS >= deadline)); then
            printf '%-28s %-42s UNHEALTHY (HTTP %s) %s\n' "$name" "$url" "$status" "${result#* }"
            docker logs --tail 50 "$name" >&2 || true
            return 1
        fi
        sleep 2
    done
}

# The whole deployment: checks, build, migrations, restart, health.
nespay_deploy() {
    : "${NESPAY_STAGE:?set by the calling script}" "${ENV_FILE:?}" "${IMAGE:?}"
    : "${API_HOST_PORT:?}" "${WEBHOOK_HOST_PORT:?}" "${JOBS_HOST_PORT:?}"
    cd "$NESPAY_ROOT" || nespay_die "cannot enter $NESPAY_ROOT"
    nespay_require_docker
    nespay_require_env_file
    nespay_docker_args
    nespay_build
    nespay_migrate

    nespay_start "nespay-backend-$NESPAY_STAGE" api "$API_HOST_PORT" 8000 API_PORT
    nespay_start "nespay-webhook-$NESPAY_STAGE" webhook "$WEBHOOK_HOST_PORT" 8001 WEBHOOK_PORT
    nespay_start "nespay-jobs-$NESPAY_STAGE" jobs "$JOBS_HOST_PORT" 8002 JOB_PORT

    local prefix failed=0
    prefix=$(nespay_env_value PUBLIC_API_PREFIX api/v1)
    prefix=${prefix#/}
    prefix=${prefix%/}
    nespay_log "waiting for /$prefix/health (up to ${HEALTH_TIMEOUT:-90}s each)"
    nespay_wait_healthy "nespay-backend-$NESPAY_STAGE" "http://127.0.0.1:$API_HOST_PORT/$prefix/health" || failed=1
    nespay_wait_healthy "nespay-webhook-$NESPAY_STAGE" "http://127.0.0.1:$WEBHOOK_HOST_PORT/$prefix/health" || failed=1
    nespay_wait_healthy "nespay-jobs-$NESPAY_STAGE" "http://127.0.0.1:$JOBS_HOST_PORT/$prefix/health" || failed=1
    if ((failed)); then
        nespay_die "$NESPAY_STAGE deployment is not healthy (see above)"
    fi
    nespay_log "$NESPAY_STAGE deployment is healthy"
}
