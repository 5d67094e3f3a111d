"""A feed run stopped by a signal ends within seconds, keeps its stored batches, and leaves no process behind.

Each test starts `newswatch run` in a session of its own against a local feed whose pages come
slowly, waits until the first batch is stored, signals it, and then counts the processes left in
that session (Prefect's temporary server, extraction workers, multiprocessing's resource tracker).
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.http_server import make_server_fixture, respond, static

pytestmark = pytest.mark.slow  # runs and stops `newswatch run` processes

http_server = make_server_fixture()

PAGES = 60
BATCH = 8
NEWSWATCH = str(Path(sys.executable).with_name("newswatch"))


def serve_slow_site(http_server, delay: dict) -> None:
    items = "".join(
        f"<item><title>Bridge {i}</title><link>{http_server.base_url}/p/{i}</link><description>Summary {i}.</description></item>"
        for i in range(PAGES)
    )
    http_server.route("/feed.xml", static(f"<rss version='2.0'><channel>{items}</channel></rss>".encode(), "application/rss+xml"))

    def page(request):
        time.sleep(delay["seconds"])
        i = request.path.rsplit("/", 1)[-1]
        respond(request, 200, (
            f"<html lang='en'><body><article><h1>Town{i} rebuilds its bridge</h1>"
            f"<p>The council of Town{i} voted on Tuesday to rebuild the bridge over the river Flow{i}.</p>"
            f"<p>Mayor Alice Number{i} said the work would cost {i} million euros and start in spring.</p>"
            "</article></body></html>"
        ).encode())

    for i in range(PAGES):
        http_server.route(f"/p/{i}", page)


def environment(db: Path) -> dict:
    return {
        **os.environ,
        "NEWSWATCH_DB": str(db),
        "PREFECT_API_URL": "",  # Prefect's temporary server, which must end with the run too
        "NEWSWATCH_ALLOW_PRIVATE_NETWORKS": "1",
        "NEWSWATCH_FETCH_HOST_DELAY": "0",
        "NEWSWATCH_FETCH_HOST_CONCURRENCY": "2",
        "NEWSWATCH_RESPECT_ROBOTS": "0",
        "NEWSWATCH_BATCH_SIZE": str(BATCH),
        "NEWSWATCH_EXTRACT_WORKERS": "2",
    }


class Run:
    """`newswatch run` in a session of its own, its stderr collected as it comes."""

    def __init__(self, db: Path):
        self.process = subprocess.Popen(
            [NEWSWATCH, "run"], env=environment(db), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=lambda: self.stderr.extend(self.process.stderr), daemon=True)
        self._reader.start()

    def wait_for(self, fragment: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(fragment in line for line in list(self.stderr)):
                return
            assert self.process.poll() is None, "".join(self.stderr)[-3000:]
            time.sleep(0.2)
        raise AssertionError(f"{fragment!r} not seen in {timeout} s:\n" + "".join(self.stderr)[-3000:])

    def exit_code(self, timeout: float) -> tuple[int, float]:
        started = time.monotonic()
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code, time.monotonic() - started

    def left_behind(self, wait: float = 10.0) -> list[str]:
        """Live processes still in the run's session, after up to `wait` seconds."""
        deadline = time.monotonic() + wait
        while True:
            found = []
            for entry in Path("/proc").glob("[0-9]*"):
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    if int(fields[3]) == self.process.pid and fields[0] != "Z":
                        found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:120])
                except (OSError, ValueError, IndexError):
                    continue
            if not found or time.monotonic() > deadline:
                return found
            time.sleep(0.5)

    def kill_session(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def slow_feed(tmp_path, http_server):
    delay = {"seconds": 0.6}
    serve_slow_site(http_server, delay)
    db = tmp_path / "stop.duckdb"
    added = subprocess.run([NEWSWATCH, "add-feed", http_server.url("/feed.xml")], env=environment(db), capture_output=True)
    assert added.returncode == 0, added.stderr
    runs = []

    def start() -> Run:
        runs.append(Run(db))
        return runs[-1]

    yield db, delay, start
    for run in runs:
        run.kill_session()


def stored_batches(db: Path, query) -> tuple[int, list[str]]:
    (count,), = query(db, "SELECT count(*) FROM articles")
    return count, [status for (status,) in query(db, "SELECT status FROM runs ORDER BY started_at")]


def test_sigterm_to_the_whole_process_group_stops_the_run_within_seconds(slow_feed, query):
    db, _, start = slow_feed
    run = start()
    run.wait_for("batch 1 stored")
    os.killpg(run.process.pid, signal.SIGTERM)  # as `timeout`, systemd or a container stop do: the API server dies too
    code, seconds = run.exit_code(timeout=30)
    assert code == 128 + signal.SIGTERM and seconds < 30, (code, seconds, "".join(run.stderr)[-2000:])
    assert run.left_behind() == []
    count, statuses = stored_batches(db, query)
    assert 0 < count < PAGES and count % BATCH == 0 and statuses == ["cancelled"]


def test_sigterm_to_the_run_alone_stops_its_server_and_workers(slow_feed, query):
    db, _, start = slow_feed
    run = start()
    run.wait_for("batch 1 stored")
    run.process.send_signal(signal.SIGTERM)
    code, seconds = run.exit_code(timeout=30)
    assert code == 128 + signal.SIGTERM and seconds < 30, (code, seconds, "".join(run.stderr)[-2000:])
    assert "newswatch: stopped by SIGTERM; the batches stored before were kept" in "".join(run.stderr)
    assert run.left_behind() == []
    count, statuses = stored_batches(db, query)
    assert 0 < count < PAGES and count % BATCH == 0 and statuses == ["cancelled"]


def test_after_sigkill_nothing_is_left_and_the_next_run_completes_the_feed(slow_feed, query):
    db, delay, start = slow_feed
    run = start()
    run.wait_for("batch 1 stored")
    run.process.kill()
    run.exit_code(timeout=10)
    assert run.left_behind() == []  # the server, the workers and the resource tracker died with it
    count, statuses = stored_batches(db, query)
    assert 0 < count < PAGES and count % BATCH == 0 and statuses == ["running"]
    assert query(db, "SELECT etag, last_status FROM feeds") == [(None, None)]  # not complete: read again next run

    delay["seconds"] = 0.0
    resumed = start()
    code, _ = resumed.exit_code(timeout=600)
    assert code == 0, "".join(resumed.stderr)[-3000:]
    assert query(db, "SELECT count(*), count(DISTINCT url) FROM articles") == [(PAGES, PAGES)]
    assert stored_batches(db, query)[1] == ["abandoned", "completed"]
    assert query(db, "SELECT last_status, consecutive_failures FROM feeds") == [(200, 0)]
