"""monitoring.delivery against real receivers on 127.0.0.1: a JSON webhook and an aiosmtpd SMTP server.

No test sends traffic beyond loopback: services with fixed public hosts (Slack, Discord, ...) are
only composed for, never sent to (tests/test_guard.py and tests/test_notification_urls.py check,
mask and guard them).
"""

import logging
import socket
import time

import apprise
import pytest

from monitoring import delivery
from monitoring.alerts import render_alert
from monitoring.delivery import DeliveryOutcome, deliver, deliver_all
from monitoring.markup import WORD_JOINER
from tests.http_server import closed_port, respond, serve
from tests.receivers import make_smtp_fixture, make_webhook_fixture
from tests.sample_messages import make_payload

webhook = make_webhook_fixture()
other_webhook = make_webhook_fixture(name="other_webhook")
smtp = make_smtp_fixture()


@pytest.fixture(autouse=True)
def no_fqdn_lookup(monkeypatch):
    """smtplib names itself with socket.getfqdn(), which may ask DNS; tests stay on loopback."""
    monkeypatch.setattr(socket, "getfqdn", lambda name="": "client.localhost")


MESSAGE = render_alert(make_payload())


# --- JSON webhooks --------------------------------------------------------------------------


def test_json_webhook_receives_the_payload_in_the_envelope(webhook):
    outcome = deliver(webhook.json_url("/hook"), MESSAGE, allow_private_networks=True)

    assert outcome == DeliveryOutcome(True, None)
    [request] = webhook.wait_for(1)
    assert (request.method, request.path) == ("POST", "/hook")
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert body["newswatch"]["alert_id"] == "al-1"
    assert body["newswatch"] == MESSAGE.payload
    assert body["title"] == "newswatch · Storms: Storm hits the coast (5 articles, 3 sources)"
    assert body["message"] == MESSAGE.text.rstrip()  # Apprise trims trailing whitespace
    assert {"version", "type"} <= body.keys()


def test_failure_is_one_line_without_secrets_and_the_next_attempt_succeeds(webhook):
    url = webhook.json_url("/hook/Tok3nInPath123", "+X-Api-Key=hdr-s3cret-value&-apikey=qry-s3cret-value")
    url = url.replace("json://", "json://alice:pw-s3cret-value@")
    webhook.fail_next(1, status=500)

    failed = deliver(url, MESSAGE, allow_private_networks=True)
    succeeded = deliver(url, MESSAGE, allow_private_networks=True)

    assert not failed.ok
    assert "500" in failed.error and "\n" not in failed.error
    for secret in ("pw-s3cret-value", "hdr-s3cret-value", "qry-s3cret-value", "Tok3nInPath123"):
        assert secret not in failed.error
    assert succeeded == DeliveryOutcome(True, None)
    first, second = webhook.wait_for(2)
    assert first.headers["x-api-key"] == "hdr-s3cret-value"  # the secrets themselves still work
    assert second.json()["newswatch"]["alert_id"] == "al-1"


def test_apprise_retries_and_optional_are_overridden(webhook):
    webhook.fail_next(5, status=503)

    outcome = deliver(webhook.json_url("/hook", "retry=3&wait=0&optional=yes"), MESSAGE,
                      allow_private_networks=True)

    assert not outcome.ok  # optional=yes would have reported the failure as a success
    time.sleep(0.2)
    assert len(webhook.received) == 1  # one attempt; retries are the caller's


def test_redirects_are_not_followed(webhook):
    def redirect(request):
        respond(request, 307, b"", headers={"Location": webhook.url + "/elsewhere"})

    with serve({"/hook": redirect}) as server:
        # redirect=yes in the URL must not turn following back on.
        outcome = deliver(f"json://127.0.0.1:{server.port}/hook?redirect=yes", MESSAGE,
                          allow_private_networks=True)

    assert not outcome.ok
    assert "307" in outcome.error
    assert webhook.wait_for(1, timeout=0.3) == []


def test_stalled_receiver_costs_about_the_timeout(webhook):
    webhook.stall_next(10)

    started = time.monotonic()
    outcome = deliver(webhook.json_url(), MESSAGE, allow_private_networks=True, timeout=1.0)
    elapsed = time.monotonic() - started

    assert not outcome.ok
    assert 0.8 <= elapsed < 4, elapsed
    assert "timeout 1 s" in outcome.error


def test_deliver_all_is_not_held_up_by_a_stalled_endpoint(webhook, other_webhook):
    webhook.stall_next(10)
    started = time.monotonic()

    outcomes = deliver_all([(webhook.json_url("/slow"), MESSAGE), (other_webhook.json_url("/fast"), MESSAGE)],
                           allow_private_networks=True, timeout=2.0)
    elapsed = time.monotonic() - started

    assert [outcome.ok for outcome in outcomes] == [False, True]  # input order
    [fast] = other_webhook.received
    # The healthy endpoint got its message well before the stalled attempt gave up.
    assert fast.received_at - started < 1.5
    assert elapsed < 6, elapsed


