#!/usr/bin/env bash
# Staging deployment on this Docker host: builds the image, runs the migrations and the seed,
# (re)starts nespay-backend-staging (host port 8200), nespay-webhook-staging (8201) and
# nespay-jobs-staging (8202) with --env-file .env.staging, then prints each /api/v1/health.
#
#   ./deploy-staging.sh                      # uses .env.staging
#   ENV_FILE=/etc/nespay/staging.env ./deploy-staging.sh
#
# Overridable from the environment: ENV_FILE, IMAGE, API_HOST_PORT, WEBHOOK_HOST_PORT,
# JOBS_HOST_PORT, DOCKER_NETWORK, HEALTH_TIMEOUT, SKIP_BUILD=1, SKIP_SEED=1 (see deploy/lib.sh).
set -euo pipefail

NESPAY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=deploy/lib.sh
source "$NESPAY_ROOT/deploy/lib.sh"

NESPAY_STAGE=staging
ENV_FILE="${ENV_FILE:-.env.staging}"
IMAGE="${IMAGE:-nespay-backend:staging}"
API_HOST_PORT="${API_HOST_PORT:-8200}"
WEBHOOK_HOST_PORT="${WEBHOOK_HOST_PORT:-8201}"
JOBS_HOST_PORT="${JOBS_HOST_PORT:-8202}"

# Containers: nespay-backend-staging, nespay-webhook-staging, nespay-jobs-staging
nespay_deploy
