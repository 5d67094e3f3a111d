"""Every setting is documented in the README with its environment variable."""

from pathlib import Path

from flows.settings import Settings

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented():
    missing = [f"NEWSWATCH_{name.upper()}" for name in Settings.model_fields if f"NEWSWATCH_{name.upper()}" not in README]
    assert not missing, f"undocumented settings: {missing}"


def test_every_setting_has_a_description_and_an_environment_override(monkeypatch):
    for name, field in Settings.model_fields.items():
        assert field.description, name
    monkeypatch.setenv("NEWSWATCH_STORY_THRESHOLD", "0.42")
    monkeypatch.setenv("NEWSWATCH_DB", "/tmp/elsewhere.duckdb")
    settings = Settings()
    assert settings.story_threshold == 0.42 and str(settings.db) == "/tmp/elsewhere.duckdb"


def test_non_finite_numbers_are_refused(monkeypatch):
    import pytest
    from pydantic import ValidationError

    from flows.settings import settings_error_message

    for value in ("inf", "-inf", "nan", "Infinity"):
        monkeypatch.setenv("NEWSWATCH_POLL_INTERVAL_MINUTES", value)
        with pytest.raises(ValidationError) as raised:
            Settings()
        assert "NEWSWATCH_POLL_INTERVAL_MINUTES" in settings_error_message(raised.value)
