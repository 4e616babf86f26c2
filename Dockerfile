# syntax=docker/dockerfile:1
# The Maeul gateway: a small non-root image that migrates its database, then serves the API.
#
#   docker build -t maeul-gateway .
#   docker run --rm -p 8000:8000 -e GATEWAY_API_TOKEN=... -e GATEWAY_JWT_SECRET=... \
#       -e GATEWAY_MQTT_URL=mqtt://... -e GATEWAY_DATABASE_URL=postgresql+asyncpg://... \
#       -v maeul-data:/data maeul-gateway
#
# GATEWAY_JWT_SECRET (or GATEWAY_JWT_SECRET_FILE, e.g. a container secret) is required: at
# least 32 random characters (`maeul secret` prints one), the same on every replica.
#
# Without GATEWAY_DATABASE_URL the gateway uses SQLite in /data (one replica only).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: wheels for every dependency, installed into a virtualenv --------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app

# Dependencies get a layer of their own, so a code change does not rebuild them: every one at
# the version and hash of the lock file. Each ships manylinux wheels (PyAV bundles FFmpeg), so no
# compiler is needed.
COPY requirements/runtime.lock ./requirements/
RUN pip install --require-hashes -r requirements/runtime.lock

# The project as a wheel, like any installation: the migrations travel inside the package.
COPY pyproject.toml setup.py MANIFEST.in README.md alembic.ini ./
COPY alembic ./alembic
COPY gateway ./gateway
COPY wire ./wire
COPY audio ./audio
COPY devices ./devices
COPY maeul ./maeul
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && pip install --no-deps --no-index /wheels/maeul-*.whl \
    && python -m compileall -q /opt/venv
COPY scripts/docker-entrypoint.sh /usr/local/bin/maeul-entrypoint
RUN chmod 0755 /usr/local/bin/maeul-entrypoint

# --- runtime ------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG UID=10001
# espeak-ng speaks typed text (text broadcasts and the framing of tests and exercises); tini is
# the init process: it forwards SIGTERM to the gateway, so the replica drains, and reaps the
# speech engine's children.
RUN apt-get update \
    && apt-get install -y --no-install-recommends espeak-ng tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid "${UID}" maeul \
    && useradd --system --uid "${UID}" --gid maeul --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin maeul \
    && mkdir -p /data \
    && chown maeul:maeul /data

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /usr/local/bin/maeul-entrypoint /usr/local/bin/maeul-entrypoint

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GATEWAY_ENVIRONMENT=production \
    GATEWAY_DATA_DIR=/data

WORKDIR /data
USER ${UID}:${UID}
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request\ntry:\n    ok = urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200\nexcept OSError as exc:\n    sys.exit(f'unhealthy: {exc}')\nsys.exit(0 if ok else 1)"]

ENTRYPOINT ["tini", "--", "maeul-entrypoint"]
CMD ["serve"]

LABEL org.opencontainers.image.title="maeul-gateway" \
      org.opencontainers.image.description="Smart-village broadcast gateway (FastAPI + MQTT 5)" \
      org.opencontainers.image.licenses="Apache-2.0"
