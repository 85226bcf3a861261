# The engine's image: `nba worker` (and every other nba command). Multi-stage: dependencies are
# built in the first stage; the runtime stage has no compilers and runs as a non-root user.
# Not built in this project's CI (no Docker engine there); validated by `docker compose config`.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY stream_app stream_app
COPY nba nba
COPY feedback feedback
COPY features features
COPY policies policies
COPY model_export model_export
COPY simulator simulator
COPY ingest ingest
COPY attribution attribution
RUN python -m venv /opt/nba && /opt/nba/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 nba
COPY --from=build /opt/nba /opt/nba
COPY deploy /app/deploy
COPY schemas /app/schemas
WORKDIR /app
USER nba
ENV PATH=/opt/nba/bin:$PATH \
    NBA_STATE_DIR=/app/state \
    NBA_MODEL_REGISTRY=/app/models/registry \
    NBA_FEATURE_REPO=/app/state/feature_repo \
    NBA_FEATURE_DATA=/app/data/features
ENTRYPOINT ["nba"]
CMD ["worker"]
