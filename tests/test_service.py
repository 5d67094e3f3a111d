"""The scheduled service on a real local Prefect server: `newswatch serve`, and deployments run by a worker."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from flows.service import connect_address, descendants, start_prefect_server
from warehouse.connection import WarehouseError, open_warehouse
from warehouse.feeds import add_feed
from warehouse.runs import recent_runs

pytestmark = pytest.mark.slow  # starts the service and Prefect servers

NEWSWATCH = [sys.executable, "-m", "flows.cli"]
ROOT = Path(__file__).parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def service_environment(**extra: str) -> dict[str, str]:
    environment = {
        **os.environ,
        "NEWSWATCH_ALLOW_PRIVATE_NETWORKS": "1",
        "NEWSWATCH_FETCH_HOST_DELAY": "0",
        "NEWSWATCH_POLL_INTERVAL_MINUTES": "0.0001",  # the feed is due at every run
        "NEWSWATCH_PREFECT_PORT": str(free_port()),
        **extra,
    }
    environment.pop("PREFECT_API_URL", None)
    return environment


def read_runs(db: Path):
    try:
        with open_warehouse(db, read_only=True, lock_wait=10) as connection:
            return recent_runs(connection, 50)
    except WarehouseError:
        return None


def flow_names(api_url: str) -> set[str]:
    """Names of the flows with runs on the Prefect server at api_url."""
    flows = httpx.post(f"{api_url}/flows/filter", json={"limit": 50}, timeout=30).raise_for_status().json()
    runs = httpx.post(f"{api_url}/flow_runs/filter", json={"limit": 200}, timeout=30).raise_for_status().json()
    names = {flow["id"]: flow["name"] for flow in flows}
    return {names.get(run["flow_id"], "?") for run in runs}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_serve_runs_on_schedule_and_stops_cleanly(tmp_path, seed_site):
    db = tmp_path / "nw.duckdb"
    with open_warehouse(db) as connection:
        add_feed(connection, seed_site.url("/feed.xml"), "Local", datetime.now(UTC))
    service = subprocess.Popen(
        [*NEWSWATCH, "serve", "--db", str(db), "--interval", "5"], cwd=ROOT, env=service_environment(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 420
        completed = []
        while time.monotonic() < deadline and service.poll() is None:
            children.update(descendants(service.pid))
            runs = read_runs(db) or []
            completed = [r for r in reversed(runs) if r.flow == "ingest-feeds" and r.status == "completed"]
            if len(completed) >= 2:
                break
            time.sleep(2)
        assert len(completed) >= 2, (service.poll(), [(r.status, r.message) for r in read_runs(db) or []])
        first, second = completed[0], completed[1]
        assert (first.feeds_polled, first.new_articles, first.duplicates) == (1, 4, 1)
        assert (second.not_modified, second.new_articles) == (1, 0)  # the feed answered 304
        assert (tmp_path / "prefect" / "newswatch-serve.json").exists()
        status = subprocess.run(
            [*NEWSWATCH, "status", "--db", str(db)], cwd=ROOT, env={**service_environment()},
            capture_output=True, text=True, timeout=120,
        )
        assert status.returncode == 0, status.stderr
        assert "Service: running" in status.stdout and "Next scheduled-ingest" in status.stdout
        check = subprocess.run(
            [*NEWSWATCH, "status", "--check", "--db", str(db)], cwd=ROOT, env=service_environment(),
            capture_output=True, text=True, timeout=120,
        )
        assert check.returncode == 0 and "and its UI are up" in check.stdout, check.stdout + check.stderr
        # A run started by hand beside the service (as `docker exec` does) runs on the service's
        # Prefect server, so it shows in its UI; another database keeps it clear of the schedule.
        by_hand = subprocess.run(
            [*NEWSWATCH, "run", "--fixtures", str(ROOT / "tests" / "fixtures" / "seeds"), "--db", str(tmp_path / "other.duckdb")],
            cwd=ROOT, env=service_environment(NEWSWATCH_PREFECT_HOME=str(tmp_path / "prefect")),
            capture_output=True, text=True, timeout=300,
        )
        assert by_hand.returncode == 0, by_hand.stderr[-2000:]
        assert "on the Prefect server of the running service" in by_hand.stdout
        assert "ingest-fixtures" in flow_names(json.loads((tmp_path / "prefect" / "newswatch-serve.json").read_text())["api_url"])
        children.update(descendants(service.pid))
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            output, _ = service.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(service.pid, signal.SIGKILL)
            raise
    assert service.returncode == 0, output.decode(errors="replace")[-2000:]
    assert b"newswatch stopped" in output
    assert children, "the service started no Prefect server or flow run"
    time.sleep(1)
    assert not [pid for pid in children if alive(pid)]  # the Prefect server and every flow run are gone
    assert not (tmp_path / "prefect" / "newswatch-serve.json").exists()
    with open_warehouse(db, read_only=True) as connection:
        assert connection.execute("SELECT count(*), count(DISTINCT url) FROM articles").fetchone() == (4, 4)
        statuses = [row[0] for row in connection.execute("SELECT status FROM runs").fetchall()]
    # A run SIGTERM caught is "cancelled"; one killed before it could say so is left "running"
    # and marked "abandoned" by the next run.
    assert set(statuses) <= {"completed", "cancelled", "running"} and statuses.count("running") <= 1


def test_a_worker_runs_the_deployed_ingest(tmp_path, seed_site):
    db = tmp_path / "nw.duckdb"
    with open_warehouse(db) as connection:
        add_feed(connection, seed_site.url("/feed.xml"), "Local", datetime.now(UTC))
    server = start_prefect_server(tmp_path / "prefect", free_port())
    environment = {**service_environment(), "PREFECT_API_URL": server.api_url}
    prefect = str(Path(sys.executable).with_name("prefect"))

    def run(*command: str, timeout: int = 300) -> subprocess.CompletedProcess:
        result = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"{command}: {result.stdout[-1500:]} {result.stderr[-1500:]}"
        return result

    try:
        run(prefect, "work-pool", "create", "newswatch-test", "--type", "process")
        deployed = subprocess.run(
            [*NEWSWATCH, "deploy", "--pool", "newswatch-test", "--db", str(db), "--interval", "86400"],
            cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300,
        )
        assert deployed.returncode == 0, deployed.stderr
        assert "deployed 2 deployments" in deployed.stdout
        triggered = run(prefect, "deployment", "run", "ingest-feeds/scheduled-ingest")
        assert "Created flow run" in triggered.stdout
        run(prefect, "worker", "start", "--pool", "newswatch-test", "--run-once", timeout=420)

        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
        from prefect.client.schemas.sorting import FlowRunSort
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: server.api_url}), get_client(sync_client=True) as client:
            flow_runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["scheduled-ingest"])),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                limit=20,
            )
        states = [flow_run.state.type.value for flow_run in flow_runs if flow_run.state and flow_run.state.is_final()]
        assert "COMPLETED" in states, [(r.name, r.state) for r in flow_runs]
    finally:
        server.stop()
    with open_warehouse(db, read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM articles").fetchone()[0] == 4
        assert connection.execute("SELECT flow, status FROM runs").fetchall() == [("ingest-feeds", "completed")]


@pytest.mark.parametrize(
    ("host", "address"),
    [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"), ("::", "[::1]"), ("10.0.0.5", "10.0.0.5"), ("::1", "[::1]")],
)
def test_clients_on_this_machine_reach_a_server_where_it_listens(host, address):
    assert connect_address(host) == address
