"""Reading fixture directories with extract.fixtures."""

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from extract.fixtures import read_fixture_dir

SEEDS = Path(__file__).parent / "fixtures" / "seeds"

PAGE = """<html><head><title>Bridge reopens after repairs</title>
<meta property="article:published_time" content="2024-02-10"></head>
<body><article><h1>Bridge reopens after repairs</h1>
<p>The old river bridge reopened to traffic on Saturday after two years of repairs that cost the city
more than it had planned.</p>
<p>Drivers queued from early morning to be among the first to cross, and the mayor cut a ribbon at
nine o'clock.</p></article></body></html>"""


def test_reads_the_seed_directory():
    articles, skipped = read_fixture_dir(SEEDS)

    assert skipped == []
    assert len(articles) == 3
    assert [a.url.rsplit("/", 1)[-1][:3] for a in articles] == ["000", "001", "002"]
    assert all(a.url.startswith("file:///") for a in articles)
    assert all(a.published_at == datetime(2023, 11, 29, tzinfo=UTC) for a in articles)
    assert all(a.title for a in articles)


def test_good_and_bad_files_are_sorted_out(tmp_path, caplog):
    (tmp_path / "b_story.txt").write_text("date 2024-01-05 The council met on Monday.\n", encoding="utf-8")
    (tmp_path / "a_page.html").write_text(PAGE, encoding="utf-8")
    (tmp_path / "c_empty.txt").write_text("  \n\t\n", encoding="utf-8")
    (tmp_path / "d_binary.txt").write_bytes(b"PK\x03\x04\x00\x00binary")
    (tmp_path / "e_latin1.txt").write_bytes(b"caf\xe9 au lait is served daily")
    (tmp_path / "f_report.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / "g_blank.html").write_text("<html><body><script>var x;</script></body></html>", encoding="utf-8")
    (tmp_path / "h_broken.txt").symlink_to(tmp_path / "missing.txt")
    (tmp_path / ".hidden.txt").write_text("date 2024-01-05 Hidden story.", encoding="utf-8")
    (tmp_path / "subdir").mkdir()

    with caplog.at_level(logging.WARNING, logger="extract.fixtures"):
        articles, skipped = read_fixture_dir(tmp_path)

    assert [a.url for a in articles] == [
        (tmp_path / "a_page.html").resolve().as_uri(),
        (tmp_path / "b_story.txt").resolve().as_uri(),
    ]
    assert articles[0].title == "Bridge reopens after repairs"
    assert articles[0].published_at == datetime(2024, 2, 10, tzinfo=UTC)
    assert articles[1].text == "The council met on Monday."
    reasons = {s.path.name: s.reason for s in skipped}
    assert reasons == {
        "c_empty.txt": "empty file",
        "d_binary.txt": "binary file",
        "e_latin1.txt": "not UTF-8 text",
        "f_report.pdf": "unsupported extension .pdf",
        "g_blank.html": "no extractable text in HTML",
        "h_broken.txt": reasons["h_broken.txt"],
    }
    assert reasons["h_broken.txt"].startswith("cannot be read")
    for name in reasons:
        assert any(name in message for message in caplog.messages)
    assert not any(".hidden" in message for message in caplog.messages)


def test_utf8_bom_is_accepted(tmp_path):
    (tmp_path / "bom.txt").write_bytes("\ufeffdate 2024-01-05 Café opens.".encode())

    articles, skipped = read_fixture_dir(tmp_path)

    assert skipped == []
    assert articles[0].text == "Café opens."
    assert articles[0].published_at == datetime(2024, 1, 5, tzinfo=UTC)


def test_missing_directory_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_fixture_dir(tmp_path / "nope")


def test_file_instead_of_directory_raises(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("x", encoding="utf-8")

    with pytest.raises(NotADirectoryError, match="not a directory"):
        read_fixture_dir(path)


STORY = "date 2024-01-05 The council met on Monday.\n"


def test_a_file_over_the_size_limit_is_skipped_unread(tmp_path):
    import tracemalloc

    with open(tmp_path / "huge.txt", "wb") as file:
        file.truncate(200 * 1024 * 1024)  # sparse: takes no disk
    (tmp_path / "small.txt").write_text(STORY, encoding="utf-8")

    tracemalloc.start()
    try:
        articles, skipped = read_fixture_dir(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert [a.text for a in articles] == ["The council met on Monday."]
    assert [(s.path.name, s.reason) for s in skipped] == [
        ("huge.txt", "too large: 209,715,200 bytes, limit 10,485,760 (NEWSWATCH_FIXTURE_MAX_BYTES)")
    ]
    assert peak < 5 * 1024 * 1024


def test_the_size_limit_is_a_parameter(tmp_path):
    (tmp_path / "story.txt").write_text(STORY, encoding="utf-8")

    assert read_fixture_dir(tmp_path, max_bytes=len(STORY))[1] == []
    skipped = read_fixture_dir(tmp_path, max_bytes=len(STORY) - 1)[1]
    assert skipped[0].reason == f"too large: {len(STORY)} bytes, limit {len(STORY) - 1} (NEWSWATCH_FIXTURE_MAX_BYTES)"


def test_links_out_of_the_folder_are_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("date 2024-01-05 A secret outside the folder.", encoding="utf-8")
    folder = tmp_path / "fixtures"
    folder.mkdir()
    (folder / "a_story.txt").write_text(STORY, encoding="utf-8")
    (folder / "b_link_inside.txt").symlink_to(folder / "a_story.txt")
    (folder / "c_relative_inside.txt").symlink_to("a_story.txt")
    (folder / "d_passwd.txt").symlink_to("/etc/passwd")
    (folder / "e_secret.txt").symlink_to(outside / "secret.txt")
    (folder / "f_dotdot.txt").symlink_to("../outside/secret.txt")

    articles, skipped = read_fixture_dir(folder)

    assert [a.text for a in articles] == ["The council met on Monday."] * 3
    assert {s.path.name: s.reason for s in skipped} == {
        name: "link to outside the folder" for name in ("d_passwd.txt", "e_secret.txt", "f_dotdot.txt")
    }


def test_a_folder_reached_through_a_link_is_read(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "story.txt").write_text(STORY, encoding="utf-8")
    (tmp_path / "alias").symlink_to(real)

    articles, skipped = read_fixture_dir(tmp_path / "alias")

    assert skipped == [] and len(articles) == 1


def test_a_fifo_is_skipped_without_hanging(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.txt")
    (tmp_path / "story.txt").write_text(STORY, encoding="utf-8")

    articles, skipped = read_fixture_dir(tmp_path)

    assert len(articles) == 1
    assert [(s.path.name, s.reason) for s in skipped] == [("pipe.txt", "not a regular file (a FIFO)")]
