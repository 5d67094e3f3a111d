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
