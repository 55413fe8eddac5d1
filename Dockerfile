# Nespay: one image, three processes (`nespay serve api|webhook|jobs`).
#
#   docker build -t nespay-backend:latest .
#   docker run -d -p 8000:8000 --env-file .env nespay-backend:latest                 # api
#   docker run -d -p 8001:8001 --env-file .env nespay-backend:latest serve webhook   # webhook
#   docker run -d -p 8002:8002 --env-file .env nespay-backend:latest serve jobs      # jobs
#   docker run --rm --env-file .env nespay-backend:latest db migrate                 # migrations
#
# No `.env` is copied into or baked into the image (.dockerignore excludes it as well):
# configuration and secrets are given at run time (--env-file, compose env_file, Kubernetes
# Secrets). Works with the classic builder as well as BuildKit (no RUN --mount).

# --- builder: resolve the locked dependencies and install the project into /app/.venv -------
FROM python:3.11-slim-trixie AS builder

RUN pip install --no-cache-dir uv==0.13.8

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /src

# Dependencies first (their own layer, rebuilt only when the lock file changes) ...
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-editable --no-install-project

# ... then the project itself, built as a wheel (with its migrations) into the venv.
COPY README.md ./
COPY migrations ./migrations
COPY src ./src
RUN uv sync --frozen --no-dev --no-editable \
    && test -x /app/.venv/bin/nespay \
    && /app/.venv/bin/python -c "import nespay, pathlib; assert (pathlib.Path(nespay.__file__).parent / '_migrations' / 'env.py').is_file(), 'migrations missing from the wheel'"

# --- runtime: the interpreter, the venv, a non-root user; nothing else ----------------------
FROM python:3.11-slim-trixie AS runtime

ARG NESPAY_UID=10001
ARG NESPAY_GID=10001

LABEL org.opencontainers.image.title="nespay" \
      org.opencontainers.image.description="Nespay payment platform: api, webhook and jobs processes"

RUN groupadd --system --gid "${NESPAY_GID}" nespay \
    && useradd --system --uid "${NESPAY_UID}" --gid nespay --home-dir /app \
       --no-create-home --shell /usr/sbin/nologin nespay

# The venv stays owned by root: the app user can read and run it, not change it.
COPY --from=builder /app/.venv /app/.venv

ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /app
USER ${NESPAY_UID}:${NESPAY_GID}

EXPOSE 8000 8001 8002

# The port follows the process: NESPAY_PROCESS (api|webhook|jobs) when set, otherwise the word
# after `serve` on PID 1's command line, otherwise api; then API_PORT / WEBHOOK_PORT / JOB_PORT
# (defaults 8000/8001/8002) and PUBLIC_API_PREFIX (default api/v1); proxies are bypassed.
# A 503 or no answer fails.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os,urllib.request as r;a=open('/proc/1/cmdline','rb').read().split(b'\\0');p=os.environ.get('NESPAY_PROCESS') or (a[a.index(b'serve')+1].decode() if b'serve' in a[:-1] else 'api');v,d={'api':('API_PORT','8000'),'webhook':('WEBHOOK_PORT','8001'),'jobs':('JOB_PORT','8002')}[p];r.build_opener(r.ProxyHandler({})).open('http://127.0.0.1:%s/%s/health'%(os.environ.get(v) or d,(os.environ.get('PUBLIC_API_PREFIX') or 'api/v1').strip('/')),timeout=4)"]

ENTRYPOINT ["nespay"]
CMD ["serve", "api"]
