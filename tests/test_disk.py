"""A full disk and a read-only one: the run stops in one line, keeps what it stored, and the next run completes.

The database, its search and vector indexes and the export folder live on a small tmpfs that
the test mounts (root only: skipped elsewhere); the run is given more articles than fit.
"""

import os
import random
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from warehouse.integrity import check_database

ROOT = Path(__file__).parent.parent
PLACES = ["Lisbon", "Oslo", "Quito", "Hanoi", "Accra", "Lima", "Perth", "Riga", "Doha", "Porto"]
WORDS = ("council vote budget harbour strike court minister flood storm bridge river school hospital "
         "election protest police fire train airport museum festival market").split()
ARTICLES = 240
BATCH = 40


def _mount(folder: Path, *options: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(folder)], check=True, capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MiB tmpfs at tmp_path/disk, unmounted afterwards."""
    folder = tmp_path / "disk"
    folder.mkdir()
    try:
        _mount(folder, "size=6m")
    except (subprocess.CalledProcessError, FileNotFoundError, PermissionError) as error:
        pytest.skip(f"cannot mount a tmpfs here: {error}")
    yield folder
    for _ in range(3):  # bind mounts on top first
        if subprocess.run(["umount", str(folder / "nw.duckdb")], capture_output=True).returncode != 0:
            break
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _articles(folder: Path) -> None:
    rng = random.Random(11)
    folder.mkdir()
    for index in range(ARTICLES):
        place = rng.choice(PLACES)
        body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(200, 600)))
        (folder / f"article{index:03d}.txt").write_text(f"{place} report {index}\n\n{place} item {index}: {body}\n", encoding="utf-8")


def newswatch(*args: str, db: Path, disk: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "NEWSWATCH_DB": str(db), "NEWSWATCH_BATCH_SIZE": str(BATCH),
                   "NEWSWATCH_EXPORT_DIR": str(disk / "exports")}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=600,
                          env=environment, cwd=ROOT)


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-5000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("newswatch: error: ")]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


def _stored(db: Path) -> tuple[int, int]:
    with duckdb.connect(str(db), read_only=True) as connection:
        return connection.execute("SELECT count(*), count(DISTINCT url) FROM articles").fetchone()


@pytest.mark.slow  # two runs of 240 articles on a Prefect server
def test_a_full_disk_stops_the_run_in_one_line_and_the_next_run_completes(tmp_path, small_disk):
    articles = tmp_path / "articles"
    _articles(articles)
    db = small_disk / "nw.duckdb"

    full = newswatch("run", "--fixtures", str(articles), db=db, disk=small_disk)
    line = _one_error_line(full)
    assert "no space left on the device" in line and "batches stored before were kept" in line, line
    check_database(db)  # whole after the failed write
    stored, distinct = _stored(db)
    assert stored == distinct and stored % BATCH == 0 and stored < ARTICLES, stored  # whole batches only
    assert not list(small_disk.rglob("*.tmp")), list(small_disk.rglob("*"))  # no half-written index copies left

    _mount_again = subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], capture_output=True)
    assert _mount_again.returncode == 0, _mount_again.stderr
    again = newswatch("run", "--fixtures", str(articles), db=db, disk=small_disk)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"already stored {stored}, new articles {ARTICLES - stored} " in again.stdout, again.stdout[:500]
    assert _stored(db) == (ARTICLES, ARTICLES)  # nothing lost, nothing doubled
    check_database(db)
    found = newswatch("search", '"report 7"', "--limit", "3", db=db, disk=small_disk)
    assert found.returncode == 0 and "report 7" in found.stdout, found.stdout + found.stderr

    # A read-only database file, then a read-only folder: one line, exit 2, nothing changed.
    before = db.read_bytes()
    subprocess.run(["mount", "--bind", str(db), str(db)], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(db)], check=True)
    for command in (["run", "--fixtures", str(articles)], ["add-feed", "https://news.example/feed.xml"]):
        line = _one_error_line(newswatch(*command, db=db, disk=small_disk))
        assert "read-only" in line.lower(), line
    subprocess.run(["umount", str(db)], check=True)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    for command in (["run", "--fixtures", str(articles)], ["add-feed", "https://news.example/feed.xml"], ["reextract"]):
        line = _one_error_line(newswatch(*command, db=db, disk=small_disk))
        assert "read-only" in line.lower(), line
    assert db.read_bytes() == before
