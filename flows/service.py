"""`newswatch serve`: a local Prefect server when none is configured, and the deployments served on it.

Prefect schedules never fire on the temporary in-process server Prefect starts per process, so
without `PREFECT_API_URL` `serve` starts `prefect server start` (SQLite in its
PREFECT_HOME), waits until it is healthy, serves the deployments, and stops the server and every
process it started on exit (SIGINT or SIGTERM). A state file in the Prefect home lets
`newswatch status` find the running service.
"""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from flows.processes import descendants, die_with_this_process, stop_descendants  # noqa: F401 - the service's own API

logger = logging.getLogger(__name__)

STATE_FILE = "newswatch-serve.json"


class ServiceError(Exception):
    """The service cannot start; the message is one sentence for the user."""


@dataclass
class PrefectServer:
    """A Prefect server process this service started."""

    process: subprocess.Popen
    api_url: str
    log_path: Path

    def stop(self, grace_seconds: float = 20.0) -> None:
        """Stop the server and everything it started (its own process group)."""
        _signal_group(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(grace_seconds)
        except subprocess.TimeoutExpired:
            _signal_group(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        _signal_group(self.process.pid, signal.SIGKILL)  # stragglers of the group


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether nothing listens on host:port (127.0.0.1 is checked too: the service calls its server there)."""
    for address in dict.fromkeys(("127.0.0.1", host)):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
            except OSError:
                return False
    return True


def api_is_healthy(api_url: str, timeout: float = 2.0) -> bool:
    """Whether a Prefect API answers its health check."""
    try:
        return httpx.get(f"{api_url.rstrip('/')}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def ui_is_up(api_url: str, timeout: float = 5.0) -> bool:
    """Whether the Prefect UI beside this API answers with its page (not only the API)."""
    base = api_url.rstrip("/").removesuffix("/api")
    try:
        response = httpx.get(f"{base}/", timeout=timeout, follow_redirects=True, headers={"Accept": "text/html"})
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and "<html" in response.text[:2000].lower()


def connect_address(host: str) -> str:
    """The address a client on this machine uses for a server listening on host (a URL's host part).

    A wildcard (`0.0.0.0`, `::`) includes the loopback; an IPv6 address goes in brackets.
    """
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"[{host}]" if ":" in host else host


def start_prefect_server(
    home: Path, port: int, startup_timeout: float = 180.0, host: str = "127.0.0.1",
) -> PrefectServer:
    """Start `prefect server start` on host:port with this PREFECT_HOME and wait until it is healthy.

    The service itself calls it at `connect_address(host)`. Its UI calls the API
    at `/api` of the address the browser used, so it works through a published port or a reverse
    proxy, unless PREFECT_UI_API_URL says otherwise.

    Raises:
        ServiceError: The port is taken, or the server exited or stayed unhealthy.
    """
    if not port_is_free(port, host):
        raise ServiceError(
            f"port {port} on {host} is in use: set NEWSWATCH_PREFECT_PORT, or PREFECT_API_URL to use a running server"
        )
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "server.log"
    prefect = Path(sys.executable).with_name("prefect")
    command = [str(prefect) if prefect.exists() else "prefect", "server", "start", "--host", host, "--port", str(port)]
    environment = {
        "PREFECT_UI_API_URL": "/api",
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    environment.pop("PREFECT_API_URL", None)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, env=environment, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopping it stops its workers too
            preexec_fn=die_with_this_process(),  # and it ends with this process, even one killed with SIGKILL
        )
    server = PrefectServer(process, f"http://{connect_address(host)}:{port}/api", log_path)
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise ServiceError(f"the Prefect server exited at start ({tail[0][:200]}); see {log_path}")
        if api_is_healthy(server.api_url):
            return server
        time.sleep(0.5)
    server.stop()
    raise ServiceError(f"the Prefect server was not healthy after {startup_timeout:.0f} s; see {log_path}")


def start_api_server(settings, log_path: Path, startup_timeout: float = 120.0) -> PrefectServer:
    """Start `newswatch api` on the settings' API address beside the service and wait until `/health` answers.

    It runs in its own process group and ends with this process, like the Prefect server; the
    returned handle's `stop()` stops it (its `api_url` is the API's base URL).

    Raises:
        ServiceError: The port is taken, or the API exited or did not answer in time.
    """
    if not port_is_free(settings.api_port, settings.api_host):
        raise ServiceError(f"port {settings.api_port} on {settings.api_host} is in use: set NEWSWATCH_API_PORT")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "flows.cli", "api", "--db", str(settings.db.resolve()),
               "--host", settings.api_host, "--port", str(settings.api_port)]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=die_with_this_process(),
        )
    server = PrefectServer(process, f"http://{connect_address(settings.api_host)}:{settings.api_port}", log_path)
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise ServiceError(f"the API exited at start ({tail[0][:200]}); see {log_path}")
        try:
            if httpx.get(f"{server.api_url}/health", timeout=2.0).status_code in (200, 503):
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    server.stop()
    raise ServiceError(f"the API did not answer after {startup_timeout:.0f} s; see {log_path}")


def prefect_home(settings) -> Path:
    """PREFECT_HOME of the service's own Prefect server: the setting, else `prefect/` beside the database."""
    return (settings.prefect_home or settings.db.resolve().parent / "prefect").resolve()


def own_server_api_url(settings) -> str:
    """Where the Prefect server the service starts itself answers, for clients on this machine."""
    return f"http://{connect_address(settings.prefect_host)}:{settings.prefect_port}/api"


def use_running_service(settings, say: Callable[[str], None]) -> None:
    """Run on the Prefect server of a `serve` running with this Prefect home, so the run shows in its UI and its list of runs.

    Only when PREFECT_API_URL is not set and the service's server answers; otherwise Prefect
    starts its temporary server for this run. Call before Prefect is imported.
    """
    if os.environ.get("PREFECT_API_URL"):
        return
    state = read_state(prefect_home(settings))
    if state and state.get("api_url") and api_is_healthy(state["api_url"]):
        os.environ["PREFECT_API_URL"] = state["api_url"]
        say(f"on the Prefect server of the running service ({state['api_url']})")


def start_model_host(settings):
    """Load the embedding model in this process and let the flow runs it starts embed through it (`flows.model_host`)."""
    from flows.embedding import embedder_config, make_embedder
    from flows.model_host import ModelHost

    host = ModelHost(make_embedder).start(warm=embedder_config(settings))
    os.environ.update(host.environment())  # the flow runs' processes inherit it
    return host


def serve_until_stopped(
    settings, *, own_server: bool, started: float, say: Callable[[str], None], api: bool = False,
) -> None:
    """Serve the scheduled deployments until SIGINT or SIGTERM, then stop everything the service started.

    Args:
        settings: The service's settings (database, schedules, Prefect server address and home).
        own_server: Start a Prefect server first (PREFECT_API_URL was not set); else use PREFECT_API_URL's.
        started: `time.monotonic()` when the command started (for the "ready in" line).
        say: Prints a line for the user.
        api: Also serve the read-only HTTP API (`newswatch api`, on NEWSWATCH_API_HOST and _PORT) until stopped.

    Raises:
        ServiceError: The Prefect server or the API could not be started, or PREFECT_API_URL's does not answer.
    """
    home = prefect_home(settings)
    api_url = own_server_api_url(settings) if own_server else os.environ["PREFECT_API_URL"]
    server = None
    if own_server:
        server = start_prefect_server(home, settings.prefect_port, host=settings.prefect_host)
    elif not api_is_healthy(api_url):
        raise ServiceError(f"the Prefect server at PREFECT_API_URL={api_url} does not answer")
    from flows.deployments import build_deployments

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops it like Ctrl+C
    state = api_server = model_host = None
    try:
        if api:
            api_server = start_api_server(settings, home / "api.log")
        if settings.serve_warm_model:
            model_host = start_model_host(settings)
        deployments = build_deployments(settings.db.resolve(), settings)
        schedule = f"cron {settings.serve_cron}" if settings.serve_cron else f"every {settings.serve_interval_seconds:g} s"
        state = write_state(
            home, api_url=api_url, db=str(settings.db.resolve()), schedule=schedule,
            ui=own_server and os.environ.get("PREFECT_UI_ENABLED", "true").lower() not in ("0", "false", "no", "off"),
        )
        digest = f", digest at cron {settings.digest_cron}" if len(deployments) > 2 else ""
        served_api = f"; newswatch API {api_server.api_url}" if api_server is not None else ""
        say(
            f"newswatch serving: feed runs {schedule}, maintenance at cron {settings.maintenance_cron}{digest} "
            f"({settings.serve_timezone}); Prefect API {api_url}{served_api}; ready in {time.monotonic() - started:.1f} s"
        )
        serve_deployments(deployments)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if state is not None:
            state.unlink(missing_ok=True)
        if api_server is not None:
            api_server.stop()
        if model_host is not None:
            model_host.stop()
        if server is not None:
            server.stop()
        stop_descendants()
        say("newswatch stopped")


def write_state(home: Path, **state) -> Path:
    """Record where the running service is, for `newswatch status`."""
    path = home / STATE_FILE
    path.write_text(json.dumps({**state, "pid": os.getpid(), "started_at": datetime.now(UTC).isoformat()}))
    return path


def read_state(home: Path) -> dict | None:
    """The running service's state, or None when no live service wrote one."""
    try:
        state = json.loads((home / STATE_FILE).read_text())
        os.kill(int(state["pid"]), 0)
    except PermissionError:
        return state  # alive, run by another user (a container started with --user, checked as its default user)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state


def next_scheduled_runs(api_url: str) -> list[tuple[str, datetime]]:
    """The next scheduled run of each newswatch deployment, as (deployment name, expected start)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter, DeploymentFilterName, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deployments import DIGEST_DEPLOYMENT, INGEST_DEPLOYMENT, MAINTENANCE_DEPLOYMENT

    upcoming = []
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        for name in (INGEST_DEPLOYMENT, MAINTENANCE_DEPLOYMENT, DIGEST_DEPLOYMENT):
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
                ),
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name])),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                limit=1,
            )
            if runs and runs[0].expected_start_time:
                upcoming.append((name, runs[0].expected_start_time.astimezone(UTC)))
    return upcoming


def serve_deployments(deployments: list) -> None:
    """Serve deployments in this process until SIGINT or SIGTERM; at most one flow run at a time.

    Like `prefect.serve`, but SIGTERM stops it the same way Ctrl+C does, so the caller's cleanup runs.
    """
    import asyncio

    from prefect.runner import Runner

    class _Runner(Runner):
        def handle_sigterm(self, *args, **kwargs) -> None:
            raise KeyboardInterrupt

    runner = _Runner(pause_on_shutdown=True, limit=1)
    for deployment in deployments:
        runner.add_deployment(deployment)
    try:
        asyncio.run(runner.start())
    except KeyboardInterrupt:
        logger.info("stopping: finishing or abandoning the current run")


def work_pool_exists(name: str) -> bool:
    """Whether the Prefect server at PREFECT_API_URL has this work pool."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
        except ObjectNotFound:
            return False
    return True
