#!/usr/bin/env bash
# Development deployment on this Docker host: builds the image, runs the migrations and the
# seed, (re)starts nespay-backend-dev (8000), nespay-webhook-dev (8001) and nespay-jobs-dev
# (8002) with --env-file .env, then prints each /api/v1/health.
#
#   cp .env.example .env && ./deploy-dev.sh
#
# Overridable from the environment: ENV_FILE, IMAGE, API_HOST_PORT, WEBHOOK_HOST_PORT,
# JOBS_HOST_PORT, DOCKER_NETWORK, HEALTH_TIMEOUT, SKIP_BUILD=1, SKIP_SEED=1 (see deploy/lib.sh).
set -euo pipefail

NESPAY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=deploy/lib.sh
source "$NESPAY_ROOT/deploy/lib.sh"

NESPAY_STAGE=dev
ENV_FILE="${ENV_FILE:-.env}"
IMAGE="${IMAGE:-nespay-backend:dev}"
API_HOST_PORT="${API_HOST_PORT:-8000}"
WEBHOOK_HOST_PORT="${WEBHOOK_HOST_PORT:-8001}"
JOBS_HOST_PORT="${JOBS_HOST_PORT:-8002}"

# Containers: nespay-backend-dev, nespay-webhook-dev, nespay-jobs-dev
nespay_deploy
