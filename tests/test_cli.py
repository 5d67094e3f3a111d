"""The command line: bad input gives one line and exit 2; a run with bad files goes on."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.seed_site import ORIGINAL, OTHER, REWRITE


def newswatch(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})},
        cwd=Path(__file__).parent.parent,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("newswatch: error: ")
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0]


def test_missing_fixture_folder(tmp_path):
    assert_one_line_error(newswatch("run", "--fixtures", str(tmp_path / "nope"), "--db", str(tmp_path / "x.duckdb")), "does not exist")
    assert not (tmp_path / "x.duckdb").exists()


def test_fixture_path_that_is_a_file(tmp_path):
    file = tmp_path / "a.txt"
    file.write_text("hello")
    assert_one_line_error(newswatch("run", "--fixtures", str(file), "--db", str(tmp_path / "x.duckdb")), "not a folder")


def test_database_in_missing_folder(tmp_path, seeds_copy):
    assert_one_line_error(newswatch("run", "--fixtures", str(seeds_copy(ORIGINAL)), "--db", str(tmp_path / "no" / "x.duckdb")), "does not exist")


def test_database_path_is_a_directory(tmp_path, seeds_copy):
    assert_one_line_error(newswatch("run", "--fixtures", str(seeds_copy(ORIGINAL)), "--db", str(tmp_path)), "directory")


def test_database_that_is_not_duckdb_is_left_alone(tmp_path, seeds_copy):
    db = tmp_path / "notes.duckdb"
    db.write_bytes(b"my precious notes, not a database\n" * 100)
    before = db.read_bytes()
    assert_one_line_error(newswatch("run", "--fixtures", str(seeds_copy(ORIGINAL)), "--db", str(db)), str(db))
    assert db.read_bytes() == before


def test_stories_without_database(tmp_path):
    assert_one_line_error(newswatch("stories", "--db", str(tmp_path / "x.duckdb")), "does not exist")


def test_invalid_setting_from_environment(tmp_path):
    result = newswatch("stories", "--db", str(tmp_path / "x.duckdb"), env={"NEWSWATCH_STORY_THRESHOLD": "high"})
    assert_one_line_error(result, "NEWSWATCH_STORY_THRESHOLD")


@pytest.mark.slow  # runs a flow on a Prefect server
def test_run_skips_bad_files_and_prints_the_story(tmp_path, seeds_copy):
    folder = seeds_copy(ORIGINAL, REWRITE, OTHER)
    (folder / "empty.txt").write_text("")
    (folder / "binary.txt").write_bytes(b"\x00\x01\x02binary\x00")
    (folder / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (folder / "report.pdf").write_bytes(b"%PDF-1.4")
    db = tmp_path / "nw.duckdb"
    result = newswatch("run", "--fixtures", str(folder), "--db", str(db))
    assert result.returncode == 0, result.stderr
    for name in ("empty.txt", "binary.txt", "latin1.txt", "report.pdf"):
        assert f"skipped {folder / name}" in result.stderr.replace("\n", "")
    assert "Traceback" not in result.stderr
    assert "new articles 3 (1 duplicates), new stories 1" in result.stdout
    assert "DUPLICATE" in result.stdout and "rewrite" in result.stdout
    listed = newswatch("stories", "--db", str(db))
    assert listed.returncode == 0
    assert "1 most recent stories" in listed.stdout and listed.stdout.count("DUPLICATE") == 1
    assert newswatch("clusters", "--db", str(db)).stdout == listed.stdout  # the command's earlier name
    assert "clusters" not in newswatch("--help").stdout


def test_default_database_comes_from_the_environment(tmp_path):
    result = newswatch("stories", env={"NEWSWATCH_DB": str(tmp_path / "env.duckdb")})
    assert_one_line_error(result, str(tmp_path / "env.duckdb"))


def test_feed_list_commands(tmp_path):
    db = str(tmp_path / "nw.duckdb")
    assert newswatch("add-feed", "https://news.example.org/rss.xml", "--name", "Example", "--db", db).returncode == 0
    again = newswatch("add-feed", "https://news.example.org/rss.xml", "--db", db)
    assert again.returncode == 0 and "already listed" in again.stdout
    assert_one_line_error(newswatch("add-feed", "ftp://example.org/feed", "--db", db), "not an http(s) feed URL")

    opml = tmp_path / "subs.opml"
    opml.write_text(
        "<?xml version='1.0'?><opml version='2.0'><head><title>x</title></head><body>"
        "<outline text='Group'><outline text='Other' type='rss' xmlUrl='https://other.example.net/feed'/></outline>"
        "<outline text='Example' type='rss' xmlUrl='https://news.example.org/rss.xml'/></body></opml>",
        encoding="utf-8",
    )
    imported = newswatch("import-opml", str(opml), "--db", db)
    assert imported.returncode == 0 and "1 added, 1 already listed" in imported.stdout

    listed = newswatch("feeds", "--db", db)
    assert listed.returncode == 0
    assert "Example" in listed.stdout and "other.example.net" in listed.stdout

    exported = newswatch("export-opml", "--db", db)
    assert exported.returncode == 0
    assert exported.stdout.count("xmlUrl=") == 2
    to_file = tmp_path / "[bold]feeds.opml"  # a file name is shown as text, not as console markup
    written = newswatch("export-opml", "-o", str(to_file), "--db", db)
    assert written.returncode == 0 and f"wrote 2 feeds to {to_file}" in written.stdout.replace("\n", "")
    assert to_file.read_text(encoding="utf-8").strip() == exported.stdout.strip()

    assert newswatch("remove-feed", "https://other.example.net/feed", "--db", db).returncode == 0
    assert_one_line_error(newswatch("remove-feed", "https://other.example.net/feed", "--db", db), "no feed")
    broken = tmp_path / "broken.opml"
    broken.write_text("<opml><body><outline", encoding="utf-8")
    assert_one_line_error(newswatch("import-opml", str(broken), "--db", db), "broken.opml")
    assert_one_line_error(newswatch("import-opml", str(tmp_path / "none.opml"), "--db", db), "cannot read")


def test_run_without_feeds_or_fixtures(tmp_path):
    assert_one_line_error(newswatch("run", "--db", str(tmp_path / "nw.duckdb")), "no feeds to poll")


def test_feed_list_file_that_cannot_be_read(tmp_path):
    result = newswatch("run", "--db", str(tmp_path / "nw.duckdb"), env={"NEWSWATCH_FEEDS_FILE": str(tmp_path / "no.opml")})
    assert_one_line_error(result, "cannot read", "no.opml")


def test_reextract_without_a_database_and_on_one_without_pages(tmp_path):
    assert_one_line_error(newswatch("reextract", "--db", str(tmp_path / "nw.duckdb")), "does not exist yet")
    assert not (tmp_path / "nw.duckdb").exists()
    db = str(tmp_path / "feeds.duckdb")
    assert newswatch("add-feed", "http://127.0.0.1:9/feed.xml", "--db", db).returncode == 0
    result = newswatch("reextract", "--db", db)
    assert result.returncode == 0, result.stderr
    assert "re-extracted 0 pages" in result.stdout


def test_service_commands_reject_bad_input(tmp_path):
    db = str(tmp_path / "nw.duckdb")
    assert_one_line_error(newswatch("serve", "--db", db, "--interval", "5", "--cron", "* * * * *"), "not both")
    assert_one_line_error(newswatch("serve", "--db", db, "--cron", "every now and then"), "invalid cron")
    assert_one_line_error(newswatch("serve", "--db", str(tmp_path / "missing" / "nw.duckdb")), "does not exist")
    assert_one_line_error(newswatch("deploy", "--pool", "p", "--db", db, env={"PREFECT_API_URL": ""}), "PREFECT_API_URL")
    assert_one_line_error(
        newswatch("deploy", "--pool", "p", "--db", db, env={"PREFECT_API_URL": "http://127.0.0.1:9/api"}), "does not answer"
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert_one_line_error(newswatch("serve", "--db", db, env={"NEWSWATCH_PREFECT_PORT": port, "PREFECT_API_URL": ""}), "in use")
    down = newswatch("status", "--db", db, "--check", env={"PREFECT_API_URL": ""})
    assert down.returncode == 1 and "not running" in down.stderr
    report = newswatch("status", "--db", db, env={"PREFECT_API_URL": ""})
    assert report.returncode == 0, report.stderr
    assert "not running" in report.stdout and "No runs yet" in report.stdout


def test_a_missing_gpu_is_one_line(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible to torch")
    result = newswatch(
        "run", "--fixtures", str(Path(__file__).parent / "fixtures" / "seeds"), "--db", str(tmp_path / "x.duckdb"),
        env={"NEWSWATCH_EMBED_DEVICE": "cuda"},
    )
    assert_one_line_error(result, "embedding device cuda asked for, but torch sees no CUDA GPU", "NEWSWATCH_EMBED_DEVICE")
    assert not (tmp_path / "x.duckdb").exists()
    assert_one_line_error(
        newswatch("reextract", "--db", str(tmp_path / "x.duckdb"), env={"NEWSWATCH_EMBED_DEVICE": "cuda:0"}),
        "embedding device cuda:0 asked for",
    )
    assert_one_line_error(
        newswatch("run", "--db", str(tmp_path / "x.duckdb"), env={"NEWSWATCH_EMBED_DEVICE": "cuda", "NEWSWATCH_EMBED_BACKEND": "openvino"}),
        "invalid settings: NEWSWATCH_EMBED_BACKEND=openvino runs on the CPU",
    )


SEEDS = Path(__file__).parent / "fixtures" / "seeds"


@pytest.mark.slow  # runs a flow on a Prefect server
def test_a_truncated_database_is_one_line_and_left_as_it_is(tmp_path):
    db = tmp_path / "nw.duckdb"
    made = newswatch("run", "--fixtures", str(SEEDS), "--db", str(db))
    assert made.returncode == 0, made.stderr
    os.truncate(db, db.stat().st_size // 2)
    before = db.read_bytes()
    result = newswatch("run", "--fixtures", str(SEEDS), "--db", str(db))
    assert_one_line_error(result, str(db), "damaged", "truncated")
    assert db.read_bytes() == before
    assert not (tmp_path / "nw.duckdb.wal").exists()
    assert_one_line_error(newswatch("reextract", "--db", str(db)), "damaged")
    assert db.read_bytes() == before


def test_a_model_that_is_not_a_model_is_one_line(tmp_path):
    db = tmp_path / "x.duckdb"
    result = newswatch("run", "--fixtures", str(SEEDS), "--db", str(db), env={"NEWSWATCH_MODEL": "/etc/passwd"})
    assert_one_line_error(result, "embedding model /etc/passwd is a file", "NEWSWATCH_MODEL")
    assert not db.exists()
    (tmp_path / "empty").mkdir()
    result = newswatch("reextract", "--db", str(db), env={"NEWSWATCH_MODEL": str(tmp_path / "empty")})
    assert_one_line_error(result, "holds no model", "NEWSWATCH_MODEL")
    result = newswatch("run", "--fixtures", str(SEEDS), "--db", str(db), env={"NEWSWATCH_MODEL": "no-such-model"})
    assert_one_line_error(result, "neither a local folder nor in the Hugging Face cache")


@pytest.mark.slow  # runs a flow on a Prefect server
def test_a_model_that_fails_to_load_in_the_flow_gives_no_traceback(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{broken", encoding="utf-8")  # passes the file check, fails the load
    result = newswatch("run", "--fixtures", str(SEEDS), "--db", str(tmp_path / "x.duckdb"), env={"NEWSWATCH_MODEL": str(model)})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "Exception in thread" not in result.stderr  # the model loading beside Prefect's start stays quiet
    errors = [line for line in result.stderr.splitlines() if line.startswith("newswatch: error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"newswatch: error: cannot load embedding model {model}: ")
    assert "not a valid JSON file" in errors[0]


def test_a_second_run_on_the_same_database_is_one_line(tmp_path):
    from warehouse.connection import run_lock

    db = tmp_path / "x.duckdb"
    with run_lock(db):  # as a run that is writing holds it
        result = newswatch("run", "--fixtures", str(SEEDS), "--db", str(db))
    assert_one_line_error(result, f"another run is writing to {db}")
    assert not db.exists()


def test_an_infinite_poll_interval_is_one_line(tmp_path):
    result = newswatch(
        "run", "--fixtures", str(SEEDS), "--db", str(tmp_path / "x.duckdb"), env={"NEWSWATCH_POLL_INTERVAL_MINUTES": "inf"}
    )
    assert_one_line_error(result, "NEWSWATCH_POLL_INTERVAL_MINUTES")
    assert not (tmp_path / "x.duckdb").exists()


def test_special_files_are_refused_in_one_line(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert_one_line_error(newswatch("run", "--fixtures", str(SEEDS), "--db", str(fifo)), "not a regular file")
    assert_one_line_error(newswatch("stories", "--db", "/dev/null"), "not a regular file")
    assert_one_line_error(newswatch("import-opml", str(fifo), "--db", str(tmp_path / "x.duckdb")), "not a regular file")
    assert_one_line_error(newswatch("add-feed", "https://example.org/feed", "--db", "/etc/passwd/x.duckdb"), "Not a directory")


def test_a_feed_list_file_that_is_a_fifo_is_one_line(tmp_path):
    fifo = tmp_path / "feeds.opml"
    os.mkfifo(fifo)
    result = newswatch("run", "--db", str(tmp_path / "nw.duckdb"), env={"NEWSWATCH_FEEDS_FILE": str(fifo)})
    assert_one_line_error(result, "cannot read", "not a regular file")


def _listening_addresses(pid: int, port: int) -> set[str]:
    import psutil

    processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return {
        connection.laddr.ip
        for process in processes
        for connection in process.net_connections(kind="tcp")
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port
    }


@pytest.mark.slow  # starts the dashboard's server
@pytest.mark.parametrize(("args", "env", "address"), [
    ((), {}, "127.0.0.1"),  # this machine only, unless asked
    (("--host", "0.0.0.0"), {}, "0.0.0.0"),
    ((), {"NEWSWATCH_DASHBOARD_HOST": "0.0.0.0"}, "0.0.0.0"),  # as the container image sets it
])
def test_dashboard_listens_where_asked(tmp_path, args, env, address):
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {key: value for key, value in os.environ.items() if key != "NEWSWATCH_DASHBOARD_HOST"}
    environment.update(NEWSWATCH_DB=str(tmp_path / "nw.duckdb"), **env)
    dashboard = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "dashboard", "--port", str(port), *args],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and dashboard.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        assert _listening_addresses(dashboard.pid, port) == {address}
    finally:
        os.killpg(dashboard.pid, 15)
        output = dashboard.communicate(timeout=30)[0].decode(errors="replace")
    assert f":{port}" in output
    if address == "0.0.0.0":
        assert "every interface" in output and "no login" in output


def test_dashboard_refuses_a_bad_host(tmp_path):
    assert_one_line_error(newswatch("dashboard", "--host", "a b; c", "--db", str(tmp_path / "nw.duckdb")), "DASHBOARD_HOST")
