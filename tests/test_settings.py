"""Every setting is declared once, documented in docs/settings.md (generated from the declarations), and read from the environment."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from flows.settings import GROUPS, Settings, check_cron_expressions, settings_error_message, settings_markdown

SETTINGS_PAGE = (Path(__file__).parent.parent / "docs" / "settings.md").read_text(encoding="utf-8")


def test_the_settings_page_holds_the_generated_tables():
    assert settings_markdown() in SETTINGS_PAGE, "docs/settings.md is behind: regenerate it with `python -m flows.settings`"
    for name in Settings.model_fields:
        assert f"| `NEWSWATCH_{name.upper()}` |" in SETTINGS_PAGE, name


def test_settings_are_grouped_in_class_order():
    names = list(Settings.model_fields)
    assert names[0] in GROUPS and set(GROUPS) <= set(names)
    assert len(set(GROUPS.values())) == len(GROUPS)


def test_every_setting_has_a_description_and_an_environment_override(monkeypatch):
    for name, field in Settings.model_fields.items():
        assert field.description, name
    monkeypatch.setenv("NEWSWATCH_STORY_THRESHOLD", "0.42")
    monkeypatch.setenv("NEWSWATCH_DB", "/tmp/elsewhere.duckdb")
    settings = Settings()
    assert settings.story_threshold == 0.42 and str(settings.db) == "/tmp/elsewhere.duckdb"


def test_rules_come_from_the_settings():
    settings = Settings(copy_jaccard=0.6, story_threshold=0.35, story_window_days=2)
    assert settings.dedupe_rules().copy_jaccard == 0.6
    rules = settings.cluster_rules()
    assert rules.threshold == 0.35 and rules.window.total_seconds() == 2 * 86400


def test_non_finite_numbers_are_refused(monkeypatch):
    for value in ("inf", "-inf", "nan", "Infinity"):
        monkeypatch.setenv("NEWSWATCH_POLL_INTERVAL_MINUTES", value)
        with pytest.raises(ValidationError) as raised:
            Settings()
        assert "NEWSWATCH_POLL_INTERVAL_MINUTES" in settings_error_message(raised.value)


def test_an_unknown_backend_or_device_is_one_sentence():
    with pytest.raises(ValidationError) as raised:
        Settings(embed_backend="onnx")
    assert settings_error_message(raised.value) == (
        "invalid settings: NEWSWATCH_EMBED_BACKEND='onnx' is unknown; expected one of auto, torch, openvino, openvino-int8"
    )
    with pytest.raises(ValidationError) as raised:
        Settings(embed_device="tpu")
    assert "NEWSWATCH_EMBED_DEVICE='tpu' is unknown" in settings_error_message(raised.value)


# --- Every setting bounded and checked in one place ---------------------------------------------

import math  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402

from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st  # noqa: E402

from extract.terms import TermWeights  # noqa: E402

VARIABLES = [f"NEWSWATCH_{name.upper()}" for name in Settings.model_fields]
# Settings counted in time: each must fit datetime arithmetic at its upper bound.
DURATIONS = {
    "poll_interval_minutes": "minutes", "story_window_days": "days", "silent_feed_days": "days", "digest_hours": "hours",
    "serve_interval_seconds": "seconds", "fetch_connect_timeout": "seconds", "fetch_read_timeout": "seconds",
    "fetch_total_timeout": "seconds", "fetch_host_delay": "seconds", "notify_timeout": "seconds",
    "alert_retry_seconds": "seconds", "alert_retry_max_seconds": "seconds",
}

VALUES = st.one_of(
    st.text(max_size=40),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["0", "-1", "1e300", "1e-300", "9" * 400, "", " ", "true", "[1, 2]", "[", "zz", "1KB", "0MB", "nan"]),
)


def _use(settings: Settings) -> None:
    """What runs do with the values: rules, term weights, and deadlines in datetime arithmetic."""
    settings.dedupe_rules(), settings.cluster_rules()
    TermWeights(language=settings.term_language).idf("minister")
    now = datetime.now(UTC)
    for name, unit in DURATIONS.items():
        value = getattr(settings, name)
        assert math.isfinite(value) and value >= 0, name
        now + timedelta(**{unit: value}), now - timedelta(**{unit: value})


def test_every_number_has_an_upper_bound():
    for name, field in Settings.model_fields.items():
        if field.annotation in (int, float):
            bounds = [item for item in field.metadata if hasattr(item, "le") or hasattr(item, "lt")]
            assert bounds, f"NEWSWATCH_{name.upper()} has no upper bound"


def test_the_upper_bounds_hold_in_datetime_arithmetic():
    highest = {}
    for name in DURATIONS:
        (bound,) = [item.le for item in Settings.model_fields[name].metadata if hasattr(item, "le")]
        highest[name] = bound
    _use(Settings(**highest))
    assert Settings(poll_interval_minutes=366 * 24 * 60).poll_interval_minutes == 366 * 24 * 60
    with pytest.raises(ValidationError) as raised:
        Settings(poll_interval_minutes=1e300)
    assert "NEWSWATCH_POLL_INTERVAL_MINUTES" in settings_error_message(raised.value)


def test_languages_time_zones_and_crons_are_checked():
    for overrides, variable in (
        ({"term_language": "zz"}, "NEWSWATCH_TERM_LANGUAGE"),
        ({"serve_timezone": "Mars/Olympus"}, "NEWSWATCH_SERVE_TIMEZONE"),
        ({"duckdb_memory_limit": "0MB"}, "NEWSWATCH_DUCKDB_MEMORY_LIMIT"),
        ({"user_agent": "a\r\nX-Injected: 1"}, "NEWSWATCH_USER_AGENT"),
    ):
        with pytest.raises(ValidationError) as raised:
            Settings(**overrides)
        message = settings_error_message(raised.value)
        assert variable in message and "\n" not in message, message
    assert Settings(term_language="de", serve_timezone="Europe/Berlin", digest_cron="0 6 * * 1-5").term_language == "de"


def test_cron_expressions_are_checked_apart_without_importing_prefect_first():
    # `serve` sets PREFECT_API_URL after reading the settings, and Prefect reads it when first imported.
    probe = "import sys; from flows.settings import Settings; Settings(maintenance_cron='*/10 * * * *'); print('prefect' in sys.modules)"
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert imported.stdout.strip() == "False", imported.stdout + imported.stderr
    check_cron_expressions(Settings(digest_cron="0 6 * * 1-5", serve_timezone="Europe/Berlin"))
    with pytest.raises(ValueError) as raised:
        check_cron_expressions(Settings(digest_cron="every morning"))
    assert "NEWSWATCH_DIGEST_CRON" in str(raised.value) and "\n" not in str(raised.value)


@hypothesis_settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(variable=st.sampled_from(VARIABLES), value=VALUES)
def test_any_value_of_any_variable_is_accepted_and_usable_or_refused_in_one_sentence(monkeypatch, variable, value):
    if "\x00" in value:
        return  # no environment variable can hold a NUL byte
    monkeypatch.setenv(variable, value)
    try:
        settings = Settings()
    except ValidationError as error:
        message = settings_error_message(error)
        assert message.startswith("invalid setting") and "\n" not in message and len(message) < 1000, message
        return
    _use(settings)


ROOT = Path(__file__).parent.parent


_ONE_FEED: list[bytes] = []


def _database_with_one_feed(tmp_path_factory) -> bytes:
    """The bytes of a database holding one feed, made by `newswatch add-feed` once per test process."""
    if not _ONE_FEED:
        db = tmp_path_factory.mktemp("one-feed") / "nw.duckdb"
        made = subprocess.run([sys.executable, "-m", "flows.cli", "add-feed", "https://news.example/feed.xml", "--db", str(db)],
                              capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert made.returncode == 0, made.stderr
        _ONE_FEED.append(db.read_bytes())
    return _ONE_FEED[0]


@pytest.mark.slow  # newswatch processes per example
@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(variable=st.sampled_from(VARIABLES), value=VALUES)
def test_the_command_line_exits_0_or_says_one_line_whatever_the_environment(tmp_path_factory, variable, value):
    if "\x00" in value:
        return
    folder = tmp_path_factory.mktemp("env")
    db = folder / "nw.duckdb"
    db.write_bytes(_database_with_one_feed(tmp_path_factory))
    before = db.read_bytes()
    environment = {**os.environ, "NEWSWATCH_DB": str(db), variable: value}
    # Commands that read, then one that writes: a refusal leaves the database as it was.
    for command in (["feeds"], ["stories"], ["watches"], ["add-feed", "https://news.example/other.xml"]):
        # In the example's folder: a relative NEWSWATCH_DB or other path lands there.
        result = subprocess.run([sys.executable, "-m", "flows.cli", *command], capture_output=True, text=True, cwd=folder,
                                env=environment, timeout=300)
        assert "Traceback" not in result.stdout + result.stderr, (variable, value, result.stderr)
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("newswatch: error: "), (variable, value, result.stderr)
        if result.returncode != 0 or command[0] != "add-feed":
            assert db.read_bytes() == before, (variable, value, command)


def _upper_bound(name: str):
    (bound,) = [getattr(item, "le", None) or getattr(item, "lt", None) for item in Settings.model_fields[name].metadata
                if hasattr(item, "le") or hasattr(item, "lt")]
    return bound


@pytest.mark.slow  # a feed run on a Prefect server
def test_a_feed_run_with_every_number_at_its_upper_bound(tmp_path, seed_site):
    # Waits a user asks for are left out: a minimum of an hour between requests to one host.
    waits = {"fetch_host_delay"}
    environment = {
        f"NEWSWATCH_{name.upper()}": str(_upper_bound(name))
        for name, field in Settings.model_fields.items() if field.annotation in (int, float) and name not in waits
    }
    environment |= {"NEWSWATCH_FETCH_HOST_DELAY": "0", "NEWSWATCH_ALLOW_PRIVATE_NETWORKS": "1", "NEWSWATCH_TERM_LANGUAGE": "tr"}
    db = tmp_path / "nw.duckdb"
    added = subprocess.run([sys.executable, "-m", "flows.cli", "add-feed", seed_site.url("/feed.xml"), "--db", str(db)],
                           capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert added.returncode == 0, added.stderr
    result = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--db", str(db)], capture_output=True, text=True,
                            cwd=ROOT, env={**os.environ, **environment}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[result.stderr.find("Traceback") - 2000:][:5000]
    # The seeds and the page that is gone; with every threshold at 1, nothing is a duplicate.
    assert "new articles 4 (0 duplicates)" in result.stdout, result.stdout


def test_the_values_that_once_broke_a_run_are_one_line(tmp_path):
    for variable, value in (("NEWSWATCH_POLL_INTERVAL_MINUTES", "1e300"), ("NEWSWATCH_TERM_LANGUAGE", "zz")):
        result = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--fixtures", str(ROOT / "tests" / "fixtures" / "seeds"),
                                 "--db", str(tmp_path / "nw.duckdb")], capture_output=True, text=True, cwd=ROOT,
                                env={**os.environ, variable: value}, timeout=300)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and variable in lines[0], result.stderr
        assert not (tmp_path / "nw.duckdb").exists()
