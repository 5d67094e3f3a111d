"""Shared fixtures: the seed articles and their local site, a Prefect test server, read-only
queries of a warehouse, and an environment that never reaches the network.

Tests that start servers, browsers or the service are marked `slow`; `pytest -m "not slow"` is
the quick loop (README, "Tests").
"""

import os
import shutil
from pathlib import Path

import duckdb
import pytest

# Before Prefect or transformers are imported by any test module.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from tests.http_server import serve
from tests.seed_site import SEEDS, serve_seed_site


@pytest.fixture
def seeds_copy(tmp_path: Path):
    """A function copying chosen seed files into a fresh folder and returning it."""

    def copy(*names: str, folder: str = "in") -> Path:
        target = tmp_path / folder
        target.mkdir(exist_ok=True)
        for name in names:
            shutil.copy(SEEDS / name, target / name)
        return target

    return copy


_LOOPBACK_NAMES = {None, "", "localhost", "localhost.localdomain", b"localhost"}


@pytest.fixture(autouse=True, scope="session")
def no_network():
    """Refuse DNS for any name but localhost, so no test can reach the network by mistake."""
    import ipaddress
    import socket

    real = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in _LOOPBACK_NAMES:
            try:
                ipaddress.ip_address(name.split("%")[0])  # a literal address needs no DNS
                literal = True
            except ValueError:
                literal = False
            if not literal:
                raise socket.gaierror(socket.EAI_NONAME, f"tests may not resolve {name!r}: loopback only")
        return real(host, *args, **kwargs)

    socket.getaddrinfo = loopback_only
    yield
    socket.getaddrinfo = real


_SHARED_SERVER = None


def pytest_configure(config):
    """One Prefect server per test process, in PREFECT_API_URL for the flows tests run and the commands they start.

    Without it each `newswatch run` a test starts would start Prefect's temporary server (seconds
    of CPU each). Tests of the temporary server's own behaviour set PREFECT_API_URL to "".
    Not in pytest-xdist's controlling process (its workers run the tests), nor when
    PREFECT_API_URL is already set or NEWSWATCH_TEST_SHARED_PREFECT=0.
    """
    global _SHARED_SERVER
    controller = getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput")
    if controller or os.environ.get("PREFECT_API_URL") or os.environ.get("NEWSWATCH_TEST_SHARED_PREFECT") == "0":
        return
    import socket
    import tempfile

    from flows.service import start_prefect_server

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    home = Path(tempfile.mkdtemp(prefix="newswatch-test-prefect-"))
    _SHARED_SERVER = (start_prefect_server(home, port), home)
    os.environ["PREFECT_API_URL"] = _SHARED_SERVER[0].api_url


def pytest_unconfigure(config):
    global _SHARED_SERVER
    if _SHARED_SERVER is not None:
        server, home = _SHARED_SERVER
        _SHARED_SERVER = None
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def pytest_collection_modifyitems(items):
    """A test on a Prefect server is slow (the server takes seconds to start, the flows more)."""
    for item in items:
        if "prefect_server" in item.fixturenames:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="module")
def prefect_server():
    """A Prefect server for the flows of one test module (`usefixtures` or autouse there).

    The test process's shared server when there is one (`pytest_configure`), else a temporary one.
    """
    if _SHARED_SERVER is not None:
        yield
        return
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _query(db, sql: str, parameters=None) -> list[tuple]:
    connection = duckdb.connect(str(db), read_only=True)
    try:
        return connection.execute(sql, parameters or []).fetchall()
    finally:
        connection.close()


@pytest.fixture
def query():
    """`query(db, sql, parameters=None)`: the rows of one read-only query of the warehouse file db."""
    return _query


@pytest.fixture
def seed_site():
    """A started local site with the seed feed and pages (`tests/seed_site.py`)."""
    with serve() as server:
        serve_seed_site(server)
        yield server
