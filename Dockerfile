# syntax=docker/dockerfile:1
# The moderation consumer: `docker build -t REGISTRY/moderation-consumer:VERSION .`
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# --- build: the wheel and every dependency as wheels (no compiler reaches the runtime image) ---
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
# consumer/schemas links to the top-level schemas/ (the Avro contract); the wheel build follows it
COPY schemas ./schemas
COPY consumer ./consumer
RUN python -m pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir /wheels .

# --- runtime: the wheel installed by docker/install.sh (the step a test runs too) ---
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="moderation-consumer" \
      org.opencontainers.image.description="Streaming upload moderation: Kafka uploads in, exactly one Avro verdict out." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Proprietary" \
      org.opencontainers.image.source="https://example.invalid/moderation-consumer"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/nonexistent \
    TMPDIR=/tmp \
    PATH=/opt/moderation/bin:${PATH}

COPY docker/install.sh /usr/local/bin/install-moderation
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    INSTALL_OFFLINE=1 install-moderation /wheels /opt/moderation \
    && groupadd --system --gid 10001 moderation \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin moderation

# a fixed non-root UID; only /tmp needs to be writable (readOnlyRootFilesystem in the chart)
USER 10001:10001
WORKDIR /tmp
# health, readiness and metrics; the callback receiver
EXPOSE 8080 8081
HEALTHCHECK --interval=30s --timeout=5s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=3)"]
# exec form: SIGTERM reaches the service, which stops intake, drains and commits
ENTRYPOINT ["moderation-consumer", "run"]