def test_deliver_all_keeps_input_order_with_limited_concurrency(webhook):
    messages = [render_alert(make_payload(alert_id=f"al-{number}")) for number in range(5)]
    webhook.fail_next(1, status=500)  # whichever arrives first fails

    deliveries = [(webhook.json_url(f"/hook/{number}"), message) for number, message in enumerate(messages)]
    outcomes = deliver_all(deliveries, allow_private_networks=True, timeout=5, concurrency=2)

    assert len(outcomes) == 5 and sum(not outcome.ok for outcome in outcomes) == 1
    received = {request.path: request for request in webhook.wait_for(5)}
    for number, outcome in enumerate(outcomes):
        request = received[f"/hook/{number}"]
        assert request.json()["newswatch"]["alert_id"] == f"al-{number}"
    assert deliver_all([], allow_private_networks=True, timeout=1) == []


# --- e-mail ---------------------------------------------------------------------------------


def test_email_arrives_with_the_html_body_and_the_headline_in_the_subject(smtp):
    outcome = deliver(smtp.mailto_url(), MESSAGE, allow_private_networks=True)

    assert outcome == DeliveryOutcome(True, None)
    [mail] = smtp.wait_for(1)
    assert "Storm hits the coast" in mail["Subject"]
    assert mail["Subject"] == MESSAGE.title
    assert smtp.envelopes == [("newswatch@example.com", ["reader@example.com"])]
    assert mail.get_content_type() == "multipart/alternative"
    html_part = mail.get_body(("html",)).get_content()
    assert html_part.replace("\r\n", "\n").strip() == MESSAGE.html.strip()
    assert '<a href="https://example.com/a7"' in html_part
    plain_part = mail.get_body(("plain",)).get_content()
    assert "Storm hits the coast" in plain_part and "<" not in plain_part


def test_email_to_a_missing_server_fails_in_one_line():
    port = closed_port()
    outcome = deliver(f"mailto://user:mail-s3cret@127.0.0.1:{port}?from=a@example.com&to=b@example.com",
                      MESSAGE, allow_private_networks=True, timeout=2)

    assert not outcome.ok
    assert "mail-s3cret" not in outcome.error and "\n" not in outcome.error

# --- logging --------------------------------------------------------------------------------


def test_apprise_log_records_never_show_secrets(webhook, caplog):
    url = webhook.json_url("/hooks/Pq7Zr2Lm9Xv4Kt1B", "+Authorization=Bearer-hdr0s3cret")
    url = url.replace("json://", "json://bob:log-pw0s3cret@")
    webhook.fail_next(1, status=500)
    # DEBUG is where Apprise and urllib3 print request URLs and paths.
    caplog.set_level(logging.DEBUG)

    outcome = deliver(url, MESSAGE, allow_private_networks=True)

    assert not outcome.ok
    apprise_records = [record for record in caplog.records if record.name.startswith(("apprise", "urllib3"))]
    assert any("/hooks/****" in record.getMessage() for record in apprise_records)  # the path is logged
    for record in caplog.records:
        for secret in ("Pq7Zr2Lm9Xv4Kt1B", "Bearer-hdr0s3cret", "log-pw0s3cret"):
            assert secret not in record.getMessage(), record.getMessage()
    assert "error=500" in outcome.error

def test_each_service_gets_the_form_it_renders():
    def compose(url):
        return delivery._compose(apprise.Apprise.instantiate(url), MESSAGE)

    assert compose("mailto://user:pw@example.com") == (MESSAGE.title, MESSAGE.html, apprise.NotifyFormat.HTML)
    slack = compose("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ")
    assert slack[1:] == (MESSAGE.html, apprise.NotifyFormat.HTML)
    assert compose("workflows://prod.example.com/wf1234567/sig1234567") == (
        MESSAGE.title, MESSAGE.markdown, apprise.NotifyFormat.MARKDOWN)
    assert compose("json://example.com/hook") == (MESSAGE.title, MESSAGE.text, apprise.NotifyFormat.TEXT)
    telegram = compose("tgram://123456789:AAEsecretBotToken/987654321")
    assert telegram[1:] == (MESSAGE.text, apprise.NotifyFormat.TEXT)
    # Discord renders Markdown in its text mode too, and would paste the title in raw: escaped here.
    title, body, body_format = compose("discord://123456789012345678/ABCdefTOKENghi")
    assert (title, body_format) == ("", apprise.NotifyFormat.MARKDOWN)
    assert body.startswith("**newswatch · Storms:" + WORD_JOINER + " Storm hits the coast (5")
    assert body.endswith(MESSAGE.markdown)
