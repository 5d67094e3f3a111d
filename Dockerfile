# newswatch: scheduled news ingest with duplicate detection and story clustering into DuckDB.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    NEWSWATCH_DB=/data/newswatch.duckdb \
    NEWSWATCH_PREFECT_HOME=/data/prefect

# CPU-only torch first, pinned to the version in pyproject.toml, so no CUDA packages come along.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

WORKDIR /app
COPY pyproject.toml README.md ./
COPY extract ./extract
COPY warehouse ./warehouse
COPY flows ./flows
COPY dashboards ./dashboards
# The OpenVINO runtime makes embedding about twice as fast; optimum-intel without its dependencies
# (it would pull a torchvision that breaks against the CPU torch). The model's OpenVINO export is
# made now, beside the model, so containers start with it.
RUN pip install '.[openvino]' && pip install --no-deps optimum-intel==2.2.0 \
    && python -c "from extract.embed import Embedder; assert Embedder(backend='openvino').load().backend_in_use == 'openvino'"
COPY tests/fixtures/seeds ./fixtures/seeds

RUN useradd --create-home --uid 10001 newswatch && mkdir -p /data && chown newswatch /data
USER newswatch
# The DuckDB file, the Prefect server's SQLite home and the Parquet exports all live here.
VOLUME ["/data"]
HEALTHCHECK --interval=60s --timeout=20s --start-period=120s --retries=3 CMD ["newswatch", "status", "--check"]

# Feeds: `docker exec <container> newswatch add-feed URL`, or mount an OPML file and set NEWSWATCH_FEEDS_FILE.
CMD ["newswatch", "serve"]
