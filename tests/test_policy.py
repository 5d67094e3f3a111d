"""monitoring.policy: when a watch alerts, decided from plain values (no warehouse, no Prefect)."""

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from monitoring.policy import AlertCandidate, DecidedAlert, alert_id_for, decide_alerts, meets_thresholds, utc_day

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def candidate(**changes) -> AlertCandidate:
    """A story watch 1 matched, of 3 articles from 2 sources, never alerted on, with thresholds it meets."""
    values = {"watch_id": 1, "story_id": "s1", "min_articles": 1, "min_sources": 1, "article_count": 3, "source_count": 2}
    return AlertCandidate(**{**values, **changes})


def kinds(decided: list[DecidedAlert]) -> list[tuple[int, str, str]]:
    return [(alert.watch_id, alert.story_id, alert.kind) for alert in decided]


@pytest.mark.parametrize(("min_articles", "min_sources", "alerts"), [
    (3, 2, True),  # exactly at both thresholds
    (1, 1, True),
    (4, 1, False),  # one article short
    (1, 3, False),  # one source short
    (4, 3, False),
])
def test_a_first_alert_needs_both_thresholds(min_articles, min_sources, alerts):
    decided = decide_alerts([candidate(min_articles=min_articles, min_sources=min_sources)], NOW, 2.0)

    assert kinds(decided) == ([(1, "s1", "new")] if alerts else [])
    assert meets_thresholds(3, 2, min_articles, min_sources) is alerts
    if alerts:
        assert decided[0].alert_id == alert_id_for(1, "s1", "new")


def test_a_story_alerts_new_once_then_only_as_developing():
    alerted = candidate(last_kind="new", last_article_count=3)
    assert decide_alerts([alerted], NOW, 2.0) == []  # no growth since the alert: nothing
    assert decide_alerts([candidate(article_count=5, last_kind="new", last_article_count=3)], NOW, 2.0) == []  # 5 < 6

    grown = candidate(article_count=6, last_kind="new", last_article_count=3)
    (decided,) = decide_alerts([grown], NOW, 2.0)
    assert (decided.kind, decided.alert_id) == ("developing", alert_id_for(1, "s1", "developing", "2026-03-02"))
    # A smaller factor lets less growth count.
    assert kinds(decide_alerts([candidate(article_count=4, last_kind="new", last_article_count=3)], NOW, 1.3)) == [
        (1, "s1", "developing")]


def test_growth_is_measured_from_the_last_alert_whatever_its_kind():
    after_developing = candidate(article_count=10, last_kind="developing", last_article_count=6)
    assert decide_alerts([after_developing], NOW, 2.0) == []
    assert kinds(decide_alerts([candidate(article_count=12, last_kind="developing", last_article_count=6)], NOW, 2.0)) == [
        (1, "s1", "developing")]


def test_developing_alerts_at_most_once_a_utc_day():
    grown = candidate(article_count=20, last_kind="developing", last_article_count=6,
                      developing_days=frozenset({date(2026, 3, 2)}))
    assert decide_alerts([grown], NOW, 2.0) == []  # one developing alert today already
    (tomorrow,) = decide_alerts([grown], NOW + timedelta(days=1), 2.0)
    assert tomorrow.alert_id == alert_id_for(1, "s1", "developing", "2026-03-03")
    # Earlier days do not hold it back.
    older = candidate(article_count=20, last_kind="developing", last_article_count=6,
                      developing_days=frozenset({date(2026, 2, 28), date(2026, 3, 1)}))
    assert kinds(decide_alerts([older], NOW, 2.0)) == [(1, "s1", "developing")]


def test_the_day_is_the_utc_day():
    late_evening = datetime(2026, 3, 2, 23, 30, tzinfo=timezone(timedelta(hours=-5)))  # 04:30 UTC on March 3
    assert utc_day(late_evening) == date(2026, 3, 3)
    assert utc_day(datetime(2026, 3, 2, 23, 30)) == date(2026, 3, 2)  # naive: UTC
    grown = candidate(article_count=20, last_kind="new", last_article_count=3, developing_days=frozenset({date(2026, 3, 3)}))
    assert decide_alerts([grown], late_evening, 2.0) == []
    assert kinds(decide_alerts([grown], late_evening - timedelta(hours=5), 2.0)) == [(1, "s1", "developing")]


def test_each_watch_and_story_is_decided_alone_in_the_order_given():
    candidates = [
        candidate(watch_id=2, story_id="s1", min_articles=5),  # too small for watch 2
        candidate(watch_id=1, story_id="s2"),
        candidate(watch_id=1, story_id="s1", article_count=8, last_kind="new", last_article_count=4),
        candidate(watch_id=3, story_id="s1"),
    ]
    decided = decide_alerts(candidates, NOW, 2.0)

    assert kinds(decided) == [(1, "s2", "new"), (1, "s1", "developing"), (3, "s1", "new")]
    assert len({alert.alert_id for alert in decided}) == 3
    assert decide_alerts([], NOW, 2.0) == []


def test_alert_ids_are_stable_keys_of_watch_story_kind_and_day():
    key = alert_id_for(1, "s1", "new")
    assert key == alert_id_for(1, "s1", "new") and len(key) == 16
    others = {alert_id_for(2, "s1", "new"), alert_id_for(1, "s2", "new"), alert_id_for(1, "s1", "developing", "2026-03-02"),
              alert_id_for(1, "s1", "developing", "2026-03-03")}
    assert key not in others and len(others) == 4
