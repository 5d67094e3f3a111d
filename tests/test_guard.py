"""monitoring.guard, the SSRF guard: notification URLs whose destination is not public are refused.

Host names resolve through the test suite's loopback-only resolver (tests/conftest.py) or a
patched one; the only traffic is to receivers on 127.0.0.1.
"""

import threading
import time

import pytest

from monitoring import guard
from monitoring.alerts import render_alert
from monitoring.delivery import DeliveryOutcome, deliver
from monitoring.guard import DeliveryRefused, guard_url
from tests.receivers import make_smtp_fixture, make_webhook_fixture
from tests.sample_messages import make_payload

webhook = make_webhook_fixture()
smtp = make_smtp_fixture()

MESSAGE = render_alert(make_payload())


# --- the SSRF guard -------------------------------------------------------------------------


def test_loopback_is_refused_unless_private_networks_are_allowed(webhook, smtp):
    refused = deliver(webhook.json_url(), MESSAGE)
    refused_mail = deliver(smtp.mailto_url(), MESSAGE)
    refused_name = deliver(f"json://localhost:{webhook.port}/hook", MESSAGE)

    for outcome in (refused, refused_mail, refused_name):
        assert not outcome.ok
        assert "loopback" in outcome.error and "NEWSWATCH_ALLOW_PRIVATE_NETWORKS" in outcome.error
    assert webhook.wait_for(1, timeout=0.3) == [] and smtp.messages == []

    with pytest.raises(DeliveryRefused):
        guard_url(webhook.json_url(), allow_private_networks=False)
    guard_url(webhook.json_url(), allow_private_networks=True)
    assert deliver(webhook.json_url(), MESSAGE, allow_private_networks=True).ok
    assert len(webhook.wait_for(1)) == 1


@pytest.mark.parametrize("url", [
    "json://10.0.0.1/hook",
    "jsons://169.254.169.254/latest/meta-data",
    "json://[::1]:8080/hook",
    "json://[::ffff:127.0.0.1]/hook",
    "xml://192.168.1.10/hook",
    "form://172.16.0.1/hook",
    "ntfy://tk_token1234567@10.1.2.3/alerts",
    "gotify://100.64.0.1/AppTokenSecret",
    "mailtos://user:pw@example.com?smtp=192.168.1.5&from=a@example.com",
    "mailto://127.0.0.1:2525?from=a@example.com&to=b@example.com",
    "mmost://10.0.0.2/abcdefghijklmnopqrstuvwxyz",
    "workflows://127.0.0.1:443/workflowid123/signature456",
])
def test_private_destinations_are_refused(url):
    with pytest.raises(DeliveryRefused, match="refused: "):
        guard_url(url, allow_private_networks=False)
    guard_url(url, allow_private_networks=True)


def test_host_names_must_resolve_to_public_addresses(monkeypatch):
    # The suite's resolver refuses every name but localhost: an unresolvable host is refused.
    with pytest.raises(DeliveryRefused, match="cannot resolve hooks.example.com"):
        guard_url("jsons://hooks.example.com/alerts", allow_private_networks=False)

    answers = {"mixed.example": ["93.184.215.14", "10.0.0.7"], "public.example": ["93.184.215.14"]}
    monkeypatch.setattr(guard, "_resolve", lambda host, port: answers[host])
    with pytest.raises(DeliveryRefused, match="10.0.0.7 is a private address"):
        guard_url("jsons://mixed.example/alerts", allow_private_networks=False)
    guard_url("jsons://public.example/alerts", allow_private_networks=False)
    guard_url("mailtos://user:pw@mixed.example?smtp=public.example&from=a@mixed.example",
              allow_private_networks=False)  # the SMTP server is what is connected to
    answers["apprise.zulip.internal.example"] = ["10.0.0.9"]  # Zulip: <organization>.<hostname>
    with pytest.raises(DeliveryRefused, match="10.0.0.9"):
        guard_url("zulip://bot@apprise.zulip.internal.example/lqn6mpwpam6VZzbCW0o7olmk3hwbQSKa",
                  allow_private_networks=False)


def test_a_resolver_that_never_answers_costs_the_timeout(monkeypatch):
    answered = threading.Event()
    monkeypatch.setattr(guard, "_resolve", lambda host, port: answered.wait(5) and [])
    started = time.monotonic()

    with pytest.raises(DeliveryRefused, match="cannot resolve slow.example .no answer within 0.5 s"):
        guard_url("jsons://slow.example/alerts", allow_private_networks=False, timeout=0.5)
    assert time.monotonic() - started < 2
    answered.set()  # let the abandoned lookup finish


@pytest.mark.parametrize("url", [
    "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ",
    "https://hooks.slack.com/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ",
    "discord://123456789012345678/ABCdefTOKENghi",
    "tgram://123456789:AAEsecretBotToken/987654321",
    "ntfy://mytopic",
    "mailgun://user@example.com/api-key-123",
    "pushdeer://PDU1234TKfEsaeSomeKeyHere",
    "notica://abc123",
])
def test_services_with_fixed_public_hosts_pass_without_resolving(url):
    # Resolving anything here would fail (loopback-only resolver) and be reported as refused.
    guard_url(url, allow_private_networks=False)


def test_plain_http_webhooks_connect_to_the_checked_address(webhook, monkeypatch):
    """DNS rebinding: the request goes to the address the guard checked, with the original Host."""
    resolved = []

    def resolve_once(host, port):
        resolved.append(host)
        return ["127.0.0.1"]  # stands in for a public answer (describe_address is patched below)

    monkeypatch.setattr(guard, "_resolve", resolve_once)
    monkeypatch.setattr(guard, "describe_address", lambda address: None)

    outcome = deliver(f"json://hooks.example.test:{webhook.port}/hook", MESSAGE)

    assert outcome == DeliveryOutcome(True, None), outcome
    [request] = webhook.wait_for(1)
    assert request.headers["host"] == f"hooks.example.test:{webhook.port}"
    assert resolved == ["hooks.example.test"]  # "hooks.example.test" itself never reached DNS again
