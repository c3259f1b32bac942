# syntax=docker/dockerfile:1
# fasttrack: build a virtualenv with the pinned dependencies, then copy it into a slim,
# non-root runtime image. `fasttrack serve` applies migrations before it starts serving.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md LICENSE ./
COPY src ./src
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --constraint constraints.txt ".[redis]"

FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DATABASE_URL=sqlite+aiosqlite:////data/fasttrack.db
RUN useradd --system --uid 10001 --user-group --home-dir /data --create-home fasttrack
COPY --from=build /opt/venv /opt/venv
USER fasttrack
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
# python, not curl: the slim image has no curl, and the check needs nothing more.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/health', timeout=4)"]
CMD ["fasttrack", "serve", "--host", "0.0.0.0", "--port", "8000"]
