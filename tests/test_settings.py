"""Every setting is declared once, documented in docs/settings.md (generated from the declarations), and read from the environment."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from flows.settings import GROUPS, Settings, settings_error_message, settings_markdown

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
