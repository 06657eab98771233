# syntax=docker/dockerfile:1
# The moderation consumer: `docker build -t REGISTRY/moderation-consumer:VERSION .`
# Two builds of one commit install the same bytes: every Python distribution comes from a lock with
# its sha256 (requirements.lock for the service, docker/build-tools.lock for the build's own tools;
# `make lock` writes both). Pin PYTHON_IMAGE by digest (python:3.11.11-slim-bookworm@sha256:...) to
# fix the base image too.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# --- build: the wheel, the locked install into /opt/moderation, and its SBOM ---
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
# the build's tools (setuptools for the wheel, cyclonedx-bom for the SBOM), locked, never shipped
COPY docker/build-tools.lock docker/
RUN python -m venv /tools \
    && /tools/bin/python -m pip install --no-cache-dir --disable-pip-version-check --quiet \
        --require-hashes --only-binary :all: -r docker/build-tools.lock
COPY pyproject.toml README.md LICENSE requirements.lock ./
# consumer/schemas links to the top-level schemas/ (the Avro contract); the wheel build follows it
COPY schemas ./schemas
COPY consumer ./consumer
# SOURCE_DATE_EPOCH: the wheel's file times fixed (1980-01-01), so the same sources give the same wheel
RUN SOURCE_DATE_EPOCH=315532800 /tools/bin/python -m pip wheel --no-cache-dir --disable-pip-version-check \
        --quiet --no-deps --no-build-isolation --wheel-dir /wheels .
# docker/install.sh: the locked dependencies (--require-hashes), then the wheel with --no-deps;
# docker/sbom.sh: CycloneDX JSON of that environment (tests/integration/test_image_install.py runs both)
COPY docker/install.sh docker/sbom.sh docker/
RUN sh docker/install.sh /wheels /opt/moderation requirements.lock \
    && mkdir /sbom \
    && CYCLONEDX_PY=/tools/bin/cyclonedx-py sh docker/sbom.sh /opt/moderation /sbom/sbom.cdx.json

# --- runtime: the installed environment and its SBOM; no compiler, no pip, no build tools ---
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="moderation-consumer" \
      org.opencontainers.image.description="Streaming upload moderation: Kafka uploads in, exactly one Avro verdict out." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.url="https://git.example.com/moderation" \
      org.opencontainers.image.source="https://git.example.com/moderation" \
      org.opencontainers.image.documentation="https://git.example.com/moderation/blob/main/docs/index.md"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/nonexistent \
    TMPDIR=/tmp \
    PATH=/opt/moderation/bin:${PATH}

# the same base image, so the environment's interpreter link (/usr/local/bin/python3) holds; modes
# (read-only) and the compiled bytecode come along
COPY --from=build /opt/moderation /opt/moderation
# the bill of materials of /opt/moderation (CycloneDX 1.6 JSON), for scanners and auditors
COPY --from=build /sbom/sbom.cdx.json /app/sbom.cdx.json
RUN groupadd --system --gid 10001 moderation \
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
